/* report_parse_duration: the --since argument of `tierq report`. No database. */
#include "../check.h"

#include "err.h"
#include "report.h"

static long parsed(const char *s)
{
    long v = -12345;
    int rc = report_parse_duration(s, &v);
    return rc == 0 ? v : rc;
}

static void test_single_units(void)
{
    CHECK_INT(parsed("90s"), 90);
    CHECK_INT(parsed("15m"), 15 * 60);
    CHECK_INT(parsed("24h"), 24 * 3600);
    CHECK_INT(parsed("7d"), 7 * 86400);
    CHECK_INT(parsed("1s"), 1);
    CHECK_INT(parsed("0090s"), 90);
}

static void test_combined_units(void)
{
    CHECK_INT(parsed("1h30m"), 5400);
    CHECK_INT(parsed("1d12h"), 86400 + 12 * 3600);
    CHECK_INT(parsed("2d3h4m5s"), 2 * 86400 + 3 * 3600 + 4 * 60 + 5);
    CHECK_INT(parsed("1m0s"), 60);
    CHECK_INT(parsed("90m"), 5400); /* a unit may exceed the next larger one */
}

static void test_rejected_forms(void)
{
    const char *bad[] = {"", "s", "15", "1h30", "15x", "15M", "1H", "-5m", "+5m", " 5m", "5m ", "5 m", "1.5h",
                         "30m1h", "1h1h", "1s1m", "0s", "0d0h", "h1", "1hh", "7d\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long v = -7;
        int rc = report_parse_duration(bad[i], &v);
        CHECKF(rc == TQ_EINVAL, "\"%s\" gave rc %d", bad[i], rc);
        CHECKF(v == -7, "\"%s\" changed the output to %ld on failure", bad[i], v);
    }
    long v = -7;
    CHECK_INT(report_parse_duration(NULL, &v), TQ_EINVAL);
    CHECK_INT(v, -7);
}

static void test_limits(void)
{
    CHECK_INT(parsed("3650d"), REPORT_MAX_DURATION_S);
    CHECK_INT(parsed("3650d1s"), TQ_EINVAL);
    CHECK_INT(parsed("3651d"), TQ_EINVAL);
    CHECK_INT(parsed("315360000s"), REPORT_MAX_DURATION_S);
    CHECK_INT(parsed("315360001s"), TQ_EINVAL);
    /* far more digits than any long holds: refused, not wrapped around */
    CHECK_INT(parsed("99999999999999999999999999d"), TQ_EINVAL);
    CHECK_INT(parsed("18446744073709551617s"), TQ_EINVAL);
}

int main(void)
{
    RUN(test_single_units);
    RUN(test_combined_units);
    RUN(test_rejected_forms);
    RUN(test_limits);
    return check_done();
}
