/* err.h — error codes and the error struct every fallible call fills.
 *
 * Contract: functions return 0 on success or a negative TQ_E* code. When they fail they fill the
 * optional TqErr (may be NULL) with a one-line, lowercase, human-readable message. Messages never
 * contain secrets: callers must not format API keys or connection passwords into them. */
#ifndef TQ_ERR_H
#define TQ_ERR_H

#include <stddef.h>

enum {
    TQ_OK = 0,
    TQ_EINVAL = -1,    /* bad input from outside (config file, JSON body, argument) */
    TQ_ENOMEM = -2,    /* allocation failed */
    TQ_EIO = -3,       /* file or socket error */
    TQ_EDB = -4,       /* database error (statement failed or connection lost) */
    TQ_ELIMIT = -5,    /* a bounded buffer or token cap was reached */
    TQ_ENOTFOUND = -6, /* a looked-up thing does not exist */
    TQ_ELEASE = -7,    /* a fenced write found the lease lost */
    TQ_EHTTP = -8,     /* transport or HTTP-level failure */
    TQ_EPARSE = -9,    /* malformed JSON or truncated document */
};

typedef struct TqErr {
    int code;
    char msg[512];
    char sqlstate[6]; /* TQ_EDB from a statement PostgreSQL refused: its SQLSTATE ("22003"), else "" */
} TqErr;

/* Fill err (if not NULL) with code and a printf-formatted message; returns code so callers can
 * write `return tq_err(err, TQ_EINVAL, "...")`. */
int tq_err(TqErr *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "ctx: old message". Keeps the code. Returns err->code (or code 0). */
int tq_err_prefix(TqErr *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stable short name for a code: "invalid", "nomem", "db", ... */
const char *tq_err_name(int code);

#endif
