/* tzone.h — IANA time zone rules read from TZif files, without TZ, tzset() or localtime().
 *
 * Why not libc: localtime_r depends on the process-wide TZ setting, and changing it with setenv() is
 * not safe in a multi-threaded daemon. This module reads <TZONE_DIR>/<name> itself (RFC 8536,
 * versions 1-4; the 64-bit block when there is one): transition times and their UTC offsets, and
 * after the last transition the POSIX TZ footer ("CET-1CEST,M3.5.0,M10.5.0/3": Jn, n and Mm.w.d
 * rules, rule times from -167 to 167 hours). With no footer the last offset is extended. Zones with
 * leap-second records ("right/...") are refused. "UTC" works even without the tzdata package.
 *
 * Zones are immutable once opened and cached for the life of the process (TZONE_CACHE of them);
 * opening a cached zone takes a mutex and does not block on I/O. */
#ifndef TQ_TZONE_H
#define TQ_TZONE_H

#include "err.h"

#include <stdint.h>

#define TZONE_DIR "/usr/share/zoneinfo"
#define TZONE_NAME_MAX 128          /* longest accepted zone name */
#define TZONE_FILE_MAX (512 * 1024) /* largest accepted TZif file (real ones are under 4 KiB) */
#define TZONE_CACHE 64              /* zones kept; beyond that a zone is read again per open */

typedef struct TzZone TzZone;

/* Open zone `name` ("Europe/Berlin"). Returns 0 and *out, or
 *   TQ_EINVAL    the name is NULL or empty, longer than TZONE_NAME_MAX, starts with '/', contains "..", or
 *                a character outside [A-Za-z0-9_+-/];
 *   TQ_ENOTFOUND no such zone (no regular file of that name);
 *   TQ_EIO       the file could not be read;
 *   TQ_EPARSE    not a usable TZif file (the message says why).
 * The message names the zone. Thread-safe; the first open of a zone reads its file (blocking, under
 * the cache lock). Release with tzone_close. */
int tzone_open(const char *name, const TzZone **out, TqErr *err);

/* Release a zone from tzone_open (a cached zone stays cached). tzone_close(NULL) does nothing. */
void tzone_close(const TzZone *z);

/* Seconds east of UTC in effect at instant t. Pure. */
int32_t tzone_offset(const TzZone *z, int64_t t);

/* The instant of a local wall-clock time, `local` being the local fields counted as if they were
 * UTC (days since 1970-01-01 * 86400 + seconds of the day). A local time that occurs twice (the
 * fall-back overlap) gives its FIRST instant; one that does not exist (the spring-forward gap) gives
 * the first instant after the gap, the transition itself. Assumes, as every real zone allows, at
 * most one offset change within two days of `local`. Pure. */
int64_t tzone_local_to_utc(const TzZone *z, int64_t local);

/* Proleptic Gregorian calendar arithmetic for local fields: days since 1970-01-01 of y-m-d (m 1-12,
 * d 1-31; a day past the month's end runs into the next month), and back. Pure. */
int64_t tzone_days_from_civil(int64_t y, int m, int d);
void tzone_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* Day of the week of a day number, 0 Sunday to 6 Saturday. Pure. */
int tzone_weekday(int64_t days);

#endif
