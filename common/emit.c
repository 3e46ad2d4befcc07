#include "emit.h"

#include "json.h"

#include <stdarg.h>

void emit(Emit *e, const char *fmt, ...)
{
    if (e->rc)
        return;
    va_list ap;
    va_start(ap, fmt);
    e->rc = buf_vprintf(&e->b, fmt, ap);
    va_end(ap);
}

void emit_json_str(Emit *e, const char *s)
{
    if (!e->rc)
        e->rc = json_put_cstr(&e->b, s);
}
