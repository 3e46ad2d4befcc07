/* queue.h — PostgreSQL as the queue: claim, lease, write back, requeue, hand back.
 *
 * Every claim sets state = running, attempts + 1, lease_owner = the claimant and lease_until. The
 * pair (attempt, owner) then fences every write-back: a completion or failure for an attempt whose
 * lease was lost (requeued after expiry, re-claimed by another process) changes nothing and is
 * reported as lease lost. Each call is one statement (one round trip) for any number of jobs.
 * All calls block on the database; use them from the scheduler or writer thread. */
#ifndef TQ_QUEUE_H
#define TQ_QUEUE_H

#include "call.h"
#include "err.h"
#include "job.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* Claim up to limit queued jobs whose run_after has come, highest priority first, restricted to
 * kinds (NULL = any kind) and to run_name (NULL = any run), and to max_bytes of input text
 * (prompt, context, system prompt; <= 0 = no bound) — but always the first job, however large.
 * *jobs is a malloc'd array of *n pointers (caller frees each and the array). One statement with
 * FOR UPDATE SKIP LOCKED: concurrent claimers never get the same job. */
int queue_claim(PGconn *c, const char *owner, const char *const *kinds, int nkinds, const char *run_name, int limit,
                int lease_s, int64_t max_bytes, QueueJob ***jobs, int *n, TqErr *err);

/* Extend the lease of jobs still held by owner. lost (optional, n entries) is set true for each job
 * that is no longer ours. *renewed (optional) counts the extended ones. */
int queue_renew(PGconn *c, const char *owner, const int64_t *ids, const int *attempts, int n, int lease_s,
                bool *lost, int *renewed, TqErr *err);

/* What one write-back did. */
typedef struct QueueWriteBack {
    int64_t rows;            /* ledger rows in it (inserted now, or already there from a replay) */
    int64_t done, retry, failed; /* outcomes applied: done; back to the queue; failed or dead */
    int64_t lease_lost;      /* outcomes not applied: the lease was no longer ours */
    int64_t cost_pico;       /* the rows' cost */
    int64_t baseline_pico;   /* the baseline cost of the jobs done */
    /* called (if set) for every applied outcome that is not done, with its stable reason and error */
    void (*on_failure)(void *ud, const char *reason, const char *error);
    void *ud;
} QueueWriteBack;

/* Write finished calls back in ONE statement (atomic without BEGIN/COMMIT, one round trip): insert
 * their ledger rows (ON CONFLICT on calls.call_key: a write-back replayed after a lost connection
 * inserts and charges nothing twice), add each job's share of the rows actually inserted to its
 * cost and tokens (always: money spent is money spent, lease or not), and apply each job's outcome
 * only while the fence holds on the locked row — state running, lease_owner = owner, attempts =
 * the call's attempt. An outcome whose lease was lost changes nothing and counts as lease_lost.
 * Outcomes: done (result, model, tier, quality, escalations, reason, baseline cost); failed for
 * good; or retryable — back to queued with run_after pushed out, dead once max_attempts is reached.
 * The calls are read, not freed. Blocks on the database. Returns 0 (wb filled) or TQ_EDB /
 * TQ_ENOMEM (nothing written: the statement is atomic). */
int queue_write_back(PGconn *c, const char *owner, Call *const *calls, int n, QueueWriteBack *wb, TqErr *err);

/* The same write-back as the statement's text parameters (QUEUE_FLUSH_NPARAMS strings, the first
 * the owner; each malloc'd, the caller frees them): what a spill file keeps when the database is
 * out of reach at shutdown. */
#define QUEUE_FLUSH_NPARAMS 76
/* Spill files written before the response cache (issue 14) carry this many; replay pads the rest. */
#define QUEUE_FLUSH_NPARAMS_V1 47
int queue_flush_params(const char *owner, Call *const *calls, int n, char **params, TqErr *err);
/* Execute a write-back from its parameters (a spill replayed by any process, later): the same
 * statement, fence and idempotence, so a replay charges nothing twice. Fills done/retry/failed. */
int queue_write_back_params(PGconn *c, const char *const *params, QueueWriteBack *wb, TqErr *err);

/* Any process may call this: jobs whose lease ran out go back to queued (or dead after
 * max_attempts) with reason lease_expired. Up to limit jobs per call. */
int queue_requeue_expired(PGconn *c, int limit, int *requeued, int *dead, TqErr *err);

/* Jobs of these kinds (and run_name, NULL = any) still to do: running, or queued (with
 * due_soon_only: due within a minute, or within an hour for jobs waiting through an outage, reason
 * model_unavailable: a --drain run waits for the model's next probe). Rows that break the bounds of sql/006 are not counted: no
 * statement claims or requeues them. -1 on error. */
int64_t queue_count_remaining(PGconn *c, const char *const *kinds, int nkinds, const char *run_name, bool due_soon_only,
                              TqErr *err);

/* The live shadow estimate of a kind (tierq.shadow_estimates, sql/008). */
typedef struct QueueShadowEstimate {
    char kind[64];
    int64_t compared, agreed;
    double agreement, low, high, min_agreement; /* agreement, low, high: NAN before any comparison */
    bool below;                                 /* the 95% interval lies below min_agreement */
} QueueShadowEstimate;

/* Up to cap estimates (run_name NULL = every run) into out; *n their number. */
int queue_shadow_estimates(PGconn *c, const char *run_name, QueueShadowEstimate *out, int cap, int *n, TqErr *err);

/* How much of a kind's latest work its first tier answers against the work before (tierq.first_tier_shift,
 * sql/009; the strongest of the latest 200 and 500 jobs, tierq.first_tier_shift_windows, sql/016): a free
 * signal that a model's answers changed. */
typedef struct QueueTierShift {
    char kind[64];
    int64_t recent_jobs, recent_first, reference_jobs, reference_first;
    double z;     /* NAN when undefined */
    bool shifted; /* |z| >= 4 on enough jobs */
} QueueTierShift;

/* Up to cap kinds that sample shadow calls into out (run_name NULL = every run); *n their number. */
int queue_first_tier_shift(PGconn *c, const char *run_name, QueueTierShift *out, int cap, int *n, TqErr *err);

/* A tier whose agreement with the baseline fell against its own past (tierq.shadow_tier_drift, sql/010). */
typedef struct QueueTierDrift {
    char kind[64];
    int tier;
    int64_t recent_compared, recent_agreed, reference_compared, reference_agreed;
    double z;     /* NAN when undefined */
    bool dropped; /* one-sided z <= -3.5 on enough comparisons */
} QueueTierDrift;

/* Up to cap (kind, tier) rows with shadow comparisons (run_name NULL = every run); *n their number. */
int queue_shadow_tier_drift(PGconn *c, const char *run_name, QueueTierDrift *out, int cap, int *n, TqErr *err);

/* The last shadow call of kind so far (0 when none): a mark to count from. */
int queue_shadow_mark(PGconn *c, const char *kind, int64_t *mark, TqErr *err);
/* Records a shift seen (tierq.tier_shifts): its change point is mark, the kind's last shadow call then;
 * from there each tier's later comparisons are held to the ones before it (tierq.shadow_tier_drift). */
int queue_record_tier_shift(PGconn *c, const QueueTierShift *sh, const char *run_name, const char *worker,
                            int64_t mark, TqErr *err);
/* Answered shadow calls of kind after mark (counted up to limit), of jobs answered at tier (1-based;
 * 0 = any tier). */
int queue_shadow_since(PGconn *c, const char *kind, int tier, int64_t mark, int limit, int64_t *count, TqErr *err);

/* Requests whose sender died with them in flight: ledger rows still in status "sent" (the intent
 * written before the request left) older than stale_s, whose worker has not heartbeaten for stale_s,
 * become status "unknown" (reason settled_after_crash, usage_estimated) at an estimated cost — input
 * tokens as estimated at sending, output at max_tokens, at tierq.models' prices — charged to their
 * jobs in shares that sum to the row. Up to limit rows; any process may call it. */
int queue_settle_orphans(PGconn *c, int stale_s, int limit, int *settled, TqErr *err);

/* Return claimed jobs to the queue without counting the attempt (shutdown). ids NULL = every job
 * owner holds. */
int queue_hand_back(PGconn *c, const char *owner, const int64_t *ids, int n, int *handed, TqErr *err);

/* Jobs waiting through model's outage (queued, reason model_unavailable, their error naming it) are
 * due now: its breaker closed in some process. Wakes the claimers (NOTIFY). *woken: how many. */
int queue_wake_waiting(PGconn *c, const char *model, int64_t *woken, TqErr *err);

/* Worker registry. */
int queue_worker_register(PGconn *c, const char *id, const char *info_json, TqErr *err);
/* info_json: the process's live state (e.g. current batch sizes), NULL to leave it as is.
 * *live (may be NULL): the processes sharing the providers' limits now — this one and every other
 * live one (heartbeat in the last 20 s), idle or not; at least 1. */
int queue_worker_heartbeat(PGconn *c, const char *id, int in_flight, const char *info_json, int *live, TqErr *err);
int queue_worker_unregister(PGconn *c, const char *id, TqErr *err);
/* "host:pid:random" — unique per process start. */
void queue_make_worker_id(char *out, size_t cap);

#endif
