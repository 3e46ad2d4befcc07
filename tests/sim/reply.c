#include "reply.h"

#include "err.h"
#include "json.h"

#include <stdarg.h>

/* Error bodies are small; a generous cap still guards against a runaway handler. */
#define REPLY_HEADERS_CAP ((size_t)64 << 10)

void reply_init(SimReply *r)
{
    buf_init(&r->headers, REPLY_HEADERS_CAP);
    buf_init(&r->body, 0);
    reply_reset(r);
}

void reply_reset(SimReply *r)
{
    r->status = 200;
    r->content_type = "application/json";
    buf_reset(&r->headers);
    buf_reset(&r->body);
    r->delay_ms = 0;
    r->action = REPLY_SEND;
    r->close = false;
    r->meta = false;
}

void reply_free(SimReply *r)
{
    if (!r)
        return;
    buf_free(&r->headers);
    buf_free(&r->body);
}

int reply_header(SimReply *r, const char *name, const char *fmt, ...)
{
    int rc = buf_puts(&r->headers, name);
    if (!rc)
        rc = buf_puts(&r->headers, ": ");
    if (!rc) {
        va_list ap;
        va_start(ap, fmt);
        rc = buf_vprintf(&r->headers, fmt, ap);
        va_end(ap);
    }
    if (!rc)
        rc = buf_puts(&r->headers, "\r\n");
    return rc;
}

int reply_error(SimReply *r, int status, const char *message, const char *type, const char *param,
                const char *code)
{
    r->status = status;
    r->content_type = "application/json";
    buf_reset(&r->body);
    Buf *b = &r->body;
    int rc = buf_puts(b, "{\"error\":{\"message\":");
    if (!rc)
        rc = json_put_cstr(b, message);
    if (!rc)
        rc = buf_puts(b, ",\"type\":");
    if (!rc)
        rc = json_put_cstr(b, type);
    if (!rc)
        rc = buf_puts(b, ",\"param\":");
    if (!rc)
        rc = json_put_cstr(b, param);
    if (!rc)
        rc = buf_puts(b, ",\"code\":");
    if (!rc)
        rc = json_put_cstr(b, code);
    if (!rc)
        rc = buf_puts(b, "}}");
    return rc;
}
