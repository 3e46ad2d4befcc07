#include "fmt.h"

#include <math.h>
#include <string.h>

int fmt_u64(Buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + i, sizeof tmp - i);
}

int fmt_i64(Buf *b, int64_t v)
{
    if (v < 0) {
        int rc = buf_putc(b, '-');
        return rc ? rc : fmt_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(b, (uint64_t)v);
}

int fmt_fixed6(Buf *b, double v)
{
    int rc = 0;
    if (v < 0) {
        v = -v;
        rc = buf_putc(b, '-');
    }
    if (!(v < 1e12)) /* also catches NaN */
        v = 1e12 - 1;
    uint64_t scaled = (uint64_t)llround(v * 1e6);
    if (!rc)
        rc = fmt_u64(b, scaled / 1000000);
    char frac[7];
    uint64_t f = scaled % 1000000;
    for (int i = 5; i >= 0; i--) {
        frac[i + 1] = (char)('0' + f % 10);
        f /= 10;
    }
    frac[0] = '.';
    if (!rc)
        rc = buf_append(b, frac, sizeof frac);
    return rc;
}

int fmt_kv(Buf *b, const char *s, int64_t v)
{
    int rc = buf_append(b, s, strlen(s));
    return rc ? rc : fmt_i64(b, v);
}
