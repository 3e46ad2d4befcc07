/* backoff.h — retry delays: exponential backoff with full jitter, honouring the server's retry-after.
 *
 * Full jitter (a uniform draw in [0, min(cap, base * 2^attempt)]) spreads the retries of many
 * requests that failed together, so they do not come back as one thundering herd. The random
 * numbers come from a caller-owned 64-bit state (splitmix64): no global state, no rand(), no lock;
 * give each worker thread its own state. Pure functions: nothing here sleeps or reads a clock. */
#ifndef TQ_BACKOFF_H
#define TQ_BACKOFF_H

#include <stdint.h>

/* Next 64 random bits from *state (splitmix64; any seed, including 0, is fine). */
uint64_t backoff_rand(uint64_t *state);

/* Uniform integer in [0, n] inclusive, without modulo bias. n < 0 gives 0. */
int64_t backoff_rand_upto(uint64_t *state, int64_t n);

/* Full-jitter delay for a retry: uniform in [0, min(cap_ms, base_ms * 2^attempt)].
 * attempt counts from 0 (the first retry). attempt < 0 counts as 0; base_ms <= 0 or cap_ms <= 0
 * give 0. Overflow-safe for any attempt. */
int64_t backoff_full_jitter_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t *rng_state);

/* The delay to wait before retry number `attempt`.
 * retry_after_ms < 0 (server said nothing): backoff_full_jitter_ms.
 * retry_after_ms >= 0: retry_after_ms plus a small spread, uniform in [0, min(base_ms, cap_ms)],
 * so callers that were told the same instant do not all return at it. Never sooner than the server
 * asked, even when retry_after_ms exceeds cap_ms (cap_ms bounds only our own guess; the parser
 * already caps retry-after at OAI_RETRY_AFTER_CAP_MS). */
int64_t backoff_next_ms(int attempt, int64_t retry_after_ms, int64_t base_ms, int64_t cap_ms, uint64_t *rng_state);

/* How long a job that ran out of in-process tries waits in the queue before its next attempt
 * (`attempt` = the one that just failed, from 1): base_ms x 4^(attempt-1), capped at
 * BACKOFF_REQUEUE_CAP_MS, drawn in the upper half (equal jitter: never much sooner than the step, so
 * with a 30 s base five attempts span a real outage — 30 s, 2 min, 8 min, 30 min — instead of a few
 * seconds), and never sooner than min_ms (what the server asked for). */
#define BACKOFF_REQUEUE_CAP_MS (30 * 60 * 1000)
int64_t backoff_requeue_ms(int attempt, int64_t base_ms, int64_t min_ms, uint64_t *rng_state);

#endif
