/* ratelimit.h — a client-side rate limiter for one model (or one provider): token buckets for
 * requests per minute and tokens per minute, tightened by what the provider says is left and by
 * its 429s (AIMD), so tierq sends at the limit instead of into 429s.
 *
 * The buckets. Each limited dimension (requests, tokens) is a bucket refilled continuously at
 * limit / share per minute, times the adaptive factor below. Its size — the burst — is one
 * second's worth at that rate, and at least one request: providers enforce per-minute limits over
 * shorter periods ("60,000 requests/minute may be enforced as 1,000 requests/second"), so a burst of
 * a whole minute's worth would be refused. Over any span of T ms the limiter admits at most
 * burst + rate x T. Buckets start full. A request needing more tokens than the bucket holds is
 * admitted once the bucket is full and leaves it in debt (the refill pays it back), so a large
 * request waits, it is never refused here; whether the provider takes it is its business.
 *
 * Tokens are reserved at admission from the caller's estimate (estimated input + max output) and
 * corrected by ratelimit_settle once the response says what was used.
 *
 * Adapting (AIMD). A 429 pauses admission until its retry-after (RATELIMIT_429_DEFAULT_PAUSE_MS
 * when it gave none), empties the buckets and halves the effective rate (x RATELIMIT_AIMD_DECREASE,
 * never below RATELIMIT_AIMD_FLOOR of the configured rate). Only one halving per "generation": the
 * 429s of requests admitted before the last halving report on the old rate and only extend the
 * pause — otherwise fifty requests in flight answering 429 together would divide the rate by 2^50.
 * Successes raise the factor back by RATELIMIT_AIMD_STEP at most once per RATELIMIT_AIMD_STEP_MS
 * (from one half back to the full rate in about a minute, the window the limits are counted in),
 * never above the configured limit. Increases need successes: an idle limiter does not relax.
 *
 * Provider headers (x-ratelimit-remaining-*, x-ratelimit-reset-*) only tighten: a bucket holds no
 * more than remaining / share, so nothing left means the next request waits for our own refill.
 * The reset time is only used for a dimension we have no limit for (rpm or tpm 0): with nothing
 * remaining it pauses admission until the reset (capped at RATELIMIT_HEADER_PAUSE_CAP_MS: per-minute
 * limits are whole again after a minute). Where we have a rate, a reset is not a wait: OpenAI's
 * x-ratelimit-reset-tokens is the time until the provider's bucket is FULL again ("6m0s"), while
 * it refills continuously, so pausing until then would idle for most of a minute after every dip
 * to zero; our refill paces the next request, and a provider limit lower than ours shows as 429s.
 *
 * Several processes. Every limit here is per process. Processes that share an account (one
 * provider key, several `tierq run` on several machines) each take `share` = the number of
 * processes: each sends at limit / share. The headers are the account's (every process sees the
 * same remaining count), hence remaining / share too. Set share too low and the processes together
 * overshoot into 429s, which the AIMD then corrects, at the cost of those 429s; set it too high and
 * the account is under-used. The pool sets share from the live processes in tierq.workers at
 * every heartbeat (ratelimit_set_share); no request waits on the database for it.
 *
 * Threads. One limiter is shared by all the pool's threads; every function takes an internal mutex
 * held for a few arithmetic operations and never sleeps, reads a clock or logs: callers pass the
 * time (clock_mono_ms) and are event loops that come back after the wait they are told.
 *
 * Fairness: there is no queue. A waiting caller that comes back after its wait may find the tokens
 * taken by a smaller request; a pool that needs order keeps its own FIFO and asks for its head.
 *
 * How the pool uses it (worker/pool.c, rate_admit and rate_reply). One limiter per model, and one
 * per provider that has limits its models share (providers' rpm/tpm). Before a transfer starts
 * (after the breaker's gate): ratelimit_acquire on the model's limiter, then the provider's (if the
 * second says wait, the first is cancelled), with the request's estimate; on a wait the call goes to
 * the worker's delay heap with due_ms = now + wait_ms, like a retry. The tickets ride on the Call.
 * On the response: ratelimit_on_headers (the model's limiter only: providers count x-ratelimit-* per
 * model); ratelimit_settle with usage.total_tokens (0 when the provider refused the request, -1 when
 * it sent no usage); ratelimit_on_success for a 2xx; ratelimit_on_429 for a 429 that is a rate
 * limit (not insufficient_quota). A call that never left: ratelimit_cancel. ratelimit_snapshot
 * feeds the heartbeat (tierq status). */
#ifndef TQ_RATELIMIT_H
#define TQ_RATELIMIT_H

#include "err.h"

#include <stdbool.h>
#include <stdint.h>

#define RATELIMIT_AIMD_DECREASE 0.5          /* factor kept after a 429 */
#define RATELIMIT_AIMD_FLOOR (1.0 / 16)      /* lowest factor: a 429 storm never throttles to zero */
#define RATELIMIT_AIMD_STEP 0.05             /* factor regained per step of successes */
#define RATELIMIT_AIMD_STEP_MS 6000          /* at most one step per this many ms: 0.5 -> 1 in 60 s */
#define RATELIMIT_429_DEFAULT_PAUSE_MS 1000  /* pause after a 429 without retry-after */
#define RATELIMIT_HEADER_PAUSE_CAP_MS 60000  /* longest pause taken from an x-ratelimit-reset-* */

typedef struct RateLimitConfig {
    int64_t rpm;   /* requests per minute for the whole account; 0 = unlimited */
    int64_t tpm;   /* tokens per minute (input + output) for the whole account; 0 = unlimited */
    int share;     /* processes splitting these limits; this one takes 1/share. 0 or 1 = all */
} RateLimitConfig;

/* What an admission reserved; returned by ratelimit_acquire, handed back to settle, cancel and
 * on_429. Plain data: copy it into the call. */
typedef struct RateLimitTicket {
    int64_t tokens;       /* tokens reserved (the estimate) */
    uint64_t generation;  /* the rate it was admitted at (bumped by every halving) */
} RateLimitTicket;

/* For tierq status and the heartbeat. Rates are this process's, after share and the factor. */
typedef struct RateLimitSnapshot {
    double factor;             /* effective rate / configured rate, in [RATELIMIT_AIMD_FLOOR, 1] */
    double rpm, tpm;           /* effective per-minute rates now; 0 = unlimited */
    double requests_available; /* in the buckets now (tokens may be negative: debt) */
    double tokens_available;
    int64_t paused_until_ms;   /* admission paused until then (429 or headers); 0 = not paused */
    uint64_t decreases;        /* halvings so far */
} RateLimitSnapshot;

typedef struct RateLimiter RateLimiter;

/* A limiter for cfg (copied), buckets full, factor 1. Returns 0; TQ_EINVAL when rpm, tpm or share
 * is negative (err names the field); TQ_ENOMEM. *out is set only on success. */
int ratelimit_new(const RateLimitConfig *cfg, RateLimiter **out, TqErr *err);
/* This process now takes 1/share of the configured limits (share < 1 counts as 1): the number of
 * live processes changed. The buckets keep what they earned at the old rate, capped to the new
 * size. */
void ratelimit_set_share(RateLimiter *rl, int64_t now_ms, int share);
/* ratelimit_free(NULL) does nothing. No other thread may be using rl. */
void ratelimit_free(RateLimiter *rl);

/* Ask to send one request estimated at est_tokens (< 0 counts as 0) at now_ms.
 * True: admitted; the request and est_tokens are taken from the buckets, *ticket filled, *wait_ms 0.
 * False: nothing taken; *wait_ms (>= 1) is how long until this request could be admitted if nothing
 * else happens meanwhile — come back then. Never blocks. now_ms may lag another thread's by a few
 * ms (each reads the clock before the lock): time never runs backwards inside the limiter. */
bool ratelimit_acquire(RateLimiter *rl, int64_t now_ms, int64_t est_tokens, RateLimitTicket *ticket, int64_t *wait_ms);

/* The request admitted with ticket used actual_tokens (usage.total_tokens): the difference to the
 * estimate goes back to, or is taken from, the token bucket (it may go into debt; it never fills
 * past its size). actual_tokens < 0 (no usage reported) keeps the estimate. Call once per ticket. */
void ratelimit_settle(RateLimiter *rl, const RateLimitTicket *ticket, int64_t actual_tokens);

/* The request admitted with ticket never left (aborted, or another limiter said wait): its request
 * and its tokens go back. Call once per ticket, instead of settle. */
void ratelimit_cancel(RateLimiter *rl, const RateLimitTicket *ticket);

/* A response carried x-ratelimit-* headers; -1 for each one absent (OaiHeaders uses -1 too).
 * Tightens only: each bucket is lowered to remaining / share when it holds more; an unlimited
 * dimension with remaining 0 and a reset time pauses admission until now + reset (capped). */
void ratelimit_on_headers(RateLimiter *rl, int64_t now_ms, int64_t remaining_requests, int64_t remaining_tokens,
                          int64_t reset_requests_ms, int64_t reset_tokens_ms);

/* A response carried x-ratelimit-limit-* (the account's per-minute limits; -1 each when absent). A
 * dimension the configuration gave no limit takes this one (divided by share) and is paced at it
 * from now on, as if it had been configured, instead of sending until the provider says nothing is
 * left and then pausing until its reset (measured: 0.53 of a 36,000 rpm limit, a 60 s stall, against
 * 1.00 when told). A configured limit is never replaced: the provider may count per day where we
 * count per minute, and what the user wrote wins; the remaining-* headers tighten either way. A
 * later different value replaces a learned one. */
void ratelimit_learn_limits(RateLimiter *rl, int64_t now_ms, int64_t limit_requests, int64_t limit_tokens);

/* A 429 rate limit (not insufficient_quota) answered the request admitted with ticket (NULL: not
 * known, counts as admitted at the current rate). retry_after_ms < 0: none given. Pauses admission
 * until now + retry-after (never shortens a pause), empties the buckets, and halves the factor if
 * the request was admitted at the current rate. Settle or cancel the ticket as well. */
void ratelimit_on_429(RateLimiter *rl, int64_t now_ms, int64_t retry_after_ms, const RateLimitTicket *ticket);

/* A request succeeded (2xx): the factor rises by RATELIMIT_AIMD_STEP if the last change was at least
 * RATELIMIT_AIMD_STEP_MS ago, up to 1. */
void ratelimit_on_success(RateLimiter *rl, int64_t now_ms);

/* State at now_ms (buckets refilled to then). */
void ratelimit_snapshot(RateLimiter *rl, int64_t now_ms, RateLimitSnapshot *out);

/* OpenAI's duration format in x-ratelimit-reset-* ("6m0s", "1s", "120ms", "1m30.5s"; Go's
 * time.Duration syntax) in whole ms, rounded up; -1 when empty or malformed. The grammar has one
 * owner: this is oai_duration_ms (openai.h), which the header parser already uses. */
int64_t ratelimit_parse_duration_ms(const char *s);

#endif
