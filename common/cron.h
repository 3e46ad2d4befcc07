/* cron.h — the schedule expressions of issue 11: parse a cron expression, find its next fire time
 * in an IANA time zone.
 *
 * Expressions: the standard five fields "minute hour day-of-month month day-of-week".
 *   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT
 *   (0 and 7 are both Sunday; names are case-insensitive). Each field is a comma list of items; an
 *   item is "*", "n", "a-b", "*" + "/step", "a-b/step" or "a/step" (a to the field's maximum).
 *   Ranges may not run backwards ("5-1" is an error; "FRI-SUN" is fine, SUN counting as 7 there).
 *   Macros: @hourly "0 * * * *", @daily and @midnight "0 0 * * *", @weekly "0 0 * * 0",
 *   @monthly "0 0 1 * *", @yearly and @annually "0 0 1 1 *". @reboot is not a schedule and is refused.
 *   "@every N" with N a whole number followed by s, m or h (1s to 24h): every N seconds of UTC time,
 *   counted from the Unix epoch (00:00:05, 00:00:10, ... for "@every 5s"), so every process agrees on
 *   the due times; the time zone plays no part. For short schedules (tests, near-real-time feeds)
 *   that the minute fields cannot express.
 *   At most CRON_EXPR_MAX characters, printable ASCII only.
 * Day-of-month and day-of-week follow Vixie cron: a day field whose text begins with '*' (a bare
 *   star, or a star with a step) counts as unrestricted for this rule. When both day fields are
 *   restricted a day matches if EITHER matches ("0 0 13 * FRI" fires on every 13th and on every
 *   Friday); otherwise both must match (day-of-month "*" + "/2" with day-of-week FRI fires on the
 *   Fridays that are odd days of the month).
 *
 * Time zones: tz is an IANA name ("Europe/Berlin", "UTC"); its rules come from the TZif file itself,
 * table and POSIX footer (common/tzone.h), never from TZ, tzset() or localtime(): the daemon is
 * multi-threaded.
 *
 * The DST rule. Fire times are local wall-clock times; cron_next maps each matching local minute to
 * an instant:
 *   - a local time that does not exist (the spring-forward gap, 02:30 on the last Sunday of March in
 *     Berlin) fires ONCE, at the first instant after the gap (03:00 local, the transition itself);
 *     every matching minute inside the gap maps to that same instant, so it fires once however many
 *     match;
 *   - a local time that occurs twice (fall-back, 02:30 on the last Sunday of October in Berlin)
 *     fires ONCE, at its first occurrence (the summer-time one);
 *   - so an hourly "0 * * * *" fires at every distinct instant whose local time is on the hour,
 *     except that the repeated hour fires only once: across Berlin's fall-back it fires at 02:00 CEST
 *     and next at 03:00 CET, two real hours later; across spring-forward it fires at 01:00 CET and at
 *     03:00 CEST, one real hour later.
 * The search looks at most CRON_SEARCH_YEARS of local dates ahead; an expression that never fires
 * ("0 0 30 2 *") is an error, not a hang. */
#ifndef TQ_CRON_H
#define TQ_CRON_H

#include "err.h"

#include <stdint.h>
#include <time.h>

#define CRON_EXPR_MAX 256        /* longest accepted expression, in bytes */
#define CRON_SEARCH_YEARS 8      /* enough for Feb 29 across a century year that is not leap */

/* A parsed expression: a plain value, no resources; copy it freely. Bit n of a set means value n
 * matches (days of the week 0-6, Sunday 0; 7 is folded into 0). */
typedef struct Cron {
    uint64_t minutes;   /* bits 0-59 */
    uint32_t hours;     /* bits 0-23 */
    uint32_t mdays;     /* bits 1-31 */
    uint16_t months;    /* bits 1-12 */
    uint8_t wdays;      /* bits 0-6 */
    uint8_t mday_star;  /* the day-of-month field began with '*' (Vixie's DOM_STAR) */
    uint8_t wday_star;  /* the day-of-week field began with '*' */
    int32_t every_s;    /* "@every N": the period in seconds; 0 for a five-field expression */
} Cron;

/* Parse expr into *out. Returns 0, or TQ_EINVAL with err naming the field and the bad token:
 *   cron: field 2 (hour) "25" is out of 0-23
 *   cron: expected 5 fields, got 4
 *   cron: unknown macro "@often"
 * *out is written only on success. Pure; any thread. */
int cron_parse(const char *expr, Cron *out, TqErr *err);

/* The first fire time strictly after `after`, in zone tz, following the DST rule above; stored in
 * *next only on success. Returns 0, or
 *   TQ_EINVAL    `after` lies outside the years 1900-9999, or tzone_open refused the name;
 *   TQ_ENOTFOUND the expression never fires within CRON_SEARCH_YEARS, or the zone is unknown;
 *   TQ_EPARSE, TQ_EIO  from tzone_open (unusable or unreadable zone file).
 * Thread-safe. Blocks only the first time a zone is used (it reads the zone file under a lock);
 * parsed zones are cached for the life of the process (see tzone.h). */
int cron_next(const Cron *c, const char *tz, time_t after, time_t *next, TqErr *err);

#endif
