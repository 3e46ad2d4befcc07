/* firer.h — schedules fired by the `tierq run` daemons themselves (issue 11; sql/013_schedules.sql).
 *
 * Every daemon runs a firer: a thread with its own database connection (a fire may insert a whole
 * dataset; the claim loop must not wait for it) that once a second
 *   1. computes next_fire_at for enabled schedules that have none (new, or cron/tz/enabled changed)
 *      with cron_next from fire_from; an expression it cannot parse is written to cron_error; a
 *      schedule whose cron is "@external" (fired by pg_cron or by hand) gets none and never fires here;
 *   2. fires what is due, one schedule per transaction: the row is locked FOR UPDATE SKIP LOCKED
 *      where next_fire_at <= now(), the catch-up policy picks which due times fire, each fire runs
 *      tierq.schedule_fire (enqueue all or nothing, record it in tierq.schedule_fires, whose primary
 *      key (schedule, due time) refuses a second fire), and next_fire_at moves past now — so with
 *      any number of daemons each due time fires once, and a daemon killed mid-fire leaves the whole
 *      fire or none of it;
 *   3. prunes for due prune schedules after their fire commits, in batches (tierq.prune_batch),
 *      recording the count on the fire;
 *   4. every few seconds sets reached_at on runs whose per-fire budget is spent (claims skip them).
 *
 * Catch-up, when a schedule's next_fire_at is found in the past with more due times after it (no
 * daemon ran): skip fires only the latest due time, and only within grace_s of it; latest fires the
 * latest due time once; all fires each of the latest catch_up_max due times, oldest first. The due
 * times passed over are counted in last_skipped; the next fire is the first cron time after now. */
#ifndef TQ_FIRER_H
#define TQ_FIRER_H

#include "err.h"

#include <libpq-fe.h>
#include <stdint.h>

typedef struct FirerCounts {
    int64_t fires;      /* fires recorded (any outcome) */
    int64_t jobs;       /* jobs enqueued by them */
    int64_t errors;     /* fires whose source failed */
    int64_t skipped;    /* due times passed over by catch-up */
    int64_t pruned;     /* jobs deleted by prune fires */
} FirerCounts;

/* One pass of steps 1-3 (when fire) and 4 (when check_budgets) on the caller's connection, which must
 * not be in a transaction; by = the daemon's worker id, recorded on each fire. Adds what it did to
 * *counts. Returns 0, or TQ_EDB (the pass stopped; a half-done fire was rolled back). Blocks.
 * A daemon fires schedules one after another: a source that takes a minute delays the others on
 * this daemon by a minute (another daemon, if any, takes them meanwhile: the row is not locked). */
int firer_pass(PGconn *c, const char *by, int fire, int check_budgets, FirerCounts *counts, TqErr *err);

typedef struct Firer Firer;

/* Start the firer thread; it connects from the environment (db_connect(NULL)) and reconnects when
 * the database goes away. fire = 0: it only checks run budgets (a --drain run limited by --run or
 * --kinds). Returns 0, or TQ_ENOMEM / TQ_EIO (thread). */
int firer_start(const char *by, int fire, Firer **out, TqErr *err);
/* What it has done so far. Any thread. */
void firer_counts(Firer *f, FirerCounts *out);
/* Stop it and free it: a fire under way is cancelled (it rolls back whole; the next daemon fires that
 * due time), a prune between batches stops after its batch. NULL is fine. */
void firer_stop(Firer *f);

#endif
