#include "buf.h"

#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_DEFAULT_CAP ((size_t)1 << 30)

void buf_init(Buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->size = 0;
    b->cap = cap ? cap : BUF_DEFAULT_CAP;
}

void buf_free(Buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->size = 0;
}

void buf_reset(Buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int buf_reserve(Buf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : BUF_DEFAULT_CAP;
    if (extra > cap || b->len > cap - extra)
        return TQ_ELIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->size)
        return 0;
    size_t size = b->size ? b->size : 256;
    while (size < need)
        size *= 2;
    char *p = realloc(b->data, size);
    if (!p)
        return TQ_ENOMEM;
    b->data = p;
    b->size = size;
    b->data[b->len] = '\0'; /* the contract: data is always NUL-terminated once allocated */
    return 0;
}

int buf_append(Buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(Buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_putc(Buf *b, char c) { return buf_append(b, &c, 1); }

int buf_vprintf(Buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return TQ_EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *buf_take(Buf *b)
{
    if (!b->data && buf_reserve(b, 0))
        return NULL;
    char *p = b->data;
    b->data = NULL;
    b->len = b->size = 0;
    return p;
}
