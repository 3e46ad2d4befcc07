/* backoff.c — full-jitter exponential backoff on a caller-owned splitmix64 state. */
#include "backoff.h"

uint64_t backoff_rand(uint64_t *state)
{
    /* splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence through a strong mixer, so every seed,
     * 0 included, gives a full-period, well-distributed stream. */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int64_t backoff_rand_upto(uint64_t *state, int64_t n)
{
    if (n <= 0)
        return 0;
    uint64_t range = (uint64_t)n + 1; /* n <= INT64_MAX, so no overflow */
    /* Reject the low values that would make some results more likely than others. */
    uint64_t threshold = (0 - range) % range;
    uint64_t r;
    do
        r = backoff_rand(state);
    while (r < threshold);
    return (int64_t)(r % range);
}

int64_t backoff_full_jitter_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t *rng_state)
{
    if (base_ms <= 0 || cap_ms <= 0)
        return 0;
    if (attempt < 0)
        attempt = 0;
    int64_t ceiling = base_ms;
    /* Double until the cap: at most 63 steps, and no shift can overflow. */
    for (int k = 0; k < attempt && ceiling < cap_ms; k++)
        ceiling = ceiling > INT64_MAX / 2 ? INT64_MAX : ceiling * 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    return backoff_rand_upto(rng_state, ceiling);
}

int64_t backoff_next_ms(int attempt, int64_t retry_after_ms, int64_t base_ms, int64_t cap_ms, uint64_t *rng_state)
{
    if (retry_after_ms < 0)
        return backoff_full_jitter_ms(attempt, base_ms, cap_ms, rng_state);
    int64_t spread = base_ms < cap_ms ? base_ms : cap_ms;
    int64_t extra = backoff_rand_upto(rng_state, spread);
    if (retry_after_ms > INT64_MAX - extra)
        return INT64_MAX;
    return retry_after_ms + extra;
}

int64_t backoff_requeue_ms(int attempt, int64_t base_ms, int64_t min_ms, uint64_t *rng_state)
{
    int64_t step = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempt && step < BACKOFF_REQUEUE_CAP_MS; i++)
        step *= 4;
    if (step > BACKOFF_REQUEUE_CAP_MS)
        step = BACKOFF_REQUEUE_CAP_MS;
    int64_t d = step / 2 + backoff_rand_upto(rng_state, step / 2);
    return d < min_ms ? min_ms : d;
}
