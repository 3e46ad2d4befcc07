#include "cost.h"

#include "err.h"

#include <stdint.h>
#include <stdio.h>

/* total x weight can exceed 64 bits for large runs; GCC and Clang both have 128-bit integers. */
__extension__ typedef __int128 cost_i128;

int cost_parse_price(const char *s, size_t n, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    int frac_digits = 0, whole_digits = 0;
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        whole = whole * 10 + (s[i] - '0');
        whole_digits++;
        if (whole > COST_MAX_PRICE_USD)
            return TQ_EINVAL;
        i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (frac_digits == 6)
                return TQ_EINVAL;
            frac = frac * 10 + (s[i] - '0');
            frac_digits++;
            i++;
        }
        if (frac_digits == 0)
            return TQ_EINVAL;
    }
    if (i != n || whole_digits == 0)
        return TQ_EINVAL;
    while (frac_digits < 6) {
        frac *= 10;
        frac_digits++;
    }
    *out = whole * 1000000 + frac;
    return 0;
}

int64_t cost_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

int64_t cost_of_call(const CostPrices *p, int64_t prompt_tokens, int64_t cached_tokens, int64_t output_tokens)
{
    if (prompt_tokens < 0) prompt_tokens = 0;
    if (cached_tokens < 0) cached_tokens = 0;
    if (output_tokens < 0) output_tokens = 0;
    if (cached_tokens > prompt_tokens) cached_tokens = prompt_tokens;
    /* in 128 bits, then saturated: absurd usage gives an absurd but positive number, never a wrap
     * to a negative charge */
    cost_i128 c = (cost_i128)(prompt_tokens - cached_tokens) * p->input + (cost_i128)cached_tokens * p->cached_input +
                  (cost_i128)output_tokens * p->output;
    return c > (cost_i128)INT64_MAX ? INT64_MAX : (int64_t)c;
}

void cost_apportion(int64_t total, const int64_t *weights, int64_t *parts, int n)
{
    if (n <= 0)
        return;
    cost_i128 wsum = 0;
    for (int i = 0; i < n; i++)
        wsum += weights[i] > 0 ? weights[i] : 0;
    int64_t given = 0;
    int largest = 0;
    for (int i = 0; i < n; i++) {
        int64_t w = weights[i] > 0 ? weights[i] : 0;
        if (wsum == 0)
            parts[i] = total / n;
        else
            parts[i] = (int64_t)(((cost_i128)total * w) / wsum);
        given += parts[i];
        if ((weights[i] > weights[largest]))
            largest = i;
    }
    /* The remainder is smaller than n picodollars; one part absorbs it so the sum is exact. */
    parts[largest] += total - given;
}

void cost_format_usd(char *out, size_t cap, int64_t pico, int decimals)
{
    if (decimals < 0)
        decimals = 0;
    if (decimals > 12)
        decimals = 12;
    uint64_t scale = 1;
    for (int i = decimals; i < 12; i++)
        scale *= 10u;
    const char *sign = pico < 0 ? "-" : "";
    uint64_t v = pico < 0 ? (uint64_t)(-(pico + 1)) + 1u : (uint64_t)pico;
    uint64_t units = (v + scale / 2) / scale; /* rounded half up to the last decimal shown */
    uint64_t per_usd = COST_PICO_PER_USD / scale;
    if (decimals == 0)
        snprintf(out, cap, "%s%llu", sign, (unsigned long long)units);
    else
        snprintf(out, cap, "%s%llu.%0*llu", sign, (unsigned long long)(units / per_usd), decimals,
                 (unsigned long long)(units % per_usd));
}

int cost_parse_usd(const char *text, int64_t *pico_out)
{
    const char *p = text;
    cost_i128 v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (v <= INT64_MAX)
            v = v * 10 + (*p - '0');
    int decimals = 0;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (decimals < 12) {
                v = v * 10 + (*p - '0');
                decimals++;
            }
    if (*p || digits == 0)
        return TQ_EINVAL;
    for (; decimals < 12; decimals++)
        v = v <= INT64_MAX ? v * 10 : v;
    *pico_out = v > INT64_MAX ? INT64_MAX : (int64_t)v;
    return 0;
}
