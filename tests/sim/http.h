/* http.h — the HTTP/1.1 subset the simulator speaks: request heads with Content-Length bodies,
 * keep-alive, Expect: 100-continue; responses with Content-Length. No chunked request bodies.
 *
 * Parsed fields point into the caller's buffer and are valid only while it is unchanged. */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct HttpReq {
    const char *method;
    size_t method_len;
    const char *path; /* without the query string */
    size_t path_len;
    int minor;        /* HTTP/1.minor */
    bool keep_alive;  /* HTTP/1.1 default, or Connection: keep-alive on 1.0 */
    bool expect_continue;
    int64_t content_length; /* 0 when absent */
    const char *auth; /* Authorization value, NULL when absent; never log it */
    size_t auth_len;
    size_t head_len;  /* bytes up to and including the blank line */
    const char *body; /* set by the caller once the body is complete */
    size_t body_len;
} HttpReq;

/* Offset just past the "\r\n\r\n" that ends the head in buf[0..len), or 0 when it has not
 * arrived. *scan carries the search position between calls so a slow sender costs O(n). */
size_t http_head_end(const char *buf, size_t len, size_t *scan);

/* Parse the head buf[0..head_len). Returns 0, or the HTTP status to answer with before closing:
 * 400 (malformed), 501 (Transfer-Encoding, unsupported), 505 (not HTTP/1.x). */
int http_parse_head(const char *buf, size_t head_len, HttpReq *req);

bool http_method_is(const HttpReq *req, const char *m);
bool http_path_is(const HttpReq *req, const char *p);

const char *http_reason(int status);

/* Append a response head: status line, Content-Type, Content-Length, the extra header lines
 * (already CRLF-terminated), Connection: close when close, and the blank line. */
int http_put_head(Buf *out, int status, const char *content_type, size_t content_length, const char *extra,
                  size_t extra_len, bool close);

#endif
