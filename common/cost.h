/* cost.h — exact money arithmetic.
 *
 * Prices are held as integer micro-dollars per million tokens (USD 2.50 / M -> 2500000), parsed
 * from their decimal text without floating point. The cost of a call is then an integer count of
 * picodollars (1e-12 USD): tokens x price-in-micro-USD-per-Mtok. Sums of integers are exact, so the
 * sum over jobs equals the sum over calls to the last digit, not just to the cent. int64 holds
 * USD 9.2 million in picodollars, far above any one call or run. */
#ifndef TQ_COST_H
#define TQ_COST_H

#include <stddef.h>
#include <stdint.h>

typedef struct CostPrices {
    int64_t input;        /* uncached input, micro-USD per million tokens */
    int64_t cached_input; /* cached input */
    int64_t output;       /* output, including reasoning tokens */
} CostPrices;

#define COST_PICO_PER_USD 1000000000000LL

/* Prices above this many USD per million tokens are refused (the dearest models cost ~$600/M):
 * with usage clamped to COST_MAX_TOKENS a call stays far inside 64 bits. */
#define COST_MAX_PRICE_USD 10000
/* More tokens than any model takes or writes in one call: usage beyond it is implausible. */
#define COST_MAX_TOKENS 100000000LL

/* Parse a non-negative decimal price ("0.01", "2.5", "10") with at most 6 decimals into micro-USD.
 * Returns 0, or TQ_EINVAL for anything else (negative, exponent, too many decimals, above
 * COST_MAX_PRICE_USD). */
int cost_parse_price(const char *text, size_t len, int64_t *micro_out);

/* Picodollars for one call. prompt_tokens includes cached_tokens, as providers report it; cached
 * tokens above prompt_tokens are clamped. Negative counts count as 0. Computed in 128 bits and
 * saturated at INT64_MAX, never wrapped. */
int64_t cost_of_call(const CostPrices *p, int64_t prompt_tokens, int64_t cached_tokens, int64_t output_tokens);

/* a + b, saturated at INT64_MAX / INT64_MIN instead of overflowing (sums of money). */
int64_t cost_add(int64_t a, int64_t b);

/* Split total picodollars over n parts in proportion to weights (all >= 0; equal split when all are
 * 0). The parts always sum to total exactly: rounding remainders go to the largest weights. */
void cost_apportion(int64_t total, const int64_t *weights, int64_t *parts, int n);

/* Parse non-negative dollars as PostgreSQL prints a numeric ("0.000012500000", "3") into
 * picodollars: at most 12 decimals (more are cut), saturated at INT64_MAX. Returns 0, or TQ_EINVAL
 * for anything else (empty, a sign, an exponent). */
int cost_parse_usd(const char *text, int64_t *pico_out);

/* Dollars as decimal text with `decimals` digits (0..12), rounded half up: 12 is exact (what goes
 * into numeric columns), 6 is for display ("0.012345"). The one money formatter. */
void cost_format_usd(char *out, size_t cap, int64_t pico, int decimals);

#endif
