#include "pgarray.h"

#include "utf8.h"

#include <string.h>

#include <math.h>

void pgarray_begin(Buf *b)
{
    buf_init(b, 0);
    buf_putc(b, '{');
}

static int sep(Buf *b) { return b->len > 1 ? buf_putc(b, ',') : 0; }

int pgarray_add_text(Buf *b, const char *s)
{
    if (!s)
        return pgarray_add_null(b);
    if (!utf8_valid(s, strlen(s))) {
        /* PostgreSQL refuses invalid UTF-8, and one refused value fails the whole statement (the
         * write-back of every call in it): repair it here, whatever the caller forgot */
        Buf clean;
        buf_init(&clean, 0);
        int rc = utf8_sanitize(&clean, s, strlen(s));
        if (!rc)
            rc = pgarray_add_text(b, clean.data ? clean.data : "");
        buf_free(&clean);
        return rc;
    }
    int rc = sep(b);
    if (!rc)
        rc = buf_putc(b, '"');
    const char *run = s;
    for (const char *p = s; *p && !rc; p++) {
        if (*p == '"' || *p == '\\') {
            rc = buf_append(b, run, (size_t)(p - run));
            if (!rc)
                rc = buf_putc(b, '\\');
            run = p;
        }
    }
    if (!rc)
        rc = buf_puts(b, run);
    if (!rc)
        rc = buf_putc(b, '"');
    return rc;
}

int pgarray_add_int64(Buf *b, int64_t v)
{
    int rc = sep(b);
    return rc ? rc : buf_printf(b, "%lld", (long long)v);
}

int pgarray_add_double(Buf *b, double v)
{
    if (isnan(v))
        return pgarray_add_null(b);
    int rc = sep(b);
    return rc ? rc : buf_printf(b, "%.17g", v);
}

int pgarray_add_bool(Buf *b, int v)
{
    int rc = sep(b);
    return rc ? rc : buf_puts(b, v ? "t" : "f");
}

int pgarray_add_null(Buf *b)
{
    int rc = sep(b);
    return rc ? rc : buf_puts(b, "NULL");
}

int pgarray_end(Buf *b) { return buf_putc(b, '}'); }
