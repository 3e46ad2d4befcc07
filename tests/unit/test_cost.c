/* Exact money: price parsing, cost of a call, apportioning, formatting. */
#include "../check.h"
#include "cost.h"
#include "err.h"

#include <stdint.h>
#include "db.h"

static void test_parse_price(void)
{
    int64_t v = -1;
    CHECK_INT(cost_parse_price("2.50", 4, &v), 0);
    CHECK_INT(v, 2500000);
    CHECK_INT(cost_parse_price("0.01", 4, &v), 0);
    CHECK_INT(v, 10000);
    CHECK_INT(cost_parse_price("10", 2, &v), 0);
    CHECK_INT(v, 10000000);
    CHECK_INT(cost_parse_price("0.000001", 8, &v), 0);
    CHECK_INT(v, 1);
    CHECK(cost_parse_price("0.0000001", 9, &v) != 0);
    CHECK(cost_parse_price("-1", 2, &v) != 0);
    CHECK(cost_parse_price("1e3", 3, &v) != 0);
    CHECK(cost_parse_price("1.", 2, &v) != 0);
    CHECK(cost_parse_price("", 0, &v) != 0);
}

static void test_cost_of_call_exact(void)
{
    CostPrices gpt4o = {2500000, 1250000, 10000000};
    /* 1,000,000 prompt tokens of which 400,000 cached, 100,000 output:
     * 600k x $2.50/M + 400k x $1.25/M + 100k x $10/M = 1.5 + 0.5 + 1.0 = $3.00 */
    CHECK_INT(cost_of_call(&gpt4o, 1000000, 400000, 100000), 3 * COST_PICO_PER_USD);
    /* one token at $0.01/M is 1e-8 USD = 10,000 picodollars */
    CostPrices q = {10000, 5000, 10000};
    CHECK_INT(cost_of_call(&q, 1, 0, 0), 10000);
    /* cached above prompt is clamped; negatives count as zero */
    CHECK_INT(cost_of_call(&q, 10, 20, -5), 10 * 5000);
    char s[48];
    cost_format_usd(s, sizeof s, cost_of_call(&gpt4o, 1234, 0, 567), 12);
    CHECK_STR(s, "0.008755000000");
}

static void test_apportion_sums_exactly(void)
{
    int64_t w[3] = {1, 1, 1}, parts[3];
    cost_apportion(100, w, parts, 3);
    CHECK_INT(parts[0] + parts[1] + parts[2], 100);
    int64_t w2[4] = {5, 0, 3, 7}, p2[4];
    cost_apportion(1000000007, w2, p2, 4);
    CHECK_INT(p2[0] + p2[1] + p2[2] + p2[3], 1000000007);
    CHECK_INT(p2[1], 0);
    CHECK(p2[3] > p2[0] && p2[0] > p2[2]);
    int64_t z[2] = {0, 0}, p3[2];
    cost_apportion(7, z, p3, 2);
    CHECK_INT(p3[0] + p3[1], 7);
}

static void test_format(void)
{
    char s[48];
    cost_format_usd(s, sizeof s, 1, 12);
    CHECK_STR(s, "0.000000000001");
    cost_format_usd(s, sizeof s, -1500000000000LL, 12);
    CHECK_STR(s, "-1.500000000000");
    cost_format_usd(s, sizeof s, 2500000, 6);
    CHECK_STR(s, "0.000003");
}

/* Hostile numbers: nothing wraps to a negative charge, nothing is undefined (this test runs under
 * UBSan too). */
/* numeric text from PostgreSQL back to picodollars, round trip with cost_format_usd */
static void test_parse_usd(void)
{
    int64_t v = -1;
    CHECK_INT(cost_parse_usd("0.000012500000", &v), 0);
    CHECK_INT(v, 12500000);
    CHECK_INT(cost_parse_usd("3", &v), 0);
    CHECK_INT(v, 3 * COST_PICO_PER_USD);
    CHECK_INT(cost_parse_usd("1.0000000000019", &v), 0); /* a 13th decimal is cut */
    CHECK_INT(v, COST_PICO_PER_USD + 1);
    CHECK_INT(cost_parse_usd("99999999999.5", &v), 0);
    CHECK_INT(v, INT64_MAX);
    char s[48];
    cost_format_usd(s, sizeof s, 123456789012345, 12);
    CHECK_INT(cost_parse_usd(s, &v), 0);
    CHECK_INT(v, 123456789012345);
    CHECK(cost_parse_usd("", &v) != 0);
    CHECK(cost_parse_usd("-1", &v) != 0);
    CHECK(cost_parse_usd("1e3", &v) != 0);
    CHECK(cost_parse_usd(".", &v) != 0);
}

static void test_overflow_saturates(void)
{
    CostPrices dear = {COST_MAX_PRICE_USD * 1000000LL, COST_MAX_PRICE_USD * 1000000LL, COST_MAX_PRICE_USD * 1000000LL};
    CHECK_INT(cost_of_call(&dear, INT64_MAX, 0, INT64_MAX), INT64_MAX);
    CHECK_INT(cost_of_call(&dear, INT64_MAX, INT64_MAX, 0), INT64_MAX);
    CHECK(cost_of_call(&dear, COST_MAX_TOKENS, 0, COST_MAX_TOKENS) > 0);
    CHECK_INT(cost_of_call(&dear, -5, -5, -5), 0);
    CHECK_INT(cost_add(INT64_MAX, 1), INT64_MAX);
    CHECK_INT(cost_add(INT64_MIN, -1), INT64_MIN);
    CHECK_INT(cost_add(40, 2), 42);
    int64_t micro = 0;
    CHECK_INT(cost_parse_price("10000", 5, &micro), 0);
    CHECK_INT(cost_parse_price("10001", 5, &micro), TQ_EINVAL);
    char s[64];
    cost_format_usd(s, sizeof s, INT64_MAX, 12);
    CHECK_STR(s, "9223372.036854775807");
    cost_format_usd(s, sizeof s, INT64_MIN, 6);
    CHECK_STR(s, "-9223372.036855");
}

int main(void)
{
    RUN(test_overflow_saturates);
    RUN(test_parse_price);
    RUN(test_cost_of_call_exact);
    RUN(test_apportion_sums_exactly);
    RUN(test_format);
    RUN(test_parse_usd);
    return check_done();
}
