#include "tzone.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caps on a TZif file's counts: real files have at most a few hundred transitions and a dozen types;
 * the caps keep size arithmetic far from overflow whatever the file says. */
#define TZONE_TIMES_MAX 20000
#define TZONE_TYPES_MAX 256
#define TZONE_CHARS_MAX 4096
#define TZONE_OFFSET_MAX (26 * 3600)

/* One POSIX TZ rule date: Jn (1-365, Feb 29 never counted), n (0-365, counted) or Mm.w.d, and the
 * local time of day (seconds, may be negative or beyond 24h) at which the change happens. */
typedef struct TzRule {
    char kind; /* 'J', 'N' or 'M' */
    int m, w, d, n;
    int32_t secs;
} TzRule;

enum { FOOTER_NONE, FOOTER_FIXED, FOOTER_DST };

struct TzZone {
    char name[TZONE_NAME_MAX + 1];
    int cached; /* owned by the cache; tzone_close leaves it */
    int64_t *times;
    uint8_t *types; /* per transition, an index into offs */
    int32_t *offs;  /* per time type, seconds east of UTC */
    size_t ntimes, ntypes;
    int footer;
    int32_t std_off, dst_off; /* seconds east of UTC */
    TzRule start, end;        /* start in standard time, end in daylight time */
};

/* ---- calendar ---------------------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Howard Hinnant's days_from_civil / civil_from_days: exact for any year in int64 range we use. */
int64_t tzone_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void tzone_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    days += 719468;
    int64_t era = floor_div(days, 146097);
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int tzone_weekday(int64_t days)
{
    return (int)(days + 4 - floor_div(days + 4, 7) * 7); /* 1970-01-01 was a Thursday (4) */
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/* ---- POSIX TZ footer --------------------------------------------------------------------------- */

/* Local seconds (fields counted as UTC) at which rule r happens in year y. */
static int64_t rule_local(const TzRule *r, int64_t y)
{
    int64_t day;
    if (r->kind == 'J')
        day = tzone_days_from_civil(y, 1, 1) + r->n - 1 + (is_leap(y) && r->n >= 60);
    else if (r->kind == 'N')
        day = tzone_days_from_civil(y, 1, 1) + r->n;
    else {
        int64_t first = tzone_days_from_civil(y, r->m, 1);
        int md = 1 + (r->d - tzone_weekday(first) + 7) % 7 + 7 * (r->w - 1);
        while (md > month_days(y, r->m))
            md -= 7; /* week 5 means the last such weekday */
        day = first + md - 1;
    }
    return day * 86400 + r->secs;
}

static int32_t footer_offset(const TzZone *z, int64_t t)
{
    if (z->footer == FOOTER_FIXED)
        return z->std_off;
    int64_t y;
    int m, d;
    tzone_civil_from_days(floor_div(t + z->std_off, 86400), &y, &m, &d);
    int64_t start = rule_local(&z->start, y) - z->std_off;
    int64_t end = rule_local(&z->end, y) - z->dst_off;
    int dst = start < end ? (t >= start && t < end) /* northern: summer inside the year */
                          : !(t >= end && t < start); /* southern: summer across the new year */
    return dst ? z->dst_off : z->std_off;
}

/* Parse "[+-]hh[:mm[:ss]]" with hh up to max_h into seconds; advances *p. */
static int parse_hms(const char **p, int max_h, int32_t *out)
{
    const char *s = *p;
    int sign = 1;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    int part[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (*s != ':')
                break;
            s++;
        }
        if (*s < '0' || *s > '9')
            return -1;
        int v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 3) {
            v = v * 10 + (*s++ - '0');
            digits++;
        }
        part[i] = v;
    }
    if (part[0] > max_h || part[1] > 59 || part[2] > 59)
        return -1;
    *out = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
    *p = s;
    return 0;
}

/* A zone abbreviation: "<...>" or three or more letters. */
static int parse_abbr(const char **p)
{
    const char *s = *p;
    if (*s == '<') {
        while (*s && *s != '>')
            s++;
        if (*s != '>')
            return -1;
        *p = s + 1;
        return 0;
    }
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
        s++;
    if (s - *p < 3)
        return -1;
    *p = s;
    return 0;
}

static int parse_num(const char **p, int lo, int hi, int *out)
{
    const char *s = *p;
    int v = 0, digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 4) {
        v = v * 10 + (*s++ - '0');
        digits++;
    }
    if (digits == 0 || v < lo || v > hi)
        return -1;
    *out = v;
    *p = s;
    return 0;
}

static int parse_rule(const char **p, TzRule *r)
{
    const char *s = *p;
    memset(r, 0, sizeof *r);
    if (*s == 'J') {
        s++;
        r->kind = 'J';
        if (parse_num(&s, 1, 365, &r->n) < 0)
            return -1;
    } else if (*s == 'M') {
        s++;
        r->kind = 'M';
        if (parse_num(&s, 1, 12, &r->m) < 0 || *s++ != '.' || parse_num(&s, 1, 5, &r->w) < 0 ||
            *s++ != '.' || parse_num(&s, 0, 6, &r->d) < 0)
            return -1;
    } else {
        r->kind = 'N';
        if (parse_num(&s, 0, 365, &r->n) < 0)
            return -1;
    }
    r->secs = 2 * 3600;
    if (*s == '/') {
        s++;
        if (parse_hms(&s, 167, &r->secs) < 0) /* RFC 8536 allows -167..167 hours */
            return -1;
    }
    *p = s;
    return 0;
}

/* Parse the footer TZ string into z. Offsets in POSIX are west-positive; we keep east-positive. */
static int parse_footer(TzZone *z, const char *s)
{
    int32_t off;
    if (*s == '\0') {
        z->footer = FOOTER_NONE;
        return 0;
    }
    if (parse_abbr(&s) < 0 || parse_hms(&s, 24, &off) < 0)
        return -1;
    z->std_off = -off;
    if (*s == '\0') {
        z->footer = FOOTER_FIXED;
        return 0;
    }
    if (parse_abbr(&s) < 0)
        return -1;
    z->dst_off = z->std_off + 3600;
    if (*s != ',' && *s != '\0') {
        if (parse_hms(&s, 24, &off) < 0)
            return -1;
        z->dst_off = -off;
    }
    /* A DST name without rules means the POSIX default rules, which no tzdata footer relies on. */
    if (*s++ != ',' || parse_rule(&s, &z->start) < 0 || *s++ != ',' || parse_rule(&s, &z->end) < 0 ||
        *s != '\0')
        return -1;
    z->footer = FOOTER_DST;
    return 0;
}

/* ---- TZif -------------------------------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct TzCounts {
    size_t isut, isstd, leap, time, type, chars;
} TzCounts;

/* Read a 44-byte header at data[*pos]; returns 0 or -1 (message in why). */
static int read_header(const uint8_t *data, size_t len, size_t pos, char *version, TzCounts *c,
                       const char **why)
{
    if (len - pos < 44 || memcmp(data + pos, "TZif", 4) != 0) {
        *why = "no TZif header";
        return -1;
    }
    *version = (char)data[pos + 4];
    const uint8_t *n = data + pos + 20;
    c->isut = be32(n);
    c->isstd = be32(n + 4);
    c->leap = be32(n + 8);
    c->time = be32(n + 12);
    c->type = be32(n + 16);
    c->chars = be32(n + 20);
    if (c->time > TZONE_TIMES_MAX || c->type == 0 || c->type > TZONE_TYPES_MAX ||
        c->chars > TZONE_CHARS_MAX || c->isut > c->type || c->isstd > c->type ||
        c->leap > TZONE_TIMES_MAX) {
        *why = "counts out of range";
        return -1;
    }
    if (c->leap > 0) {
        *why = "leap-second zones are not supported";
        return -1;
    }
    return 0;
}

static size_t block_len(const TzCounts *c, size_t tsize)
{
    return c->time * tsize + c->time + c->type * 6 + c->chars + c->leap * (tsize + 4) + c->isstd +
           c->isut;
}

/* Fill z from the data block at data[pos] (tsize 4 or 8 byte times). */
static int read_block(TzZone *z, const uint8_t *data, size_t pos, const TzCounts *c, size_t tsize,
                      const char **why)
{
    z->times = malloc((c->time ? c->time : 1) * sizeof *z->times);
    z->types = malloc(c->time ? c->time : 1);
    z->offs = malloc(c->type * sizeof *z->offs);
    if (!z->times || !z->types || !z->offs) {
        *why = "out of memory";
        return -1;
    }
    const uint8_t *p = data + pos;
    for (size_t i = 0; i < c->time; i++, p += tsize) {
        z->times[i] = tsize == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
        if (i > 0 && z->times[i] <= z->times[i - 1]) {
            *why = "transition times not ascending";
            return -1;
        }
    }
    for (size_t i = 0; i < c->time; i++, p++) {
        if (*p >= c->type) {
            *why = "transition type out of range";
            return -1;
        }
        z->types[i] = *p;
    }
    for (size_t i = 0; i < c->type; i++, p += 6) {
        int32_t off = (int32_t)be32(p);
        if (off < -TZONE_OFFSET_MAX || off > TZONE_OFFSET_MAX) {
            *why = "utc offset out of range";
            return -1;
        }
        z->offs[i] = off;
    }
    z->ntimes = c->time;
    z->ntypes = c->type;
    return 0;
}

/* Parse a whole TZif file; why says what was wrong on -1. */
static int parse_tzif(TzZone *z, const uint8_t *data, size_t len, const char **why)
{
    char version;
    TzCounts c;
    if (read_header(data, len, 0, &version, &c, why) < 0)
        return -1;
    size_t pos = 44;
    size_t blen = block_len(&c, 4);
    if (len - pos < blen) {
        *why = "truncated";
        return -1;
    }
    if (version == '\0') /* version 1: 32-bit times, no footer */
        return read_block(z, data, pos, &c, 4, why);
    pos += blen;
    if (read_header(data, len, pos, &version, &c, why) < 0)
        return -1;
    pos += 44;
    blen = block_len(&c, 8);
    if (len - pos < blen) {
        *why = "truncated";
        return -1;
    }
    if (read_block(z, data, pos, &c, 8, why) < 0)
        return -1;
    pos += blen;
    /* The footer: "\n" TZ-string "\n". */
    const uint8_t *nl = pos < len ? memchr(data + pos + 1, '\n', len - pos - 1) : NULL;
    if (pos >= len || data[pos] != '\n' || !nl) {
        *why = "missing footer";
        return -1;
    }
    char footer[256];
    size_t flen = (size_t)(nl - (data + pos + 1));
    if (flen >= sizeof footer) {
        *why = "footer too long";
        return -1;
    }
    memcpy(footer, data + pos + 1, flen);
    footer[flen] = '\0';
    if (parse_footer(z, footer) < 0) {
        *why = "footer TZ string not understood";
        return -1;
    }
    return 0;
}

/* ---- opening and the cache --------------------------------------------------------------------- */

static void zone_free(TzZone *z)
{
    if (!z)
        return;
    free(z->times);
    free(z->types);
    free(z->offs);
    free(z);
}

static int valid_name(const char *name, TqErr *err)
{
    size_t n = name ? strnlen(name, TZONE_NAME_MAX + 1) : 0;
    if (n == 0 || n > TZONE_NAME_MAX)
        return tq_err(err, TQ_EINVAL, "time zone name is empty or longer than %d characters",
                      TZONE_NAME_MAX);
    /* The name becomes a path under TZONE_DIR: nothing may climb out of it or point elsewhere. */
    if (name[0] == '/' || strstr(name, ".."))
        return tq_err(err, TQ_EINVAL, "time zone name may not start with '/' or contain \"..\"");
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '+' || ch == '-' || ch == '/'))
            return tq_err(err, TQ_EINVAL,
                          "time zone name has a character outside [A-Za-z0-9_+-/] at offset %zu", i);
    }
    return 0;
}

/* Read and parse the zone file; *out is a new uncached zone. */
static int zone_load(const char *name, TzZone **out, TqErr *err)
{
    int rc = 0, fd = -1;
    uint8_t *data = NULL;
    TzZone *z = calloc(1, sizeof *z);
    if (!z)
        return tq_err(err, TQ_ENOMEM, "time zone \"%s\": out of memory", name);
    snprintf(z->name, sizeof z->name, "%s", name);
    char path[sizeof TZONE_DIR + TZONE_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", TZONE_DIR, name);
    struct stat st;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (strcmp(name, "UTC") == 0) { /* no tzdata installed: UTC needs no file */
            z->footer = FOOTER_FIXED;
            goto cleanup;
        }
        rc = (fd >= 0 || errno == ENOENT || errno == ENOTDIR)
                 ? tq_err(err, TQ_ENOTFOUND, "unknown time zone \"%s\"", name)
                 : tq_err(err, TQ_EIO, "time zone \"%s\": %s: %s", name, path, strerror(errno));
        goto cleanup;
    }
    if (st.st_size > TZONE_FILE_MAX) {
        rc = tq_err(err, TQ_EPARSE, "time zone \"%s\": %s is larger than %d bytes", name, path,
                    TZONE_FILE_MAX);
        goto cleanup;
    }
    size_t len = (size_t)st.st_size, got = 0;
    data = malloc(len ? len : 1);
    if (!data) {
        rc = tq_err(err, TQ_ENOMEM, "time zone \"%s\": out of memory", name);
        goto cleanup;
    }
    while (got < len) {
        ssize_t r = read(fd, data + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = tq_err(err, TQ_EIO, "time zone \"%s\": reading %s: %s", name, path,
                        r < 0 ? strerror(errno) : "file shrank");
            goto cleanup;
        }
        got += (size_t)r;
    }
    const char *why = NULL;
    if (parse_tzif(z, data, len, &why) < 0)
        rc = tq_err(err, TQ_EPARSE, "time zone \"%s\": %s is not a usable TZif file: %s", name, path,
                    why);
cleanup:
    if (fd >= 0)
        close(fd);
    free(data);
    if (rc < 0)
        zone_free(z);
    else
        *out = z;
    return rc;
}

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static TzZone *cache[TZONE_CACHE];
static size_t cache_len;

int tzone_open(const char *name, const TzZone **out, TqErr *err)
{
    int rc = valid_name(name, err);
    if (rc < 0)
        return rc;
    TzZone *z = NULL;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < cache_len && !z; i++)
        if (strcmp(cache[i]->name, name) == 0)
            z = cache[i];
    /* Loaded under the lock so two threads never read the same file twice; a miss is not cached,
     * so a zone installed later is found on the next call. */
    if (!z && (rc = zone_load(name, &z, err)) == 0 && cache_len < TZONE_CACHE) {
        z->cached = 1;
        cache[cache_len++] = z;
    }
    pthread_mutex_unlock(&cache_lock);
    if (rc == 0)
        *out = z;
    return rc;
}

void tzone_close(const TzZone *z)
{
    if (z && !z->cached)
        zone_free((TzZone *)z);
}

/* ---- lookups ----------------------------------------------------------------------------------- */

int32_t tzone_offset(const TzZone *z, int64_t t)
{
    if (z->ntimes == 0)
        return z->footer != FOOTER_NONE ? footer_offset(z, t) : z->offs[0];
    if (t < z->times[0])
        return z->offs[0]; /* RFC 8536: before the first transition, time type 0 */
    size_t lo = 0, hi = z->ntimes; /* last i with times[i] <= t is in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->times[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    if (lo == z->ntimes - 1 && z->footer != FOOTER_NONE)
        return footer_offset(z, t);
    return z->offs[z->types[lo]];
}

int64_t tzone_local_to_utc(const TzZone *z, int64_t local)
{
    /* The offsets two days either side bracket any single change near `local`. */
    int32_t before = tzone_offset(z, local - 2 * 86400);
    int32_t after = tzone_offset(z, local + 2 * 86400);
    int64_t t1 = local - before, t2 = local - after;
    int ok1 = tzone_offset(z, t1) == before, ok2 = tzone_offset(z, t2) == after;
    if (ok1 && ok2)
        return t1 < t2 ? t1 : t2; /* the overlap: the first occurrence */
    if (ok1)
        return t1;
    if (ok2)
        return t2;
    /* The gap: the transition lies in (t2, t1]; find the first instant on the new offset. */
    int64_t lo = t1 < t2 ? t1 : t2, hi = t1 < t2 ? t2 : t1;
    if (tzone_offset(z, hi) != after)
        return hi;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tzone_offset(z, mid) == after)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}
