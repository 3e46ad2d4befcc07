#include "template.h"

#include <string.h>

static bool name_start(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }
static bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

/* At s[i] == '{': the length of a whole placeholder "{name}" starting there, 0 if it is none. */
static size_t placeholder_at(const char *s, size_t n, size_t i)
{
    size_t k = i + 1;
    if (k >= n || !name_start(s[k]))
        return 0;
    while (k < n && name_char(s[k]) && k - i <= TEMPLATE_NAME_MAX)
        k++;
    if (k >= n || s[k] != '}' || k - i - 1 > TEMPLATE_NAME_MAX)
        return 0;
    return k - i + 1;
}

/* At s[i] == '{': the length of an escaped placeholder "{{name}}" starting there, 0 if none. */
static size_t escaped_at(const char *s, size_t n, size_t i)
{
    if (i + 1 >= n || s[i + 1] != '{')
        return 0;
    size_t len = placeholder_at(s, n, i + 1);
    return len && i + 1 + len < n && s[i + 1 + len] == '}' ? len + 2 : 0;
}

int template_each(const char *s, size_t n, int (*fn)(const char *name, size_t len, void *ud), void *ud)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '{')
            continue;
        size_t esc = escaped_at(s, n, i);
        if (esc) {
            i += esc - 1;
            continue;
        }
        size_t len = placeholder_at(s, n, i);
        if (!len)
            continue;
        int rc = fn(s + i + 1, len - 2, ud);
        if (rc)
            return rc;
        i += len - 1;
    }
    return 0;
}

static int count_one(const char *name, size_t len, void *ud)
{
    (void)name;
    (void)len;
    (void)ud;
    return 1;
}

bool template_has(const char *s, size_t n) { return template_each(s, n, count_one, NULL) != 0; }

int template_expand(const char *s, size_t n, const char *(*value)(const char *name, size_t len, void *ud), void *ud,
                    Buf *out, TqErr *err)
{
    size_t start = out->len;
    int rc = 0;
    size_t from = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (s[i] != '{')
            continue;
        size_t esc = escaped_at(s, n, i);
        if (esc) {
            /* "{{name}}" stands for the literal text "{name}" */
            rc = buf_append(out, s + from, i - from);
            if (!rc)
                rc = buf_append(out, s + i + 1, esc - 2);
            from = i + esc;
            i += esc - 1;
            continue;
        }
        size_t len = placeholder_at(s, n, i);
        if (!len)
            continue;
        const char *v = value(s + i + 1, len - 2, ud);
        if (!v) {
            rc = tq_err(err, TQ_EINVAL, "unknown placeholder {%.*s}", (int)(len - 2), s + i + 1);
            break;
        }
        rc = buf_append(out, s + from, i - from);
        if (!rc)
            rc = buf_puts(out, v);
        from = i + len;
        i += len - 1;
    }
    if (!rc)
        rc = buf_append(out, s + from, n - from);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        if (rc != TQ_EINVAL)
            tq_err(err, rc, rc == TQ_ELIMIT ? "template: output larger than its cap" : "template: out of memory");
    }
    return rc;
}
