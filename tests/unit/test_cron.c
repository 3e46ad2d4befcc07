/* Schedules (issue 11): cron expressions parsed or refused with a message naming field and token;
 * next fire times in UTC and across both DST transitions in Berlin, New York and Sydney, checked
 * against UTC instants worked out by hand. */
#include "../check.h"
#include "cron.h"
#include "tzone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* "2026-03-29T01:00:00Z" as a time_t. */
static time_t utc(const char *iso)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return (time_t)-1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static const char *iso(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static Cron parse_ok(const char *expr)
{
    Cron c;
    TqErr err = {0};
    memset(&c, 0, sizeof c);
    int rc = cron_parse(expr, &c, &err);
    CHECKF(rc == 0, "%s: %s", expr, err.msg);
    return c;
}

static void parse_fails(const char *expr, const char *msg)
{
    Cron c;
    TqErr err = {0};
    CHECK_INT(cron_parse(expr, &c, &err), TQ_EINVAL);
    CHECK_STR(err.msg, msg);
}

/* The fire after `from` in zone tz, as an ISO string ("error: ..." when cron_next fails). */
static const char *next_of(const char *expr, const char *tz, const char *from, char *buf, size_t cap)
{
    Cron c = parse_ok(expr);
    TqErr err = {0};
    time_t t = 0;
    if (cron_next(&c, tz, utc(from), &t, &err) < 0) {
        snprintf(buf, cap, "error: %s", err.msg);
        return buf;
    }
    return iso(t, buf, cap);
}

/* Successive fires from `from`, joined by spaces. */
static const char *fires(const char *expr, const char *tz, const char *from, int n, char *buf,
                         size_t cap)
{
    Cron c = parse_ok(expr);
    time_t t = utc(from);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        TqErr err = {0};
        if (cron_next(&c, tz, t, &t, &err) < 0) {
            snprintf(buf + used, cap - used, "error: %s", err.msg);
            return buf;
        }
        char one[32];
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? " " : "", iso(t, one, sizeof one));
    }
    return buf;
}

static void test_parse_fields(void)
{
    Cron c = parse_ok("* * * * *");
    CHECK(c.minutes == (((uint64_t)1 << 60) - 1));
    CHECK_INT(c.hours, (1u << 24) - 1);
    CHECK_INT(c.mdays, 0xfffffffeu);
    CHECK_INT(c.months, 0x1ffe);
    CHECK_INT(c.wdays, 0x7f);
    CHECK_INT(c.mday_star, 1);
    CHECK_INT(c.wday_star, 1);

    c = parse_ok("5,10-12,40-50/5 */6 1-31/10 * 1-5");
    CHECK(c.minutes == ((1ull << 5) | (1ull << 10) | (1ull << 11) | (1ull << 12) | (1ull << 40) |
                        (1ull << 45) | (1ull << 50)));
    CHECK_INT(c.hours, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    CHECK_INT(c.mdays, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    CHECK_INT(c.wdays, 0x3e);
    CHECK_INT(c.mday_star, 0);
    CHECK_INT(c.wday_star, 0);

    /* "a/step" runs to the field's end; surrounding blanks and tabs are fine */
    c = parse_ok("  50/3\t0 1 1 *  ");
    CHECK(c.minutes == ((1ull << 50) | (1ull << 53) | (1ull << 56) | (1ull << 59)));
}

static void test_parse_names_and_sunday(void)
{
    Cron c = parse_ok("0 0 * jan,Mar-MAY,dec mon-fri");
    CHECK_INT(c.months, (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 12));
    CHECK_INT(c.wdays, 0x3e);
    /* 0 and 7 are both Sunday; FRI-SUN wraps onto 7 */
    CHECK_INT(parse_ok("0 0 * * 7").wdays, 1);
    CHECK_INT(parse_ok("0 0 * * 0").wdays, 1);
    CHECK_INT(parse_ok("0 0 * * Sun").wdays, 1);
    CHECK_INT(parse_ok("0 0 * * FRI-SUN").wdays, (1 << 5) | (1 << 6) | 1);
    CHECK_INT(parse_ok("0 0 * * 5-7").wdays, (1 << 5) | (1 << 6) | 1);
    CHECK_INT(parse_ok("0 0 * * */2").wdays, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 6));
    /* a day-of-week field starting with '*' counts as unrestricted for the OR rule (Vixie) */
    CHECK_INT(parse_ok("0 0 */2 * FRI").mday_star, 1);
}

static void test_parse_macros(void)
{
    static const char *const pairs[][2] = {
        {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
        {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"}, {" @DAILY ", "0 0 * * *"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        Cron a = parse_ok(pairs[i][0]), b = parse_ok(pairs[i][1]);
        CHECKF(memcmp(&a, &b, sizeof a) == 0, "%s differs from %s", pairs[i][0], pairs[i][1]);
    }
}

static void test_parse_errors(void)
{
    parse_fails("0 25 * * *", "cron: field 2 (hour) \"25\" is out of 0-23");
    parse_fails("60 * * * *", "cron: field 1 (minute) \"60\" is out of 0-59");
    parse_fails("0 0 0 * *", "cron: field 3 (day-of-month) \"0\" is out of 1-31");
    parse_fails("0 0 1 13 *", "cron: field 4 (month) \"13\" is out of 1-12");
    parse_fails("0 0 * * 8", "cron: field 5 (day-of-week) \"8\" is out of 0-7");
    parse_fails("0 0 * * 1-9", "cron: field 5 (day-of-week) \"9\" is out of 0-7");
    parse_fails("0 0 * * 99999999999", "cron: field 5 (day-of-week) \"99999999999\" is out of 0-7");
    parse_fails("x * * * *", "cron: field 1 (minute) \"x\" is not a number");
    parse_fails("1a * * * *", "cron: field 1 (minute) \"1a\" is not a number");
    parse_fails("0 0 * FOO *", "cron: field 4 (month) \"FOO\" is not a number or a name");
    parse_fails("0 0 * * MONDAY", "cron: field 5 (day-of-week) \"MONDAY\" is not a number or a name");
    parse_fails("0 MON * * *", "cron: field 2 (hour) \"MON\" is not a number");
    parse_fails("0 5-1 * * *", "cron: field 2 (hour) \"5-1\" runs backwards");
    parse_fails("*/0 * * * *", "cron: field 1 (minute) \"*/0\" has a step out of 1-60");
    parse_fails("*/61 * * * *", "cron: field 1 (minute) \"*/61\" has a step out of 1-60");
    parse_fails("*/x * * * *", "cron: field 1 (minute) \"*/x\" has a step that is not a number");
    parse_fails("1-5/ * * * *", "cron: field 1 (minute) \"1-5/\" has a step that is not a number");
    parse_fails("1,,2 * * * *", "cron: field 1 (minute) \"1,,2\" has an empty list item");
    parse_fails("0 0 1,", "cron: expected 5 fields, got 3");
    parse_fails("0 0 * * * *", "cron: expected 5 fields, got 6");
    parse_fails("", "cron: empty expression");
    parse_fails(" \t ", "cron: empty expression");
    parse_fails("@often", "cron: unknown macro \"@often\"");
    parse_fails("@reboot", "cron: unknown macro \"@reboot\"");
    parse_fails("0 0 * * \xc3\xa9", "cron: character 0xc3 at offset 8 is not allowed");
    parse_fails("0 0\n* * *", "cron: character 0x0a at offset 3 is not allowed");
    char lng[CRON_EXPR_MAX + 8];
    memset(lng, ' ', sizeof lng - 1);
    lng[sizeof lng - 1] = '\0';
    memcpy(lng, "* * * * *", 9);
    parse_fails(lng, "cron: expression longer than 256 characters");
}

static void test_next_simple_utc(void)
{
    char b[1024];
    CHECK_STR(next_of("30 9 * * *", "UTC", "2026-01-10T08:00:00Z", b, sizeof b), "2026-01-10T09:30:00Z");
    CHECK_STR(next_of("30 9 * * *", "UTC", "2026-01-10T09:30:00Z", b, sizeof b), "2026-01-11T09:30:00Z");
    CHECK_STR(next_of("0 0 1 1 *", "UTC", "2026-06-01T00:00:00Z", b, sizeof b), "2027-01-01T00:00:00Z");
    CHECK_STR(next_of("@monthly", "UTC", "2026-12-15T00:00:00Z", b, sizeof b), "2027-01-01T00:00:00Z");
    /* Mondays at 08:00: 2026-01-10 is a Saturday */
    CHECK_STR(next_of("0 8 * * MON", "UTC", "2026-01-10T12:00:00Z", b, sizeof b), "2026-01-12T08:00:00Z");
    CHECK_STR(next_of("0 8 * * 7", "UTC", "2026-01-10T12:00:00Z", b, sizeof b), "2026-01-11T08:00:00Z");
    /* a plain local zone without DST question: Berlin in winter is UTC+1 */
    CHECK_STR(next_of("30 9 * * *", "Europe/Berlin", "2026-01-10T00:00:00Z", b, sizeof b),
              "2026-01-10T08:30:00Z");
}

static void test_next_every_minute_and_quarter(void)
{
    char b[1024];
    CHECK_STR(next_of("* * * * *", "UTC", "2026-05-05T12:00:00Z", b, sizeof b), "2026-05-05T12:01:00Z");
    CHECK_STR(next_of("* * * * *", "UTC", "2026-05-05T12:00:30Z", b, sizeof b), "2026-05-05T12:01:00Z");
    CHECK_STR(next_of("* * * * *", "UTC", "2026-12-31T23:59:59Z", b, sizeof b), "2027-01-01T00:00:00Z");
    CHECK_STR(fires("*/15 * * * *", "UTC", "2026-05-05T12:07:00Z", 4, b, sizeof b),
              "2026-05-05T12:15:00Z 2026-05-05T12:30:00Z 2026-05-05T12:45:00Z 2026-05-05T13:00:00Z");
    /* a non-whole-hour zone: Kolkata is UTC+5:30 all year */
    CHECK_STR(next_of("0 * * * *", "Asia/Kolkata", "2026-05-05T12:00:00Z", b, sizeof b),
              "2026-05-05T12:30:00Z");
}

static void test_next_month_ends_and_leap_days(void)
{
    char b[1024];
    /* the 31st skips April, June (30 days) */
    CHECK_STR(fires("0 0 31 * *", "UTC", "2026-03-31T00:00:00Z", 3, b, sizeof b),
              "2026-05-31T00:00:00Z 2026-07-31T00:00:00Z 2026-08-31T00:00:00Z");
    CHECK_STR(next_of("0 0 30 * *", "UTC", "2026-01-30T00:00:00Z", b, sizeof b), "2026-03-30T00:00:00Z");
    CHECK_STR(next_of("0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", b, sizeof b), "2028-02-29T00:00:00Z");
    CHECK_STR(next_of("0 0 29 2 *", "UTC", "2028-02-29T00:00:00Z", b, sizeof b), "2032-02-29T00:00:00Z");
    /* 2100 is not a leap year: the bound of 8 years still finds 2104 */
    CHECK_STR(next_of("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", b, sizeof b), "2104-02-29T00:00:00Z");
    CHECK_STR(next_of("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: expression never fires within 8 years in UTC");
    CHECK_STR(next_of("0 0 31 4,6,9,11 *", "Europe/Berlin", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: expression never fires within 8 years in Europe/Berlin");
}

static void test_next_day_of_month_or_week(void)
{
    char b[1024];
    /* both restricted: the 13th OR any Friday (2026-01-02 and -09 are Fridays, the 13th a Tuesday) */
    CHECK_STR(fires("0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z", 4, b, sizeof b),
              "2026-01-02T00:00:00Z 2026-01-09T00:00:00Z 2026-01-13T00:00:00Z 2026-01-16T00:00:00Z");
    /* day-of-month starting with '*': both must match, so odd-day Fridays only */
    CHECK_STR(fires("0 0 */2 * FRI", "UTC", "2026-01-01T00:00:00Z", 2, b, sizeof b),
              "2026-01-09T00:00:00Z 2026-01-23T00:00:00Z");
    /* day-of-week '*': the day-of-month alone decides */
    CHECK_STR(next_of("0 0 13 * *", "UTC", "2026-01-01T00:00:00Z", b, sizeof b), "2026-01-13T00:00:00Z");
}

/* Berlin: CET+1 / CEST+2, changes at 01:00Z on the last Sundays of March and October. */
static void test_dst_berlin(void)
{
    char b[1024];
    /* 02:30 does not exist on 2026-03-29: fires once, at 03:00 CEST = 01:00Z, then 02:30 CEST */
    CHECK_STR(fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2, b, sizeof b),
              "2026-03-29T01:00:00Z 2026-03-30T00:30:00Z");
    /* 02:30 happens twice on 2026-10-25 (00:30Z CEST, 01:30Z CET): only the first fires */
    CHECK_STR(fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2, b, sizeof b),
              "2026-10-25T00:30:00Z 2026-10-26T01:30:00Z");
    /* asked from inside the second pass of the repeated hour, it waits for the next day */
    CHECK_STR(next_of("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", b, sizeof b),
              "2026-10-26T01:30:00Z");
    /* every quarter hour of the gap maps to 03:00 CEST: one fire, then 03:15 */
    CHECK_STR(fires("*/15 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2, b, sizeof b),
              "2026-03-29T01:00:00Z 2026-03-30T00:00:00Z");
    /* hourly across spring-forward: 01:00 CET, 03:00 CEST, 04:00 CEST */
    CHECK_STR(fires("0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z", 3, b, sizeof b),
              "2026-03-29T00:00:00Z 2026-03-29T01:00:00Z 2026-03-29T02:00:00Z");
    /* hourly across fall-back: 02:00 CEST, then 03:00 CET (the repeated 02:00 CET is skipped) */
    CHECK_STR(fires("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 3, b, sizeof b),
              "2026-10-25T00:00:00Z 2026-10-25T02:00:00Z 2026-10-25T03:00:00Z");
    /* 2040 is past the file's transition table: the footer rule CET-1CEST,M3.5.0,M10.5.0/3 */
    CHECK_STR(fires("30 2 * * *", "Europe/Berlin", "2040-03-24T12:00:00Z", 2, b, sizeof b),
              "2040-03-25T01:00:00Z 2040-03-26T00:30:00Z");
    CHECK_STR(fires("30 2 * * *", "Europe/Berlin", "2040-10-27T12:00:00Z", 2, b, sizeof b),
              "2040-10-28T00:30:00Z 2040-10-29T01:30:00Z");
}

/* New York: EST-5 / EDT-4, changes at 02:00 local on the second Sunday of March and the first
 * Sunday of November (2026-03-08 07:00Z, 2026-11-01 06:00Z); the repeated hour is 01:00-01:59. */
static void test_dst_new_york(void)
{
    char b[1024];
    CHECK_STR(fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2, b, sizeof b),
              "2026-03-08T07:00:00Z 2026-03-09T06:30:00Z");
    CHECK_STR(fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2, b, sizeof b),
              "2026-11-01T05:30:00Z 2026-11-02T06:30:00Z");
    /* 02:30 is not repeated in New York: it fires once, in EST */
    CHECK_STR(next_of("30 2 * * *", "America/New_York", "2026-10-31T12:00:00Z", b, sizeof b),
              "2026-11-01T07:30:00Z");
    CHECK_STR(fires("0 * * * *", "America/New_York", "2026-03-08T06:30:00Z", 2, b, sizeof b),
              "2026-03-08T07:00:00Z 2026-03-08T08:00:00Z");
    CHECK_STR(fires("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", 2, b, sizeof b),
              "2026-11-01T05:00:00Z 2026-11-01T07:00:00Z");
    /* footer years: 2040-03-11 and 2040-11-04 */
    CHECK_STR(next_of("30 2 * * *", "America/New_York", "2040-03-10T12:00:00Z", b, sizeof b),
              "2040-03-11T07:00:00Z");
    CHECK_STR(next_of("30 1 * * *", "America/New_York", "2040-11-03T12:00:00Z", b, sizeof b),
              "2040-11-04T05:30:00Z");
}

/* Sydney, southern hemisphere: AEDT+11 ends 03:00 local on the first Sunday of April (2026-04-04
 * 16:00Z), AEST+10 ends 02:00 local on the first Sunday of October (2026-10-03 16:00Z). */
static void test_dst_sydney(void)
{
    char b[1024];
    CHECK_STR(fires("30 2 * * *", "Australia/Sydney", "2026-04-04T00:00:00Z", 2, b, sizeof b),
              "2026-04-04T15:30:00Z 2026-04-05T16:30:00Z");
    CHECK_STR(fires("30 2 * * *", "Australia/Sydney", "2026-10-03T00:00:00Z", 2, b, sizeof b),
              "2026-10-03T16:00:00Z 2026-10-04T15:30:00Z");
    CHECK_STR(fires("0 * * * *", "Australia/Sydney", "2026-04-04T14:30:00Z", 3, b, sizeof b),
              "2026-04-04T15:00:00Z 2026-04-04T17:00:00Z 2026-04-04T18:00:00Z");
    CHECK_STR(fires("0 * * * *", "Australia/Sydney", "2026-10-03T14:30:00Z", 3, b, sizeof b),
              "2026-10-03T15:00:00Z 2026-10-03T16:00:00Z 2026-10-03T17:00:00Z");
    /* footer years: 2040-04-01 and 2040-10-07 */
    CHECK_STR(next_of("30 2 * * *", "Australia/Sydney", "2040-03-31T00:00:00Z", b, sizeof b),
              "2040-03-31T15:30:00Z");
    CHECK_STR(next_of("30 2 * * *", "Australia/Sydney", "2040-10-06T00:00:00Z", b, sizeof b),
              "2040-10-06T16:00:00Z");
    /* a summer new year (DST across 31 Dec): midnight AEDT is 13:00Z the day before */
    CHECK_STR(next_of("0 0 1 1 *", "Australia/Sydney", "2030-06-01T00:00:00Z", b, sizeof b),
              "2030-12-31T13:00:00Z");
    CHECK_STR(next_of("0 0 1 1 *", "Australia/Sydney", "2040-06-01T00:00:00Z", b, sizeof b),
              "2040-12-31T13:00:00Z");
}

/* The offsets read from the TZif files agree with glibc's localtime_r over 2024-2045 (table years
 * and footer years). Only this single-threaded test sets TZ; the module never does. */
static void test_zone_offsets_match_libc(void)
{
    static const char *const zones[] = {"Europe/Berlin", "America/New_York", "Australia/Sydney",
                                        "Asia/Kolkata", "UTC"};
    const time_t from = utc("2024-01-01T00:00:00Z"), to = utc("2046-01-01T00:00:00Z");
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        const TzZone *z = NULL;
        TqErr err = {0};
        CHECKF(tzone_open(zones[i], &z, &err) == 0, "%s", err.msg);
        if (!z)
            continue;
        char tzvar[64];
        snprintf(tzvar, sizeof tzvar, ":%s", zones[i]);
        setenv("TZ", tzvar, 1);
        tzset();
        int bad = 0;
        for (time_t t = from; t < to && bad < 3; t += 3607) {
            struct tm tm;
            localtime_r(&t, &tm);
            if (tzone_offset(z, t) != tm.tm_gmtoff) {
                CHECKF(0, "%s at %lld: %d, libc %ld", zones[i], (long long)t, tzone_offset(z, t),
                       tm.tm_gmtoff);
                bad++;
            }
        }
        tzone_close(z);
    }
    unsetenv("TZ");
    tzset();
}

/* "@every N": epoch-aligned periods, the same in every zone, DST or not. */
static void test_every(void)
{
    char b[1024];
    CHECK_STR(next_of("@every 5s", "UTC", "2026-01-10T08:00:00Z", b, sizeof b), "2026-01-10T08:00:05Z");
    CHECK_STR(next_of("@every 5s", "UTC", "2026-01-10T08:00:03Z", b, sizeof b), "2026-01-10T08:00:05Z");
    CHECK_STR(next_of("@every 15m", "Europe/Berlin", "2026-03-29T00:59:00Z", b, sizeof b), "2026-03-29T01:00:00Z");
    CHECK_STR(next_of("@every 2h", "America/New_York", "2026-11-01T05:30:00Z", b, sizeof b), "2026-11-01T06:00:00Z");
    CHECK_STR(next_of(" @EVERY  24h ", "UTC", "2026-01-10T08:00:00Z", b, sizeof b), "2026-01-11T00:00:00Z");
    Cron c = parse_ok("@every 90s");
    CHECK(c.every_s == 90);
    parse_fails("@every", "cron: unknown macro \"@every\"");
    parse_fails("@every 0s", "cron: \"@every 0s\" is outside 1s to 24h");
    parse_fails("@every 25h", "cron: \"@every 25h\" is outside 1s to 24h");
    parse_fails("@every 99999999999999s", "cron: \"@every\" takes a whole number and a unit, s, m or h (\"@every 5s\"), not \"99999999999999s\"");
    parse_fails("@every 5", "cron: \"@every\" takes a whole number and a unit, s, m or h (\"@every 5s\"), not \"5\"");
    parse_fails("@every 5d", "cron: \"@every\" takes a whole number and a unit, s, m or h (\"@every 5s\"), not \"5d\"");
    parse_fails("@every 1m30s", "cron: \"@every\" takes a whole number and a unit, s, m or h (\"@every 5s\"), not \"1m30s\"");
}

static void test_zone_errors(void)
{
    char b[1024];
    CHECK_STR(next_of("0 0 * * *", "Mars/Olympus_Mons", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: unknown time zone \"Mars/Olympus_Mons\"");
    CHECK_STR(next_of("0 0 * * *", "Europe", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: unknown time zone \"Europe\"");
    CHECK_STR(next_of("0 0 * * *", "../../etc/passwd", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: time zone name may not start with '/' or contain \"..\"");
    CHECK_STR(next_of("0 0 * * *", "/etc/localtime", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: time zone name may not start with '/' or contain \"..\"");
    CHECK_STR(next_of("0 0 * * *", "Europe/Ber lin", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: time zone name has a character outside [A-Za-z0-9_+-/] at offset 10");
    CHECK_STR(next_of("0 0 * * *", "", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: time zone name is empty or longer than 128 characters");
    /* a file of the tzdata package that is not TZif, and a leap-second zone */
    CHECK_STR(next_of("0 0 * * *", "leapseconds", "2026-01-01T00:00:00Z", b, sizeof b),
              "error: cron: time zone \"leapseconds\": /usr/share/zoneinfo/leapseconds is not a "
              "usable TZif file: no TZif header");
    if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0)
        CHECK_STR(next_of("0 0 * * *", "right/UTC", "2026-01-01T00:00:00Z", b, sizeof b),
                  "error: cron: time zone \"right/UTC\": /usr/share/zoneinfo/right/UTC is not a "
                  "usable TZif file: leap-second zones are not supported");
    Cron c = parse_ok("0 0 * * *");
    TqErr err = {0};
    time_t t = 42;
    CHECK_INT(cron_next(&c, "Etc/Unknown", 0, &t, &err), TQ_ENOTFOUND);
    CHECK_INT(t, 42);
    CHECK_INT(cron_next(&c, "UTC", (time_t)-3000000000LL, &t, &err), TQ_EINVAL);
}

int main(void)
{
    RUN(test_parse_fields);
    RUN(test_parse_names_and_sunday);
    RUN(test_parse_macros);
    RUN(test_parse_errors);
    RUN(test_next_simple_utc);
    RUN(test_next_every_minute_and_quarter);
    RUN(test_next_month_ends_and_leap_days);
    RUN(test_next_day_of_month_or_week);
    RUN(test_dst_berlin);
    RUN(test_dst_new_york);
    RUN(test_dst_sydney);
    RUN(test_zone_offsets_match_libc);
    RUN(test_every);
    RUN(test_zone_errors);
    return check_done();
}
