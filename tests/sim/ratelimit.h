/* ratelimit.h — per-model rate limits of the simulated provider: requests per minute (rpm) and
 * tokens per minute (tpm), as OpenAI enforces them, and the x-ratelimit-* headers and 429 bodies it
 * answers with.
 *
 * Each limit is a token bucket: it holds up to `limit` units, refills continuously at limit/60 s
 * and starts full; a request is admitted when the requests bucket holds 1 and the tokens bucket
 * holds its token estimate (prompt tokens + n * max_tokens), and both are charged at once. When the
 * answer is computed the tokens bucket is corrected by the actual usage (prompt + completion tokens,
 * reasoning included): refunded when the answer used less than max_tokens allowed, charged more
 * when no max_tokens was given — so a bucket may go below zero and hold later requests back longer.
 * A refused request charges nothing. The buckets follow the model's current rpm / tpm: when a limit
 * changes (POST /sim/models/<name>) that bucket starts full again at the new limit.
 *
 * Time is the simulator's monotonic clock in ms (sim->now_ms). Single-threaded like the rest of
 * the simulator; nothing here blocks. */
#ifndef SIM_RATELIMIT_H
#define SIM_RATELIMIT_H

#include "reply.h"

#include <stddef.h>
#include <stdint.h>

typedef struct RateBucket {
    int64_t limit; /* per minute, as last seen; 0 = unlimited (the bucket is unused) */
    double level;  /* units available now; below 0 after a usage correction beyond the estimate */
    int64_t at_ms; /* when level was last brought up to date */
} RateBucket;

typedef struct RateModel {
    RateBucket requests, tokens;
} RateModel;

typedef struct RateLimits {
    RateModel *models; /* one per catalog model, owned */
    size_t n;
} RateLimits;

typedef enum {
    RATE_OK = 0,        /* admitted and charged */
    RATE_REQUESTS,      /* refused: the requests bucket is short (type "requests") */
    RATE_TOKENS,        /* refused: the tokens bucket is short (type "tokens") */
    RATE_TOO_LARGE,     /* refused for good: the estimate alone exceeds tpm, no retry can pass */
} RateVerdict;

typedef struct RateCheck {
    RateVerdict verdict;
    int64_t wait_ms;   /* refused: ms until both buckets would admit the request (>= 1) */
    int64_t limit;     /* the refusing limit */
    int64_t used;      /* its units in use: limit - floor(level) */
    int64_t requested; /* what the request asked of it: 1, or the token estimate */
} RateCheck;

/* Returns 0 or TQ_ENOMEM. Every bucket starts full. */
int ratelimit_init(RateLimits *rl, size_t nmodels);
void ratelimit_free(RateLimits *rl);
/* Every bucket full again (POST /sim/reset). */
void ratelimit_reset(RateLimits *rl);

/* Admit one request of model i under its current limits (rpm, tpm: 0 = unlimited) with the token
 * estimate tokens at now_ms. Charges both buckets only when it returns RATE_OK. */
RateCheck ratelimit_admit(RateLimits *rl, size_t i, int64_t rpm, int64_t tpm, int64_t tokens, int64_t now_ms);
/* After the answer: charge actual - charged more tokens (negative: refund), never above the
 * bucket's limit. Nothing when tpm is 0. */
void ratelimit_correct(RateLimits *rl, size_t i, int64_t tpm, int64_t charged, int64_t actual, int64_t now_ms);
/* Append the x-ratelimit-{limit,remaining,reset}-requests headers when rpm > 0 and the -tokens ones
 * when tpm > 0, as the buckets stand at now_ms. Returns 0 or a reply_header error. */
int ratelimit_headers(RateLimits *rl, size_t i, int64_t rpm, int64_t tpm, int64_t now_ms, SimReply *rep);
/* Fill rep with the 429 of a refused check (rc.verdict != RATE_OK) for model: OpenAI's error body
 * (code rate_limit_exceeded, type "requests" or "tokens") and, unless RATE_TOO_LARGE, retry-after
 * (whole seconds, rounded up) and retry-after-ms. Returns 0 or a TQ_E* code. */
int ratelimit_reply(const RateCheck *rc, const char *model, SimReply *rep);

/* ms as Go's time.Duration prints it, OpenAI's form in headers and messages: "0s", "120ms", "1s",
 * "6.5s", "6m0s", "1h2m3.004s". out needs 32 bytes. */
void ratelimit_duration(int64_t ms, char *out, size_t cap);

#endif
