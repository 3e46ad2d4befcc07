#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int tq_err(TqErr *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
        err->sqlstate[0] = '\0';
    }
    return code;
}

int tq_err_prefix(TqErr *err, const char *fmt, ...)
{
    if (!err)
        return 0;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    /* A long prefix may cut the tail of the old message; that is acceptable for a one-line error. */
    if (snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old) < 0)
        err->msg[0] = '\0';
    return err->code;
}

const char *tq_err_name(int code)
{
    switch (code) {
    case TQ_OK: return "ok";
    case TQ_EINVAL: return "invalid";
    case TQ_ENOMEM: return "nomem";
    case TQ_EIO: return "io";
    case TQ_EDB: return "db";
    case TQ_ELIMIT: return "limit";
    case TQ_ENOTFOUND: return "not_found";
    case TQ_ELEASE: return "lease_lost";
    case TQ_EHTTP: return "http";
    case TQ_EPARSE: return "parse";
    default: return "unknown";
    }
}
