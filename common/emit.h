/* emit.h — an output buffer that remembers its first failure, so formatting code (reports, CLI
 * output) reads straight through and the error is checked once at the end. */
#ifndef TQ_EMIT_H
#define TQ_EMIT_H

#include "buf.h"

typedef struct Emit {
    Buf b;
    int rc; /* first error of any emit call, 0 if none */
} Emit;

void emit(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string (escaped), or null for NULL. */
void emit_json_str(Emit *e, const char *s);

#endif
