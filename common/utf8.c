#include "utf8.h"

#include <string.h>

size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        unsigned d = s[k];
        if ((d & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (d & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid, non-NUL character at s, 0 if there is none. */
static size_t seq_len(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t l = utf8_decode(s, n, &cp);
    return l && cp != 0 ? l : 0;
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t k = 0; k < n;) {
        size_t l = seq_len(u + k, n - k);
        if (!l)
            return false;
        k += l;
    }
    return true;
}

int utf8_sanitize(Buf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0, run = 0;
    while (k < n) {
        size_t l = seq_len(u + k, n - k);
        if (l) {
            k += l;
            continue;
        }
        int rc = buf_append(out, s + run, k - run);
        if (!rc)
            rc = buf_append(out, "\xEF\xBF\xBD", 3);
        if (rc)
            return rc;
        k++;
        run = k;
    }
    return buf_append(out, s + run, n - run);
}

size_t utf8_cut(const char *s, size_t n, size_t m)
{
    if (m >= n)
        return n;
    while (m > 0 && ((unsigned char)s[m] & 0xC0) == 0x80)
        m--;
    return m;
}

void utf8_copy_cut(char *dst, size_t cap, const char *src, size_t n)
{
    if (cap < 4) {
        if (cap)
            dst[0] = '\0';
        return;
    }
    if (n < cap) {
        memcpy(dst, src, n);
        dst[n] = '\0';
        return;
    }
    size_t m = utf8_cut(src, n, cap - 4); /* room for "..." and the NUL */
    memcpy(dst, src, m);
    memcpy(dst + m, "...", 4);
}

void utf8_one_line(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k == 0) {
            s[i++] = '?';
            continue;
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            memset(s + i, '?', k);
        i += k;
    }
}
