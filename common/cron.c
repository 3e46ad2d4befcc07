#include "cron.h"

#include "tzone.h"

#include <string.h>
#include <strings.h>

/* ---- parsing ----------------------------------------------------------------------------------- */

typedef struct CronField {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] has the value i + name_base; NULL: numbers only */
    int name_base, name_count;
} CronField;

static const char *const MONTH_NAMES[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const DAY_NAMES[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const CronField FIELDS[5] = {
    {"minute", 0, 59, NULL, 0, 0},
    {"hour", 0, 23, NULL, 0, 0},
    {"day-of-month", 1, 31, NULL, 0, 0},
    {"month", 1, 12, MONTH_NAMES, 1, 12},
    {"day-of-week", 0, 7, DAY_NAMES, 0, 7},
};

static const struct {
    const char *name, *expr;
} MACROS[] = {
    {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static char upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

/* A number or (where the field has them) a name in s[0..len). Returns 0 or -1 with *why set. The
 * value may be out of the field's range: the caller reports that with the token. */
static int parse_value(const CronField *f, const char *s, size_t len, int *out, const char **why)
{
    if (len > 0 && s[0] >= '0' && s[0] <= '9') {
        int v = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                *why = "is not a number";
                return -1;
            }
            if (v < 10000) /* anything this large is out of range anyway; no overflow */
                v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return 0;
    }
    for (int i = 0; i < f->name_count && len == 3; i++) {
        if (upper(s[0]) == f->names[i][0] && upper(s[1]) == f->names[i][1] &&
            upper(s[2]) == f->names[i][2]) {
            *out = i + f->name_base;
            return 0;
        }
    }
    *why = f->names ? "is not a number or a name" : "is not a number";
    return -1;
}

/* Set the bits of one list item s[0..len) ("*", "n", "a-b", with an optional "/step"). */
static int parse_item(int fi, const char *s, size_t len, uint64_t *bits, TqErr *err)
{
    const CronField *f = &FIELDS[fi];
    const char *slash = memchr(s, '/', len);
    size_t base_len = slash ? (size_t)(slash - s) : len;
    int a, b, step = 1;
    const char *why = NULL;
    if (base_len == 1 && s[0] == '*') {
        a = f->lo;
        b = f->hi;
    } else {
        const char *dash = memchr(s, '-', base_len);
        size_t alen = dash ? (size_t)(dash - s) : base_len;
        if (parse_value(f, s, alen, &a, &why) < 0)
            return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" %s", fi + 1, f->name,
                          (int)alen, s, why);
        if (a < f->lo || a > f->hi)
            return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" is out of %d-%d", fi + 1,
                          f->name, (int)alen, s, f->lo, f->hi);
        b = slash ? f->hi : a; /* "a/step" runs to the field's end */
        if (dash) {
            const char *bs = dash + 1;
            size_t blen = base_len - alen - 1;
            if (parse_value(f, bs, blen, &b, &why) < 0)
                return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" %s", fi + 1, f->name,
                              (int)blen, bs, why);
            if (b < f->lo || b > f->hi)
                return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" is out of %d-%d",
                              fi + 1, f->name, (int)blen, bs, f->lo, f->hi);
            if (fi == 4 && b == 0 && a > 0 && (bs[0] < '0' || bs[0] > '9'))
                b = 7; /* "FRI-SUN": the name SUN as the end of a week range */
            if (b < a)
                return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" runs backwards",
                              fi + 1, f->name, (int)base_len, s);
        }
    }
    if (slash) {
        const char *ss = slash + 1;
        size_t slen = len - base_len - 1;
        int span = f->hi - f->lo + 1;
        if (slen == 0 || ss[0] < '0' || ss[0] > '9' ||
            parse_value(&FIELDS[0], ss, slen, &step, &why) < 0)
            return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" has a step that is not a number",
                          fi + 1, f->name, (int)len, s);
        if (step < 1 || step > span)
            return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" has a step out of 1-%d",
                          fi + 1, f->name, (int)len, s, span);
    }
    for (int v = a; v <= b; v += step)
        *bits |= (uint64_t)1 << v;
    return 0;
}

/* One whitespace-free field s[0..len): a comma list of items. */
static int parse_field(int fi, const char *s, size_t len, uint64_t *bits, TqErr *err)
{
    *bits = 0;
    size_t i = 0;
    for (;;) {
        const char *comma = memchr(s + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - s) : len;
        if (end == i)
            return tq_err(err, TQ_EINVAL, "cron: field %d (%s) \"%.*s\" has an empty list item",
                          fi + 1, FIELDS[fi].name, (int)len, s);
        int rc = parse_item(fi, s + i, end - i, bits, err);
        if (rc < 0)
            return rc;
        if (!comma)
            return 0;
        i = end + 1;
    }
}

/* Expand a macro ("@daily") into its five fields; NULL if unknown. */
static const char *macro_expr(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof MACROS / sizeof MACROS[0]; i++) {
        if (strlen(MACROS[i].name) != len)
            continue;
        size_t j = 0;
        while (j < len && upper(s[j]) == upper(MACROS[i].name[j]))
            j++;
        if (j == len)
            return MACROS[i].expr;
    }
    return NULL;
}

/* "@every N{s,m,h}" after the word: a period of 1 s to 24 h. */
static int parse_every(const char *s, size_t n, Cron *out, TqErr *err)
{
    while (n > 0 && is_blank(*s)) {
        s++;
        n--;
    }
    int64_t v = 0;
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && v <= 86400)
        v = v * 10 + (s[i++] - '0');
    int64_t unit = i + 1 != n ? 0 : s[i] == 's' ? 1 : s[i] == 'm' ? 60 : s[i] == 'h' ? 3600 : 0;
    if (i == 0 || unit == 0)
        return tq_err(err, TQ_EINVAL, "cron: \"@every\" takes a whole number and a unit, s, m or h (\"@every 5s\"),"
                      " not \"%.*s\"", (int)n, s);
    if (v * unit < 1 || v * unit > 86400)
        return tq_err(err, TQ_EINVAL, "cron: \"@every %.*s\" is outside 1s to 24h", (int)n, s);
    *out = (Cron){.every_s = (int32_t)(v * unit)};
    return 0;
}

int cron_parse(const char *expr, Cron *out, TqErr *err)
{
    size_t n = strnlen(expr, CRON_EXPR_MAX + 1);
    if (n > CRON_EXPR_MAX)
        return tq_err(err, TQ_EINVAL, "cron: expression longer than %d characters", CRON_EXPR_MAX);
    /* Printable ASCII only, so every token we quote back in a message is safe to print whole. */
    for (size_t i = 0; i < n; i++)
        if (!is_blank(expr[i]) && (expr[i] < 0x21 || expr[i] > 0x7e))
            return tq_err(err, TQ_EINVAL, "cron: character 0x%02x at offset %zu is not allowed",
                          (unsigned)(unsigned char)expr[i], i);
    while (n > 0 && is_blank(expr[n - 1]))
        n--;
    while (n > 0 && is_blank(*expr)) {
        expr++;
        n--;
    }
    if (n == 0)
        return tq_err(err, TQ_EINVAL, "cron: empty expression");
    if (n > 6 && strncasecmp(expr, "@every", 6) == 0 && is_blank(expr[6]))
        return parse_every(expr + 6, n - 6, out, err);
    if (expr[0] == '@') {
        const char *m = macro_expr(expr, n);
        if (!m)
            return tq_err(err, TQ_EINVAL, "cron: unknown macro \"%.*s\"", (int)n, expr);
        expr = m;
        n = strlen(m);
    }
    const char *start[5];
    size_t len[5];
    int count = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && is_blank(expr[i]))
            i++;
        size_t j = i;
        while (j < n && !is_blank(expr[j]))
            j++;
        if (count < 5) {
            start[count] = expr + i;
            len[count] = j - i;
        }
        count++;
        i = j;
    }
    if (count != 5)
        return tq_err(err, TQ_EINVAL, "cron: expected 5 fields, got %d", count);
    uint64_t bits[5];
    for (int fi = 0; fi < 5; fi++) {
        int rc = parse_field(fi, start[fi], len[fi], &bits[fi], err);
        if (rc < 0)
            return rc;
    }
    Cron c;
    c.minutes = bits[0];
    c.hours = (uint32_t)bits[1];
    c.mdays = (uint32_t)bits[2];
    c.months = (uint16_t)bits[3];
    c.wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f); /* 7 is Sunday too */
    c.mday_star = start[2][0] == '*';
    c.wday_star = start[4][0] == '*';
    c.every_s = 0;
    *out = c;
    return 0;
}

/* ---- next fire time ---------------------------------------------------------------------------- */

/* Vixie cron's day rule: if either day field began with '*', both must match; else either. */
static int day_matches(const Cron *c, int mday, int wday)
{
    int dom = (c->mdays >> mday) & 1, dow = (c->wdays >> wday) & 1;
    return (c->mday_star || c->wday_star) ? dom && dow : dom || dow;
}

/* First matching local time at or after local day `day`, minute `from_min` of that day, whose
 * instant is strictly after `after`. Local times are walked in order and map to instants in order
 * (tzone_local_to_utc is monotonic), so the first accepted one is the earliest fire time. */
static int search(const Cron *c, const TzZone *z, int64_t day, int from_min, int64_t after,
                  int64_t *next)
{
    int64_t last = day + (int64_t)CRON_SEARCH_YEARS * 366;
    while (day < last) {
        int64_t y;
        int m, d;
        tzone_civil_from_days(day, &y, &m, &d);
        if (!((c->months >> m) & 1)) { /* skip to the 1st of the next month */
            day = tzone_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1);
            from_min = 0;
            continue;
        }
        if (day_matches(c, d, tzone_weekday(day))) {
            for (int h = from_min / 60; h < 24; h++) {
                if (!((c->hours >> h) & 1))
                    continue;
                int mi0 = h == from_min / 60 ? from_min % 60 : 0;
                for (int mi = mi0; mi < 60; mi++) {
                    if (!((c->minutes >> mi) & 1))
                        continue;
                    int64_t t = tzone_local_to_utc(z, day * 86400 + h * 3600 + mi * 60);
                    if (t > after) {
                        *next = t;
                        return 0;
                    }
                }
            }
        }
        day++;
        from_min = 0;
    }
    return -1;
}

int cron_next(const Cron *c, const char *tz, time_t after, time_t *next, TqErr *err)
{
    /* Keep the calendar arithmetic in a range where nothing can overflow. */
    const int64_t lo = -2208988800LL, hi = 253402300799LL; /* 1900-01-01, 9999-12-31T23:59:59Z */
    if ((int64_t)after < lo || (int64_t)after > hi)
        return tq_err(err, TQ_EINVAL, "cron: start time %lld is outside the years 1900-9999",
                      (long long)after);
    if (c->every_s > 0) { /* epoch-aligned: the same due times in every process and zone */
        int64_t a = (int64_t)after, q = a / c->every_s - (a % c->every_s < 0); /* floor */
        *next = (time_t)((q + 1) * c->every_s);
        return 0;
    }
    const TzZone *z = NULL;
    int rc = tzone_open(tz, &z, err);
    if (rc < 0)
        return tq_err_prefix(err, "cron");
    /* Start at the first whole local minute after `after`'s local time: no earlier local time can
     * map to an instant after `after` (see search). */
    int64_t local = (int64_t)after + tzone_offset(z, after);
    int64_t minute = (local - (local % 60 + 60) % 60) / 60 + 1;
    int64_t day = minute >= 0 ? minute / 1440 : -((-minute + 1439) / 1440);
    int64_t t;
    if (search(c, z, day, (int)(minute - day * 1440), (int64_t)after, &t) < 0)
        rc = tq_err(err, TQ_ENOTFOUND, "cron: expression never fires within %d years in %s",
                    CRON_SEARCH_YEARS, tz);
    else
        *next = (time_t)t;
    tzone_close(z);
    return rc;
}
