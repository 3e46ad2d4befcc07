/* queue.h — PostgreSQL as the queue: claim, lease, complete, fail, requeue, hand back.
 *
 * Every claim sets state = running, attempts + 1, lease_owner = the claimant and lease_until. The
 * pair (attempt, owner) then fences every write-back: a completion or failure for an attempt whose
 * lease was lost (requeued after expiry, re-claimed by another process) changes nothing and is
 * reported as lease lost. Each call is one statement (one round trip) for any number of jobs.
 * All calls block on the database; use them from the scheduler or writer thread. */
#ifndef TQ_QUEUE_H
#define TQ_QUEUE_H

#include "err.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* A claimed job. Allocated as one block with its strings (freed by queue_job_free). */
typedef struct QueueJob {
    int64_t id;
    char *kind;
    char *prompt;
    char *system_prompt;   /* NULL: the kind's */
    char *context;         /* NULL: none */
    char *params;          /* JSON object text, never NULL */
    char *run_name;        /* NULL: none */
    int attempt;           /* this claim's attempt number (1 = first) */
    int max_attempts;
    int priority;
    int64_t max_budget_micro; /* 0: the kind's default */
    int64_t cost_so_far_pico; /* spent on earlier attempts */
} QueueJob;

void queue_job_free(QueueJob *job);

/* Claim up to limit queued jobs whose run_after has come, highest priority first, restricted to
 * kinds (NULL = any kind) and to run_name (NULL = any run). *jobs is a malloc'd array of *n pointers (caller frees each and the
 * array). One statement with FOR UPDATE SKIP LOCKED: concurrent claimers never get the same job. */
int queue_claim(PGconn *c, const char *owner, const char *const *kinds, int nkinds, const char *run_name, int limit,
                int lease_s, QueueJob ***jobs, int *n, TqErr *err);

/* Extend the lease of jobs still held by owner. lost (optional, n entries) is set true for each job
 * that is no longer ours. *renewed (optional) counts the extended ones. */
int queue_renew(PGconn *c, const char *owner, const int64_t *ids, const int *attempts, int n, int lease_s,
                bool *lost, int *renewed, TqErr *err);

typedef struct QueueResult {
    int64_t id;
    int attempt;
    const char *result;
    const char *model;
    int tier;              /* 1-based tier that answered */
    double quality;        /* NaN: not scored */
    int escalations;
    const char *reason;    /* why this answer was accepted (accepted, final_tier, budget, ...) */
    int64_t baseline_pico; /* what the job would have cost on the kind's baseline model */
} QueueResult;

/* Mark jobs done. applied[i] (optional) tells which writes took effect; the others lost their lease.
 * *napplied (optional) counts them. */
int queue_complete(PGconn *c, const char *owner, const QueueResult *rs, int n, bool *applied, int *napplied,
                   TqErr *err);

typedef struct QueueFailure {
    int64_t id;
    int attempt;
    const char *reason;    /* stable: http_400, http_timeout, response_too_large, ... */
    const char *error;     /* readable message kept on the job */
    bool retryable;        /* retry later (until max_attempts, then dead) or fail now */
    int64_t retry_after_ms;
} QueueFailure;

/* Retryable failures go back to queued with run_after = now + retry_after_ms, or to dead once
 * attempts reached max_attempts; others go to failed. The error is kept either way. */
int queue_fail(PGconn *c, const char *owner, const QueueFailure *fs, int n, bool *applied, int *napplied,
               TqErr *err);

/* Any process may call this: jobs whose lease ran out go back to queued (or dead after
 * max_attempts) with reason lease_expired. Up to limit jobs per call. */
int queue_requeue_expired(PGconn *c, int limit, int *requeued, int *dead, TqErr *err);

/* Return claimed jobs to the queue without counting the attempt (shutdown). ids NULL = every job
 * owner holds. */
int queue_hand_back(PGconn *c, const char *owner, const int64_t *ids, int n, int *handed, TqErr *err);

/* Worker registry. */
int queue_worker_register(PGconn *c, const char *id, const char *info_json, TqErr *err);
/* info_json: the process's live state (e.g. current batch sizes), NULL to leave it as is. */
int queue_worker_heartbeat(PGconn *c, const char *id, int in_flight, const char *info_json, TqErr *err);
int queue_worker_unregister(PGconn *c, const char *id, TqErr *err);
/* "host:pid:random" — unique per process start. */
void queue_make_worker_id(char *out, size_t cap);

#endif
