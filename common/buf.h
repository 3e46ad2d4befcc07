/* buf.h — a growable byte buffer with a hard cap.
 *
 * A Buf always keeps a NUL after its data (so data can be used as a C string when it holds no NUL).
 * Appends that would grow past cap fail with TQ_ELIMIT and leave the buffer unchanged; that is how
 * response bodies, prompts and JSON documents stay bounded. */
#ifndef TQ_BUF_H
#define TQ_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct Buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t size;
    size_t cap; /* maximum len; 0 means the default of 1 GiB */
} Buf;

void buf_init(Buf *b, size_t cap);
void buf_free(Buf *b);            /* frees data; buf_free on a zeroed Buf does nothing */
void buf_reset(Buf *b);           /* len = 0, keeps memory */
int buf_reserve(Buf *b, size_t extra);
int buf_append(Buf *b, const void *data, size_t n);
int buf_puts(Buf *b, const char *s);
int buf_putc(Buf *b, char c);
int buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(Buf *b, const char *fmt, va_list ap);
/* Hand the data to the caller (who frees it) and reset the buffer to empty. Never NULL on success. */
char *buf_take(Buf *b);

#endif
