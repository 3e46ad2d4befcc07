#include "firer.h"

#include "clock.h"
#include "cron.h"
#include "db.h"
#include "log.h"
#include "retention.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    FIRER_PERIOD_MS = 1000,        /* how often a daemon looks for due schedules */
    FIRER_BUDGET_PERIOD_MS = 1000, /* how often budgeted runs' spend is summed (one cheap statement) */
    FIRER_MAX_PER_PASS = 100,      /* schedules fired per pass: a pass stays short, the next takes the rest */
    FIRER_MAX_DUE_SCAN = 100000,   /* due times walked when catching up; older ones count as skipped */
    FIRER_PRUNE_BATCH = 1000,      /* jobs per prune statement: short locks, the queue goes on */
    SCHEDULE_CATCH_UP_MAX = 1000,  /* the largest catch_up_max sql/013 allows */
};

/* The longest a fire's statement may run (its source, the insert): a source that hangs fails its fire
 * instead of holding the daemon. */
#define FIRER_STATEMENT_TIMEOUT "10min"

/* ---- step 1: next fire times -------------------------------------------------------------------- */

typedef struct Unset {
    char name[80];
    char cron[CRON_EXPR_MAX + 1];
    char tz[80];
    char fire_from[64]; /* as PostgreSQL printed it: compared back exactly */
    int64_t from_s;
} Unset;

typedef struct UnsetList {
    Unset *v;
    int n, cap;
} UnsetList;

static int take_unset(void *ud, const PGresult *r, int row)
{
    UnsetList *l = ud;
    if (l->n == l->cap)
        return 1; /* the rest next pass */
    Unset *u = &l->v[l->n++];
    snprintf(u->name, sizeof u->name, "%s", PQgetvalue(r, row, 0));
    snprintf(u->cron, sizeof u->cron, "%s", PQgetvalue(r, row, 1));
    snprintf(u->tz, sizeof u->tz, "%s", PQgetvalue(r, row, 2));
    snprintf(u->fire_from, sizeof u->fire_from, "%s", PQgetvalue(r, row, 3));
    u->from_s = atoll(PQgetvalue(r, row, 4));
    return 0;
}

static int set_next_fire_times(PGconn *c, TqErr *err)
{
    Unset v[32];
    UnsetList l = {.v = v, .n = 0, .cap = 32};
    int rc = db_query_rows(c, "schedules without a next fire time",
                           "SELECT name, cron, tz, fire_from::text, floor(extract(epoch FROM fire_from))::bigint"
                           " FROM tierq.schedules WHERE enabled AND next_fire_at IS NULL AND cron_error IS NULL AND cron <> '@external'"
                           " ORDER BY name LIMIT 32",
                           0, NULL, take_unset, &l, err);
    if (rc)
        return rc;
    for (int i = 0; i < l.n; i++) {
        Unset *u = &l.v[i];
        Cron cr;
        TqErr ce = {0};
        time_t next = 0;
        char nexts[32];
        int bad = cron_parse(u->cron, &cr, &ce) || cron_next(&cr, u->tz, (time_t)u->from_s, &next, &ce);
        snprintf(nexts, sizeof nexts, "%lld", (long long)next);
        const char *p[] = {u->name, bad ? ce.msg : nexts, u->cron, u->tz, u->fire_from};
        /* only if nobody changed the row since it was read (the trigger resets next_fire_at then) */
        rc = db_exec(c, "set next fire time",
                     bad ? "UPDATE tierq.schedules SET cron_error = $2 WHERE name = $1 AND next_fire_at IS NULL"
                           " AND cron = $3 AND tz = $4 AND fire_from = $5::timestamptz"
                         : "UPDATE tierq.schedules SET next_fire_at = to_timestamp($2::bigint) WHERE name = $1"
                           " AND next_fire_at IS NULL AND cron = $3 AND tz = $4 AND fire_from = $5::timestamptz",
                     5, p, err);
        if (rc)
            return rc;
        if (bad)
            log_msg(LOG_WARN, "schedule", "schedule %s will not fire: %s", u->name, ce.msg);
    }
    return 0;
}

/* ---- step 2: fire what is due ------------------------------------------------------------------- */

typedef struct Due {
    char name[80];
    char cron[CRON_EXPR_MAX + 1];
    char tz[80];
    char catch_up[8];
    char action[8];
    long prune_older_s;
    char prune_states[128]; /* "done,failed": retention_parse_states */
    int64_t next_s, now_s;
    int cap, grace_s;
    int found;
} Due;

static int take_due(void *ud, const PGresult *r, int row)
{
    Due *d = ud;
    snprintf(d->name, sizeof d->name, "%s", PQgetvalue(r, row, 0));
    snprintf(d->cron, sizeof d->cron, "%s", PQgetvalue(r, row, 1));
    snprintf(d->tz, sizeof d->tz, "%s", PQgetvalue(r, row, 2));
    d->next_s = atoll(PQgetvalue(r, row, 3));
    d->now_s = atoll(PQgetvalue(r, row, 4));
    snprintf(d->catch_up, sizeof d->catch_up, "%s", PQgetvalue(r, row, 5));
    d->cap = atoi(PQgetvalue(r, row, 6));
    d->grace_s = atoi(PQgetvalue(r, row, 7));
    snprintf(d->action, sizeof d->action, "%s", PQgetvalue(r, row, 8));
    d->prune_older_s = atol(PQgetvalue(r, row, 9));
    snprintf(d->prune_states, sizeof d->prune_states, "%s", PQgetvalue(r, row, 10));
    d->found = 1;
    return 0;
}

/* The due times to fire, oldest first, into fire[] (at most cap), and the first cron time after now.
 * *skipped counts the due times passed over. */
static int pick_due_times(const Due *d, const Cron *cr, int64_t *fire, int *nfire, int64_t *next,
                          int64_t *skipped, TqErr *err)
{
    int cap = strcmp(d->catch_up, "all") == 0 ? d->cap : 1;
    int64_t t = d->next_s, total = 0, walked = 0;
    int ring = 0, held = 0;
    for (;;) {
        fire[ring] = t;
        ring = (ring + 1) % cap;
        if (held < cap)
            held++;
        total++;
        time_t n;
        if (cron_next(cr, d->tz, (time_t)t, &n, err))
            return TQ_EINVAL;
        if ((int64_t)n > d->now_s) {
            *next = (int64_t)n;
            break;
        }
        if (++walked == FIRER_MAX_DUE_SCAN) {
            /* down for a long time: what lies before the last day is skipped without walking it (only
             * forwards: the last day may already be behind) */
            time_t jump;
            if (cron_next(cr, d->tz, (time_t)(d->now_s - 86400), &jump, err))
                return TQ_EINVAL;
            if ((int64_t)jump > (int64_t)n) {
                n = jump;
                total++; /* at least one more passed over; the exact count does not matter here */
                if ((int64_t)n > d->now_s) {
                    *next = (int64_t)n;
                    break;
                }
            }
        }
        t = (int64_t)n;
    }
    /* the ring, oldest first */
    int64_t tmp[SCHEDULE_CATCH_UP_MAX];
    for (int i = 0; i < held; i++)
        tmp[i] = fire[(ring - held + i + cap) % cap];
    memcpy(fire, tmp, (size_t)held * sizeof *fire);
    *nfire = held;
    if (strcmp(d->catch_up, "skip") == 0 && d->now_s - fire[0] > d->grace_s)
        *nfire = 0; /* the latest due time is too old: skip fires only on time */
    *skipped = total - *nfire;
    return 0;
}

/* A prune fire's work, after the fire committed: retention_prune in batches of FIRER_PRUNE_BATCH (each
 * its own transaction, SKIP LOCKED), then the count recorded on the fire and the schedule. */
static int prune_after_fire(PGconn *c, const Due *d, int64_t due, FirerCounts *counts, TqErr *err)
{
    RetentionSpec spec = {.older_than_s = d->prune_older_s, .states = RETENTION_ALL, .batch = FIRER_PRUNE_BATCH};
    RetentionTotals done = {0};
    int rc = d->prune_states[0] ? retention_parse_states(d->prune_states, &spec.states, err) : 0;
    if (rc == 0)
        rc = retention_prune(c, &spec, 0, &done, err);
    counts->pruned += done.jobs;
    char dues[32], dels[32];
    snprintf(dues, sizeof dues, "%lld", (long long)due);
    snprintf(dels, sizeof dels, "%lld", (long long)done.jobs);
    const char *p[] = {d->name, dues, dels, rc ? "error" : "ok", rc ? err->msg : NULL};
    TqErr e2 = {0};
    db_exec(c, "record prune",
            "WITH f AS (UPDATE tierq.schedule_fires SET jobs = $3::bigint, outcome = $4, error = $5"
            "           WHERE schedule = $1 AND due_at = to_timestamp($2::bigint))"
            " UPDATE tierq.schedules SET last_jobs = $3::bigint, last_outcome = $4, last_error = $5"
            " WHERE name = $1 AND last_due_at = to_timestamp($2::bigint)",
            5, p, &e2);
    log_msg(rc ? LOG_WARN : LOG_INFO, "schedule", "schedule %s pruned %lld jobs and %lld ledger rows%s%s", d->name,
            (long long)done.jobs, (long long)done.calls, rc ? ", then failed: " : "", rc ? err->msg : "");
    return rc;
}

/* Fire the first due schedule, if any, in one transaction. *fired: one was found. */
static int fire_one(PGconn *c, const char *by, const char *skip_names, FirerCounts *counts, Due *d_out, TqErr *err)
{
    d_out->found = 0;
    int64_t pruned_due = -1; /* a prune fire's due time: it prunes after the commit */
    FirerCounts got = {0};   /* added to counts once committed */
    /* a source that hangs holds one schedule, not the daemon's shutdown for ever */
    if (db_exec(c, "begin fire", "BEGIN", 0, NULL, err) ||
        db_exec(c, "fire timeout", "SET LOCAL statement_timeout = '" FIRER_STATEMENT_TIMEOUT "'", 0, NULL, err))
        goto done_err;
    Due d = {0};
    const char *sp[] = {skip_names};
    int rc = db_query_rows(c, "claim a due schedule",
                           "SELECT name, cron, tz, floor(extract(epoch FROM next_fire_at))::bigint,"
                           " floor(extract(epoch FROM now()))::bigint, catch_up, catch_up_max, grace_s, action,"
                           " coalesce(extract(epoch FROM prune_older_than)::bigint, 0),"
                           " coalesce(array_to_string(prune_states, ','), '')"
                           " FROM tierq.schedules WHERE enabled AND next_fire_at <= now() AND name <> ALL ($1::text[])"
                           " ORDER BY next_fire_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                           1, sp, take_due, &d, err);
    *d_out = d;
    if (rc || !d.found)
        goto done;
    Cron cr;
    TqErr ce = {0};
    int64_t fire[SCHEDULE_CATCH_UP_MAX], next = 0, skipped = 0;
    int nfire = 0;
    if (cron_parse(d.cron, &cr, &ce) || pick_due_times(&d, &cr, fire, &nfire, &next, &skipped, &ce)) {
        const char *p[] = {d.name, ce.msg};
        rc = db_exec(c, "unusable cron", "UPDATE tierq.schedules SET next_fire_at = NULL, cron_error = $2 WHERE name = $1",
                     2, p, err);
        log_msg(LOG_WARN, "schedule", "schedule %s will not fire: %s", d.name, ce.msg);
        goto done;
    }
    char nexts[32], skips[32];
    snprintf(nexts, sizeof nexts, "%lld", (long long)next);
    snprintf(skips, sizeof skips, "%lld", (long long)skipped);
    for (int i = 0; i < nfire && rc == 0; i++) {
        char dues[32];
        snprintf(dues, sizeof dues, "%lld", (long long)fire[i]);
        const char *p[] = {d.name, dues, i == nfire - 1 ? nexts : NULL, by};
        PGresult *r = db_query(c, "fire schedule",
                               "SELECT run_name, jobs, outcome, coalesce(error, '')"
                               " FROM tierq.schedule_fire($1, to_timestamp($2::bigint), to_timestamp($3::bigint), $4)",
                               4, p, err);
        if (!r) {
            rc = TQ_EDB;
            break;
        }
        const char *outcome = PQgetvalue(r, 0, 2);
        int64_t jobs = atoll(PQgetvalue(r, 0, 1));
        if (strcmp(outcome, "already_fired") != 0)
            got.fires++;
        got.jobs += jobs;
        if (strcmp(outcome, "error") == 0) {
            got.errors++;
            log_msg(LOG_WARN, "schedule", "schedule %s: its fire for %s enqueued nothing: %s", d.name, dues,
                    PQgetvalue(r, 0, 3));
        } else if (strcmp(outcome, "pruning") == 0) {
            pruned_due = fire[i];
        } else {
            log_msg(LOG_INFO, "schedule", "schedule %s fired: %lld jobs into run %s (%s)%s%s", d.name, (long long)jobs,
                    PQgetvalue(r, 0, 0), outcome, *PQgetvalue(r, 0, 3) ? ": " : "", PQgetvalue(r, 0, 3));
        }
        PQclear(r);
    }
    if (rc == 0) {
        const char *p[] = {d.name, nexts, skips, nfire == 0 ? "t" : "f"};
        rc = db_exec(c, "move schedule on",
                     "UPDATE tierq.schedules SET next_fire_at = to_timestamp($2::bigint), last_skipped = $3::bigint,"
                     " last_outcome = CASE WHEN $4::bool THEN 'missed' ELSE last_outcome END WHERE name = $1",
                     4, p, err);
    }
    if (rc == 0 && skipped > 0) {
        got.skipped += skipped;
        log_msg(LOG_WARN, "schedule", "schedule %s: %lld due time(s) had passed before a daemon got to them (none"
                " ran, or they were busy firing other schedules) and were not fired (catch_up %s)", d.name,
                (long long)skipped, d.catch_up);
    }
done:
    if (rc == 0 && db_exec(c, "commit fire", "COMMIT", 0, NULL, err) == 0) {
        counts->fires += got.fires;
        counts->jobs += got.jobs;
        counts->errors += got.errors;
        counts->skipped += got.skipped;
        if (pruned_due >= 0)
            prune_after_fire(c, &d, pruned_due, counts, err);
        return 0;
    }
done_err:;
    TqErr e2 = {0};
    db_exec(c, "roll back fire", "ROLLBACK", 0, NULL, &e2);
    return TQ_EDB;
}

int firer_pass(PGconn *c, const char *by, int fire, int check_budgets, FirerCounts *counts, TqErr *err)
{
    if (fire && set_next_fire_times(c, err))
        return TQ_EDB;
    /* A schedule whose fire fails outside its source's own error handling (a timeout, a lost lock)
     * is passed over for the rest of this pass, so the schedules due after it still fire; it is
     * tried again next pass. The first such error is returned once the pass is over. */
    char skip[FIRER_MAX_PER_PASS * 72 + 8] = "{}";
    size_t skip_len = 2;
    int failed = 0, fired = 0;
    TqErr first = {0};
    for (int i = 0; fire && i < FIRER_MAX_PER_PASS; i++) {
        Due d;
        TqErr e = {0};
        if (fire_one(c, by, skip, counts, &d, &e)) {
            if (!failed++)
                first = e;
            if (!d.found || db_is_broken(c))
                break;
            /* names are [A-Za-z0-9_.-] (a CHECK), safe inside an array literal unquoted */
            int w = snprintf(skip + skip_len - 1, sizeof skip - (skip_len - 1), "%s%s}", skip_len > 2 ? "," : "",
                             d.name);
            skip_len += (size_t)w - 1;
            continue;
        }
        if (!d.found)
            break;
        fired++;
    }
    /* what a source may have left in this session (temporary tables, advisory locks, LISTEN,
     * prepared statements; settings it changed were refused and rolled back) goes before anything
     * else runs on this connection */
    if (fired && !db_is_broken(c))
        db_exec(c, "discard the session after fires", "DISCARD ALL", 0, NULL, &(TqErr){0});
    if (failed) {
        *err = first;
        return TQ_EDB;
    }
    if (check_budgets) {
        PGresult *r = db_query(c, "check run budgets", "SELECT tierq.check_run_budgets()", 0, NULL, err);
        if (!r)
            return TQ_EDB;
        if (atoi(PQgetvalue(r, 0, 0)) > 0)
            log_msg(LOG_WARN, "schedule", "%s run(s) reached their budget: their queued jobs stay queued"
                    " (tierq.run_budgets)", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return 0;
}

/* ---- the thread ---------------------------------------------------------------------------------- */

struct Firer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int fire;  /* 0: only the budget checks */
    PGcancel *cancel; /* of the thread's connection, under mu: stop cancels a fire under way */
    char by[160];
    FirerCounts counts; /* under mu */
};

static void *firer_main(void *arg)
{
    Firer *f = arg;
    PGconn *c = NULL;
    int64_t next_budget = 0, last_said = 0;
    char said[sizeof ((TqErr *)0)->msg] = ""; /* the last failure logged: a lasting one is said once a minute */
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        pthread_mutex_unlock(&f->mu);
        TqErr err = {0};
        if (c && db_is_broken(c)) {
            pthread_mutex_lock(&f->mu);
            PQfreeCancel(f->cancel);
            f->cancel = NULL;
            pthread_mutex_unlock(&f->mu);
            PQfinish(c);
            c = NULL;
        }
        if (!c && db_connect(NULL, &c, &err)) {
            c = NULL;
            if (log_first_time("firer-connect"))
                log_msg(LOG_WARN, "schedule", "cannot reach the database to fire schedules, retrying: %s", err.msg);
        } else if (c && !f->cancel) {
            pthread_mutex_lock(&f->mu);
            f->cancel = PQgetCancel(c);
            pthread_mutex_unlock(&f->mu);
        }
        if (c) {
            FirerCounts got = {0};
            int64_t now = clock_mono_ms();
            int budgets = now >= next_budget;
            if (budgets)
                next_budget = now + FIRER_BUDGET_PERIOD_MS;
            if (firer_pass(c, f->by, f->fire, budgets, &got, &err) && !db_is_broken(c) &&
                (strcmp(said, err.msg) != 0 || now - last_said >= 60000)) {
                log_msg(LOG_WARN, "schedule", "firing schedules: %s", err.msg);
                snprintf(said, sizeof said, "%s", err.msg);
                last_said = now;
            }
            pthread_mutex_lock(&f->mu);
            f->counts.fires += got.fires;
            f->counts.jobs += got.jobs;
            f->counts.errors += got.errors;
            f->counts.skipped += got.skipped;
            f->counts.pruned += got.pruned;
            pthread_mutex_unlock(&f->mu);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += FIRER_PERIOD_MS / 1000;
        pthread_mutex_lock(&f->mu);
        if (!f->stop)
            pthread_cond_timedwait(&f->cv, &f->mu, &until);
    }
    PQfreeCancel(f->cancel);
    f->cancel = NULL;
    pthread_mutex_unlock(&f->mu);
    if (c)
        PQfinish(c);
    return NULL;
}

int firer_start(const char *by, int fire, Firer **out, TqErr *err)
{
    Firer *f = calloc(1, sizeof *f);
    if (!f)
        return tq_err(err, TQ_ENOMEM, "out of memory starting the schedule firer");
    f->fire = fire;
    snprintf(f->by, sizeof f->by, "%s", by);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, firer_main, f) != 0) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return tq_err(err, TQ_EIO, "cannot start the schedule firer thread");
    }
    *out = f;
    return 0;
}

void firer_counts(Firer *f, FirerCounts *out)
{
    pthread_mutex_lock(&f->mu);
    *out = f->counts;
    pthread_mutex_unlock(&f->mu);
}

void firer_stop(Firer *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv);
    if (f->cancel) { /* a fire under way is cancelled: it rolls back whole, and the next daemon fires it */
        char why[256];
        PQcancel(f->cancel, why, sizeof why);
    }
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}
