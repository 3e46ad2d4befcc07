/* pool.h — the worker pool: threads that each drive many concurrent HTTP requests with one libcurl
 * multi handle.
 *
 * pool_submit hands a Call to a worker (round robin) and never blocks. The worker builds the request
 * body, sends it, retries transient failures in-process (exponential backoff with full jitter,
 * honouring retry-after), records a ledger row per HTTP exchange, decides each job's outcome, and
 * pushes the finished Call onto the `done` queue given at start (the writer's inbox). Before each
 * request leaves, its row is pushed there as an intent (status "sent") and the call waits for the
 * writer to write it (pool_resume); the rows of exchanges already paid for go there as soon as a
 * call moves on to its next request.
 *
 * Concurrency is bounded per provider (providers[i].max_in_flight, for the whole process) and per
 * process (max_in_flight); calls over the bound wait in the worker, not in a thread. Requests are
 * paced by each model's and provider's rate limiter (worker/ratelimit.h) and held back from a model
 * whose circuit breaker is open (worker/breaker.h): an answer then goes to its tier's fallback, or
 * the kind's on_outage decides (by default its jobs wait in the queue without spending an attempt).
 * A 429 with insufficient_quota marks the provider exhausted: nothing more is sent to it in this
 * process; answers go to a fallback on another provider where the tier has one, other calls fail
 * back to the queue with reason provider_quota_exhausted. */
#ifndef TQ_POOL_H
#define TQ_POOL_H

#include "buf.h"
#include "call.h"
#include "config.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PoolOptions {
    int threads;                 /* worker threads; <= 0: one per core */
    int max_in_flight;           /* requests in flight for the whole process */
    int max_tries;               /* HTTP attempts per call in this process before giving the job
                                  * back to the queue (retryable) */
    size_t max_response_bytes;   /* larger bodies fail the job with response_too_large */
    int64_t backoff_base_ms;
    int64_t backoff_cap_ms;
    int64_t quota_retry_ms;      /* run_after for jobs of a provider that ran out of quota */
    int64_t requeue_base_ms;     /* a job out of tries waits this x 4^(attempt-1) in the queue */
} PoolOptions;

/* The defaults: one thread per core, 256 in flight, 4 tries, 8 MiB responses, 30 s first wait in
 * the queue after the tries. */
void pool_default_options(PoolOptions *o);

typedef struct Pool Pool;

/* Start the threads. cfg, opt and done must outlive the pool; worker_id prefixes the ledger row
 * keys (unique per process). Reads each provider's API key and header values from the environment
 * variables its config names (registering them with the log redactor). Returns 0, or TQ_EINVAL (a
 * header's variable is unset), TQ_ENOMEM or TQ_EIO (epoll, eventfd, curl or a thread could not be
 * set up) with nothing left running; err names what failed. */
int pool_start(Pool **out, const TqConfig *cfg, const PoolOptions *opt, const char *worker_id, Fifo *done, TqErr *err);
/* Hand a call to the pool (thread-safe, non-blocking). */
void pool_submit(Pool *p, Call *call);
/* A call parked for its ledger intent (a carrier on done with parked = call) comes back once the
 * writer has written the intent: it is sent. Thread-safe. False when the pool is stopping: the
 * caller then disposes of the call (its request never left). */
bool pool_resume(Pool *p, Call *c);
/* Calls submitted and not yet pushed to done. */
int pool_pending(Pool *p);
/* Highest number of HTTP requests in flight at once so far. */
int pool_peak_in_flight(Pool *p);
/* True once any provider refused this account (insufficient_quota, or the key with a 401): it got
 * nothing more, and its jobs went back to the queue without spending an attempt. */
bool pool_provider_stopped(Pool *p);
/* Stop the threads. Calls still pending are aborted and returned through *leftover (a ->next list,
 * caller frees or hands their jobs back); pass NULL to free them. */
void pool_stop(Pool *p, Call **leftover);

/* Every rate limiter (models' and providers') takes 1/share of its configured limits from now on:
 * share is the number of processes sending on the same accounts (the heartbeat counts them). */
void pool_set_rate_share(Pool *p, int share);

/* Jobs of escalating calls waiting in the workers for a model's next probe (on_outage wait): a
 * stopping run hands them back at once rather than wait its grace period for an outage. Any thread. */
int pool_outage_held_jobs(Pool *p);

/* Times model's circuit breaker has closed (a probe answered) since the pool started: the scheduler
 * then calls back the jobs waiting for it (queue_wake_waiting) instead of leaving them to their
 * run_after. Any thread. */
uint64_t pool_model_closes(Pool *p, int model);

/* The models with something to say about their health, as a JSON object appended to out:
 * {"MODEL": {"breaker": "open"|"half_open"|"closed", "opens": N, "reason": "...", "next_probe_s": S,
 * "rate_factor": F, "paused_s": S, "rate_decreases": N}, ...} — those whose breaker is not closed or
 * has opened, and those whose limiter slowed or paused; {} when every model is well. For the
 * heartbeat (tierq status). */
int pool_health_json(Pool *p, Buf *out);

/* Sample shadow calls of kind cfg->kinds[kind] at factor x its shadow.rate (at most 1) from now on;
 * factor 1 is the configured rate. Any thread. */
void pool_set_shadow_boost(Pool *p, int kind, double factor);

#endif
