#include "http.h"

#include "fmt.h"

#include <string.h>
#include <strings.h>

size_t http_head_end(const char *buf, size_t len, size_t *scan)
{
    size_t from = *scan > 3 ? *scan - 3 : 0; /* the terminator may straddle two reads */
    if (len >= 4 && from < len) {
        const char *hit = memmem(buf + from, len - from, "\r\n\r\n", 4);
        if (hit)
            return (size_t)(hit - buf) + 4;
    }
    *scan = len;
    return 0;
}

static bool ieq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    return an == bn && strncasecmp(a, b, an) == 0;
}

/* Does the comma-separated header value contain token (case-insensitive)? */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t b = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - b == tl && strncasecmp(v + b, token, tl) == 0)
            return true;
    }
    return false;
}

int http_parse_head(const char *buf, size_t head_len, HttpReq *req)
{
    memset(req, 0, sizeof *req);
    req->head_len = head_len;
    const char *p = buf, *end = buf + head_len - 2; /* end points at the final CRLF */
    const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
    if (!eol)
        return 400;
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p)
        return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (!sp2 || sp2 == target)
        return 400;
    req->method = p;
    req->method_len = (size_t)(sp1 - p);
    req->path = target;
    const char *q = memchr(target, '?', (size_t)(sp2 - target));
    req->path_len = (size_t)((q ? q : sp2) - target);
    const char *ver = sp2 + 1;
    if (eol - ver != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || ver[7] < '0' || ver[7] > '9')
        return 505;
    req->minor = ver[7] - '0';
    req->keep_alive = req->minor >= 1;
    bool have_len = false;
    p = eol + 2;
    while (p < end) {
        eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            return 400;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return 400;
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vlen = (size_t)(ve - v);
        if (ieq(p, nlen, "content-length")) {
            if (vlen == 0 || vlen > 18)
                return 400;
            int64_t n = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return 400;
                n = n * 10 + (v[i] - '0');
            }
            if (have_len && n != req->content_length)
                return 400;
            have_len = true;
            req->content_length = n;
        } else if (ieq(p, nlen, "transfer-encoding")) {
            return 501;
        } else if (ieq(p, nlen, "connection")) {
            if (has_token(v, vlen, "close"))
                req->keep_alive = false;
            else if (has_token(v, vlen, "keep-alive"))
                req->keep_alive = true;
        } else if (ieq(p, nlen, "expect")) {
            req->expect_continue = has_token(v, vlen, "100-continue");
        } else if (ieq(p, nlen, "authorization")) {
            req->auth = v;
            req->auth_len = vlen;
        }
        p = eol + 2;
    }
    return 0;
}

bool http_method_is(const HttpReq *req, const char *m) { return ieq(req->method, req->method_len, m); }

bool http_path_is(const HttpReq *req, const char *path)
{
    size_t n = strlen(path);
    return req->path_len == n && memcmp(req->path, path, n) == 0;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int http_put_head(Buf *out, int status, const char *content_type, size_t content_length, const char *extra,
                  size_t extra_len, bool close)
{
    int rc = buf_puts(out, "HTTP/1.1 ");
    if (!rc)
        rc = fmt_i64(out, status);
    if (!rc)
        rc = buf_putc(out, ' ');
    if (!rc)
        rc = buf_puts(out, http_reason(status));
    if (!rc)
        rc = buf_puts(out, "\r\nContent-Type: ");
    if (!rc)
        rc = buf_puts(out, content_type);
    if (!rc)
        rc = buf_puts(out, "\r\nContent-Length: ");
    if (!rc)
        rc = fmt_u64(out, content_length);
    if (!rc)
        rc = buf_puts(out, "\r\n");
    if (!rc && extra_len)
        rc = buf_append(out, extra, extra_len);
    if (!rc)
        rc = buf_puts(out, close ? "Connection: close\r\n\r\n" : "\r\n");
    return rc;
}
