/* fixture_server.c — tierq-fixture: answers chat completions with hand-written response fixtures.
 *
 * A test server, not a simulator: it knows nothing about models. A POST to any path ending in
 * /chat/completions whose raw body holds the marker [[fixture:NAME]] gets the file NAME.http from
 * --fixtures DIR verbatim (status, headers, body; Content-Length computed). Without a marker the
 * request is forwarded unchanged to --upstream (a recording proxy in front of tierq-sim), or gets a
 * 404 with an OpenAI-style error. Every request, whatever its method and path, is appended to
 * --record FILE as one JSON line {"method","target","headers":{lower-case name: value},"body"}.
 *
 * One thread and poll(): connections are kept alive and served in turn; a forwarded request blocks
 * the loop for the upstream's answer (libcurl easy interface), which is fine for a test server.
 * HTTP/1.1 with Content-Length bodies, keep-alive, pipelining and Expect: 100-continue;
 * Transfer-Encoding gets 501. Loopback only. SIGTERM or SIGINT stops it with exit status 0.
 * The fixture file format and the suite around it are described in tests/conformance/README.md. */
#include "buf.h"
#include "json.h"

#include <curl/curl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FX_MAX_CONNS 1024
#define FX_MAX_HEAD ((size_t)64 << 10)     /* request head; larger gets 431 */
#define FX_MAX_HEADERS 100
#define FX_MAX_FIXTURE ((size_t)16 << 20)  /* fixture file size */
#define FX_MAX_UPSTREAM ((size_t)64 << 20) /* upstream response body */
#define FX_MAX_NAME 200                    /* fixture name length */

typedef struct FxConfig {
    int port;
    const char *port_file;
    const char *fixtures; /* directory, may be NULL */
    const char *record;   /* file, may be NULL */
    const char *upstream; /* base URL, may be NULL */
    size_t max_body;
    long upstream_timeout_ms;
} FxConfig;

typedef struct FxHeader {
    char *name; /* lower-case copy */
    char *value;
} FxHeader;

/* One parsed request. Strings are copies owned by the struct; the body points into the
 * connection's input buffer and is valid until the request is consumed. */
typedef struct FxRequest {
    char method[16];
    char *target;
    int minor;           /* HTTP/1.x */
    FxHeader headers[FX_MAX_HEADERS];
    int nheaders;
    const char *body;
    size_t body_len;
    bool keep_alive;
} FxRequest;

/* A response about to be written: status, extra headers ("Name: value\r\n" lines), body. */
typedef struct FxResponse {
    int status;
    Buf headers;
    Buf body;
} FxResponse;

typedef struct FxConn {
    int fd;
    Buf in;
    Buf out;
    size_t out_off;
    bool sent_continue; /* 100 Continue already sent for the request at the head of `in` */
    bool closing;       /* close once `out` is written */
} FxConn;

typedef struct FxServer {
    const FxConfig *cfg;
    int listen_fd;
    int wake_fd[2]; /* self-pipe written by the signal handler */
    FxConn *conns[FX_MAX_CONNS];
    int nconns;
    FILE *record;
    CURL *curl; /* reused so the upstream connection is kept alive */
    unsigned long long requests;
} FxServer;

static volatile sig_atomic_t g_stop;
static int g_wake_write = -1;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_wake_write >= 0) {
        int saved = errno;
        ssize_t w = write(g_wake_write, "x", 1);
        (void)w;
        errno = saved;
    }
}

/* ---- small helpers ------------------------------------------------------------------------------ */

static bool ieq(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* Headers a proxy must not pass on, and those this server computes itself. */
static bool is_hop_header(const char *name)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                                      "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                                      "content-length", "host", "expect"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (ieq(name, hop[i]))
            return true;
    return false;
}

static const char *req_header(const FxRequest *r, const char *name)
{
    for (int i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static void request_clear(FxRequest *r)
{
    free(r->target);
    for (int i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    memset(r, 0, sizeof *r);
}

static void response_init(FxResponse *res)
{
    res->status = 0;
    buf_init(&res->headers, (size_t)1 << 20);
    buf_init(&res->body, FX_MAX_UPSTREAM);
}

static void response_free(FxResponse *res)
{
    buf_free(&res->headers);
    buf_free(&res->body);
}

/* An OpenAI-style error document as the response. */
static void response_error(FxResponse *res, int status, const char *type, const char *code, const char *message)
{
    buf_reset(&res->headers);
    buf_reset(&res->body);
    res->status = status;
    int rc = buf_puts(&res->headers, "Content-Type: application/json\r\n");
    if (!rc)
        rc = buf_puts(&res->body, "{\"error\":{\"message\":");
    if (!rc)
        rc = json_put_cstr(&res->body, message);
    if (!rc)
        rc = buf_puts(&res->body, ",\"type\":");
    if (!rc)
        rc = json_put_cstr(&res->body, type);
    if (!rc)
        rc = buf_puts(&res->body, ",\"param\":null,\"code\":");
    if (!rc)
        rc = json_put_cstr(&res->body, code);
    if (!rc)
        buf_puts(&res->body, "}}\n");
}

/* ---- request head --------------------------------------------------------------------------------- */

/* Parse the head in s[0..head_len) (ending with the blank line) into r. Returns 0, or an HTTP
 * status to answer with (400, 431, 501) when the head is unusable. */
static int parse_head(const char *s, size_t head_len, FxRequest *r)
{
    memset(r, 0, sizeof *r);
    const char *end = s + head_len;
    const char *eol = memchr(s, '\n', head_len);
    if (!eol)
        return 400;
    size_t line_len = (size_t)(eol - s);
    if (line_len && s[line_len - 1] == '\r')
        line_len--;
    const char *sp1 = memchr(s, ' ', line_len);
    if (!sp1 || sp1 == s || (size_t)(sp1 - s) >= sizeof r->method)
        return 400;
    memcpy(r->method, s, (size_t)(sp1 - s));
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', line_len - (size_t)(t - s));
    if (!sp2 || sp2 == t)
        return 400;
    const char *ver = sp2 + 1;
    size_t ver_len = line_len - (size_t)(ver - s);
    if (ver_len != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        return 400;
    r->minor = ver[7] - '0';
    if (!(r->target = dup_range(t, (size_t)(sp2 - t))))
        return 500;

    for (const char *p = eol + 1; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n == 0)
            break; /* the blank line */
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p)
            return 400;
        if (r->nheaders == FX_MAX_HEADERS)
            return 431;
        const char *v = colon + 1;
        const char *ve = p + n;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        FxHeader *h = &r->headers[r->nheaders];
        h->name = dup_range(p, (size_t)(colon - p));
        h->value = dup_range(v, (size_t)(ve - v));
        if (!h->name || !h->value) {
            free(h->name);
            free(h->value);
            return 500;
        }
        for (char *c = h->name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        r->nheaders++;
        p = nl + 1;
    }
    if (req_header(r, "transfer-encoding"))
        return 501;
    const char *conn = req_header(r, "connection");
    if (r->minor == 1)
        r->keep_alive = !(conn && strcasestr(conn, "close"));
    else
        r->keep_alive = conn && strcasestr(conn, "keep-alive");
    return 0;
}

/* Bytes up to and including the blank line ending the head, or 0 when not complete yet. */
static size_t head_length(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\n')
            continue;
        if (s[i + 1] == '\n')
            return i + 2;
        if (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Content-Length as a size; -1 when malformed. */
static long long content_length(const FxRequest *r)
{
    const char *v = req_header(r, "content-length");
    if (!v)
        return 0;
    if (!*v)
        return -1;
    long long n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || n > (1LL << 40))
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

/* ---- the record file ------------------------------------------------------------------------------ */

static void record_request(FxServer *s, const FxRequest *r)
{
    if (!s->record)
        return;
    Buf line;
    buf_init(&line, 0);
    int rc = buf_puts(&line, "{\"method\":");
    if (!rc)
        rc = json_put_cstr(&line, r->method);
    if (!rc)
        rc = buf_puts(&line, ",\"target\":");
    if (!rc)
        rc = json_put_cstr(&line, r->target);
    if (!rc)
        rc = buf_puts(&line, ",\"headers\":{");
    /* A repeated header is written once, its values joined by ", " (RFC 9110 5.3). */
    bool first = true;
    for (int i = 0; i < r->nheaders && !rc; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(r->headers[j].name, r->headers[i].name) == 0;
        if (seen)
            continue;
        if (!first)
            rc = buf_putc(&line, ',');
        first = false;
        if (!rc)
            rc = json_put_cstr(&line, r->headers[i].name);
        if (!rc)
            rc = buf_putc(&line, ':');
        Buf v;
        buf_init(&v, 0);
        for (int j = i; j < r->nheaders && !rc; j++) {
            if (strcmp(r->headers[j].name, r->headers[i].name) != 0)
                continue;
            if (v.len)
                rc = buf_puts(&v, ", ");
            if (!rc)
                rc = buf_puts(&v, r->headers[j].value);
        }
        if (!rc)
            rc = json_put_string(&line, v.data ? v.data : "", v.len);
        buf_free(&v);
    }
    if (!rc)
        rc = buf_puts(&line, "},\"body\":");
    if (!rc)
        rc = json_put_string(&line, r->body ? r->body : "", r->body_len);
    if (!rc)
        rc = buf_puts(&line, "}\n");
    if (rc || fwrite(line.data, 1, line.len, s->record) != line.len || fflush(s->record) != 0)
        fprintf(stderr, "tierq-fixture: cannot append to the record file: %s\n", rc ? "out of memory" : strerror(errno));
    buf_free(&line);
}

/* ---- fixtures ------------------------------------------------------------------------------------- */

/* The NAME of the first [[fixture:NAME]] in body, into name[cap]. A JSON-escaped slash ("\/") in the
 * name is read as "/". Returns 1 found, 0 no marker, -1 a marker with an unusable name. */
static int find_marker(const char *body, size_t len, char *name, size_t cap)
{
    static const char open[] = "[[fixture:";
    const size_t ol = sizeof open - 1;
    for (size_t i = 0; i + ol <= len; i++) {
        if (memcmp(body + i, open, ol) != 0)
            continue;
        size_t k = i + ol, n = 0;
        while (k + 1 < len && !(body[k] == ']' && body[k + 1] == ']')) {
            char c = body[k];
            if (c == '\\' && k + 1 < len && body[k + 1] == '/') {
                c = '/';
                k++;
            }
            bool okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                       c == '-' || c == '.' || c == '/';
            if (!okc || n + 1 >= cap)
                return -1;
            name[n++] = c;
            k++;
        }
        if (k + 1 >= len)
            return -1; /* never closed */
        name[n] = '\0';
        if (n == 0 || name[0] == '/' || strstr(name, ".."))
            return -1;
        return 1;
    }
    return 0;
}

/* Read DIR/NAME.http into res. The file: "status: N" and "header: Name: value" lines, a blank line,
 * then the body verbatim. Returns 0, or fills res with an error answer (404 missing, 500 bad). */
static int load_fixture(const char *dir, const char *name, FxResponse *res)
{
    char path[4096];
    char msg[600];
    int pn = snprintf(path, sizeof path, "%s/%s.http", dir, name);
    if (pn < 0 || (size_t)pn >= sizeof path) {
        response_error(res, 500, "fixture_error", "fixture_path_too_long", "fixture path too long");
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, sizeof msg, "no fixture named %s in %s: %s", name, dir, strerror(errno));
        response_error(res, 404, "invalid_request_error", "fixture_not_found", msg);
        return -1;
    }
    Buf file;
    buf_init(&file, FX_MAX_FIXTURE);
    char chunk[8192];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(&file, chunk, got);
    bool read_err = ferror(f) != 0;
    fclose(f);
    if (rc || read_err) {
        buf_free(&file);
        snprintf(msg, sizeof msg, "cannot read fixture %s", name);
        response_error(res, 500, "fixture_error", "fixture_unreadable", msg);
        return -1;
    }
    const char *s = file.data ? file.data : "";
    size_t n = file.len, p = 0;
    int status = 0;
    bool blank = false;
    buf_reset(&res->headers);
    buf_reset(&res->body);
    while (p < n && !rc) {
        const char *nl = memchr(s + p, '\n', n - p);
        size_t e = nl ? (size_t)(nl - s) : n;
        size_t l = e - p;
        if (l && s[p + l - 1] == '\r')
            l--;
        const char *line = s + p;
        p = nl ? e + 1 : n;
        if (l == 0) {
            blank = true;
            break;
        }
        if (l > 7 && memcmp(line, "status:", 7) == 0) {
            char num[16];
            size_t k = 7;
            while (k < l && line[k] == ' ')
                k++;
            size_t d = 0;
            while (k < l && d + 1 < sizeof num && line[k] >= '0' && line[k] <= '9')
                num[d++] = line[k++];
            num[d] = '\0';
            status = d == 3 && k == l ? atoi(num) : -1;
            if (status < 100 || status > 599)
                rc = -1;
        } else if (l > 7 && memcmp(line, "header:", 7) == 0) {
            size_t k = 7;
            while (k < l && line[k] == ' ')
                k++;
            const char *colon = memchr(line + k, ':', l - k);
            if (!colon || colon == line + k) {
                rc = -1;
                break;
            }
            char hname[128];
            size_t hl = (size_t)(colon - (line + k));
            if (hl >= sizeof hname) {
                rc = -1;
                break;
            }
            memcpy(hname, line + k, hl);
            hname[hl] = '\0';
            if (ieq(hname, "content-length") || ieq(hname, "transfer-encoding") || ieq(hname, "connection"))
                continue; /* computed here */
            rc = buf_append(&res->headers, line + k, l - k);
            if (!rc)
                rc = buf_puts(&res->headers, "\r\n");
        } else {
            rc = -1;
        }
    }
    if (!rc && (!blank || status <= 0))
        rc = -1;
    if (!rc)
        rc = buf_append(&res->body, s + p, n - p);
    buf_free(&file);
    if (rc) {
        snprintf(msg, sizeof msg,
                 "fixture %s is malformed: want \"status: N\", optional \"header: Name: value\" lines, a blank "
                 "line, then the body",
                 name);
        response_error(res, 500, "fixture_error", "fixture_malformed", msg);
        return -1;
    }
    res->status = status;
    return 0;
}

/* ---- upstream ------------------------------------------------------------------------------------- */

typedef struct FxUpstreamCtx {
    FxResponse *res;
    int err; /* a cap was reached */
} FxUpstreamCtx;

static size_t on_upstream_body(char *data, size_t size, size_t nmemb, void *userp)
{
    FxUpstreamCtx *ctx = userp;
    size_t n = size * nmemb;
    if (buf_append(&ctx->res->body, data, n)) {
        ctx->err = 1;
        return 0; /* aborts the transfer */
    }
    return n;
}

/* Keep end-to-end response headers; a new status line (after 100 Continue) starts over. */
static size_t on_upstream_header(char *data, size_t size, size_t nmemb, void *userp)
{
    FxUpstreamCtx *ctx = userp;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        buf_reset(&ctx->res->headers);
        return n;
    }
    size_t l = n;
    while (l && (data[l - 1] == '\n' || data[l - 1] == '\r'))
        l--;
    const char *colon = memchr(data, ':', l);
    if (!l || !colon)
        return n;
    char name[128];
    size_t nl = (size_t)(colon - data);
    if (nl == 0 || nl >= sizeof name)
        return n;
    memcpy(name, data, nl);
    name[nl] = '\0';
    if (is_hop_header(name))
        return n;
    if (buf_append(&ctx->res->headers, data, l) || buf_puts(&ctx->res->headers, "\r\n"))
        ctx->err = 1;
    return n;
}

/* One CURLcode check for every option set below: all of them are static and known to the library,
 * so a failure means this libcurl cannot do what the proxy needs. */
static int curl_ok(CURLcode c) { return c == CURLE_OK ? 0 : -1; }

/* Forward r to the upstream base URL + the request path after "/v1" (query kept). Fills res with the
 * upstream's status, end-to-end headers and body, or a 502 error document when it cannot be reached.
 * Blocks until the upstream answers or the timeout expires. */
static void forward_upstream(FxServer *s, const FxRequest *r, FxResponse *res)
{
    const char *tail = r->target;
    if (strncmp(tail, "/v1/", 4) == 0 || strcmp(tail, "/v1") == 0 || strncmp(tail, "/v1?", 4) == 0)
        tail += 3;
    Buf url;
    buf_init(&url, 0);
    const char *base = s->cfg->upstream;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    struct curl_slist *hdrs = NULL, *tmp;
    char errbuf[CURL_ERROR_SIZE] = "";
    FxUpstreamCtx ctx = {.res = res, .err = 0};
    int rc = buf_append(&url, base, bl);
    if (!rc)
        rc = buf_puts(&url, tail);
    for (int i = 0; i < r->nheaders && !rc; i++) {
        if (is_hop_header(r->headers[i].name))
            continue;
        Buf h;
        buf_init(&h, 0);
        rc = buf_printf(&h, "%s: %s", r->headers[i].name, r->headers[i].value);
        if (!rc) {
            tmp = curl_slist_append(hdrs, h.data);
            if (tmp)
                hdrs = tmp;
            else
                rc = -1;
        }
        buf_free(&h);
    }
    /* An empty "Expect:" stops libcurl from adding its own 100-continue handshake. */
    if (!rc && !(tmp = curl_slist_append(hdrs, "Expect:")))
        rc = -1;
    else if (!rc)
        hdrs = tmp;
    if (rc) {
        response_error(res, 500, "proxy_error", "out_of_memory", "out of memory building the upstream request");
        goto cleanup;
    }

    buf_reset(&res->headers);
    buf_reset(&res->body);
    CURL *c = s->curl;
    rc = curl_ok(curl_easy_setopt(c, CURLOPT_URL, url.data));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->cfg->upstream_timeout_ms));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_upstream_body));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_upstream_header));
    rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_HEADERDATA, &ctx));
    if (strcmp(r->method, "GET") == 0) {
        rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_HTTPGET, 1L));
    } else if (strcmp(r->method, "HEAD") == 0) {
        rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_NOBODY, 1L));
    } else {
        rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len));
        rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body_len ? r->body : ""));
        if (strcmp(r->method, "POST") != 0)
            rc = rc ? rc : curl_ok(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method));
    }
    if (rc) {
        response_error(res, 500, "proxy_error", "curl_setopt", "libcurl refused an option");
        goto cleanup;
    }
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    if (cc == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 100 &&
        status <= 599 && !ctx.err) {
        res->status = (int)status;
    } else {
        char msg[CURL_ERROR_SIZE + 200];
        snprintf(msg, sizeof msg, "upstream %s: %s", url.data,
                 ctx.err ? "response too large" : (errbuf[0] ? errbuf : curl_easy_strerror(cc)));
        response_error(res, 502, "proxy_error", "upstream_failed", msg);
    }
cleanup:
    /* The handle points at hdrs, errbuf and ctx: drop every option (live connections stay) before
     * those go away. */
    curl_easy_reset(s->curl);
    curl_slist_free_all(hdrs);
    buf_free(&url);
}

/* ---- routing -------------------------------------------------------------------------------------- */

static bool is_chat_completions(const char *target)
{
    static const char suffix[] = "/chat/completions";
    size_t pl = strcspn(target, "?");
    size_t sl = sizeof suffix - 1;
    return pl >= sl && memcmp(target + pl - sl, suffix, sl) == 0;
}

static void handle_request(FxServer *s, const FxRequest *r, FxResponse *res)
{
    char name[FX_MAX_NAME + 1];
    if (strcmp(r->method, "POST") == 0 && is_chat_completions(r->target)) {
        int m = find_marker(r->body, r->body_len, name, sizeof name);
        if (m < 0) {
            response_error(res, 400, "invalid_request_error", "fixture_name_invalid",
                           "a [[fixture:NAME]] marker with an unusable NAME (letters, digits, _ - . / only, no ..)");
            return;
        }
        if (m > 0) {
            if (!s->cfg->fixtures) {
                response_error(res, 404, "invalid_request_error", "fixture_not_found",
                               "a [[fixture:NAME]] marker but no --fixtures directory");
                return;
            }
            load_fixture(s->cfg->fixtures, name, res);
            return;
        }
    }
    if (s->cfg->upstream) {
        forward_upstream(s, r, res);
        return;
    }
    response_error(res, 404, "invalid_request_error", "fixture_not_found",
                   "no [[fixture:NAME]] marker in the request body and no --upstream to forward to");
}

/* ---- connections ---------------------------------------------------------------------------------- */

static void conn_free(FxConn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

/* connection: the Connection header line to send, "" for none. */
static int append_response(FxConn *c, const FxResponse *res, const char *connection)
{
    int rc = buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", res->status, reason_phrase(res->status));
    if (!rc && res->headers.len)
        rc = buf_append(&c->out, res->headers.data, res->headers.len);
    if (!rc)
        rc = buf_printf(&c->out, "Content-Length: %zu\r\n%s\r\n", res->body.len, connection);
    if (!rc && res->body.len)
        rc = buf_append(&c->out, res->body.data, res->body.len);
    return rc;
}

/* A response that ends the connection (unusable head, oversize body). */
static void answer_and_close(FxConn *c, int status, const char *message)
{
    FxResponse res;
    response_init(&res);
    response_error(&res, status, "invalid_request_error", "http_error", message);
    if (append_response(c, &res, "Connection: close\r\n"))
        c->out.len = c->out_off = 0;
    response_free(&res);
    c->closing = true;
}

/* Serve every complete request at the head of c->in. Returns 0, or -1 to drop the connection. */
static int conn_process(FxServer *s, FxConn *c)
{
    while (!c->closing && c->in.len) {
        size_t hl = head_length(c->in.data, c->in.len);
        if (!hl) {
            if (c->in.len > FX_MAX_HEAD)
                answer_and_close(c, 431, "request head too large");
            return 0;
        }
        FxRequest r;
        int st = parse_head(c->in.data, hl, &r);
        if (st) {
            request_clear(&r);
            answer_and_close(c, st, st == 501 ? "transfer-encoding is not supported; send Content-Length"
                                              : "malformed request head");
            return 0;
        }
        long long cl = content_length(&r);
        if (cl < 0 || (size_t)cl > s->cfg->max_body) {
            request_clear(&r);
            answer_and_close(c, cl < 0 ? 400 : 413, cl < 0 ? "bad content-length" : "request body too large");
            return 0;
        }
        if (c->in.len - hl < (size_t)cl) {
            const char *expect = req_header(&r, "expect");
            if (expect && strcasecmp(expect, "100-continue") == 0 && !c->sent_continue && r.minor == 1) {
                if (buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n")) {
                    request_clear(&r);
                    return -1;
                }
                c->sent_continue = true;
            }
            request_clear(&r);
            return 0;
        }
        r.body = c->in.data + hl;
        r.body_len = (size_t)cl;
        s->requests++;
        record_request(s, &r);
        FxResponse res;
        response_init(&res);
        handle_request(s, &r, &res);
        /* HTTP/1.0 keeps a connection only when both sides say so. */
        const char *conn = !r.keep_alive ? "Connection: close\r\n" : r.minor == 0 ? "Connection: keep-alive\r\n" : "";
        int rc = append_response(c, &res, conn);
        response_free(&res);
        if (!r.keep_alive)
            c->closing = true;
        request_clear(&r);
        if (rc)
            return -1;
        size_t used = hl + (size_t)cl;
        memmove(c->in.data, c->in.data + used, c->in.len - used);
        c->in.len -= used;
        c->in.data[c->in.len] = '\0';
        c->sent_continue = false;
    }
    return 0;
}

static int conn_read(FxServer *s, FxConn *c)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = read(c->fd, tmp, sizeof tmp);
        if (n > 0) {
            if (c->closing)
                continue; /* what follows an answer that ends the connection is discarded */
            if (buf_append(&c->in, tmp, (size_t)n) || conn_process(s, c))
                return -1;
            continue;
        }
        if (n == 0) {
            /* The client is done sending: what was complete is answered, then the connection closes. */
            c->closing = true;
            return c->out_off < c->out.len ? 0 : -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
}

/* Write what the socket takes. Returns 1 when everything is out and the connection should close,
 * 0 to keep it, -1 on error. */
static int conn_write(FxConn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    return c->closing ? 1 : 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void accept_all(FxServer *s)
{
    for (;;) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: poll will say when to try again */
        if (s->nconns == FX_MAX_CONNS || set_nonblock(fd)) {
            close(fd);
            continue;
        }
        FxConn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        buf_init(&c->in, s->cfg->max_body + FX_MAX_HEAD);
        buf_init(&c->out, 0);
        s->conns[s->nconns++] = c;
    }
}

static void drop_conn(FxServer *s, int i)
{
    conn_free(s->conns[i]);
    s->conns[i] = s->conns[--s->nconns];
}

static int server_run(FxServer *s)
{
    struct pollfd pfd[FX_MAX_CONNS + 2];
    while (!g_stop) {
        pfd[0] = (struct pollfd){.fd = s->wake_fd[0], .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        int n = s->nconns;
        for (int i = 0; i < n; i++) {
            FxConn *c = s->conns[i];
            short ev = c->out_off < c->out.len ? POLLOUT : 0;
            if (!c->closing)
                ev = (short)(ev | POLLIN);
            pfd[i + 2] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int pr = poll(pfd, (nfds_t)(n + 2), -1);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "tierq-fixture: poll: %s\n", strerror(errno));
            return -1;
        }
        if (pfd[0].revents)
            break;
        /* Connections first (indices stay valid while walking backwards), then new ones. */
        for (int i = n - 1; i >= 0; i--) {
            FxConn *c = s->conns[i];
            short re = pfd[i + 2].revents;
            int rc = 0;
            if (re & (POLLIN | POLLHUP | POLLERR))
                rc = c->closing ? -1 : conn_read(s, c);
            if (rc == 0 && c->out_off < c->out.len)
                rc = conn_write(c);
            if (rc != 0)
                drop_conn(s, i);
        }
        if (pfd[1].revents & POLLIN)
            accept_all(s);
    }
    return 0;
}

/* ---- startup -------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: tierq-fixture [options]\n"
          "  --port N                listen on 127.0.0.1:N (0 = any free port; default 0)\n"
          "  --port-file F           also write the port number to F (atomically)\n"
          "  --fixtures DIR          answer [[fixture:NAME]] chat requests with DIR/NAME.http\n"
          "  --record FILE           append every request as one JSON line to FILE\n"
          "  --upstream URL          forward requests without a marker to URL + the path after /v1\n"
          "  --upstream-timeout-ms N upstream transfer timeout (default 120000)\n"
          "  --max-body BYTES        larger request bodies get 413 (default 67108864)\n",
          f);
}

static int parse_num(const char *v, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > max)
        return -1;
    *out = n;
    return 0;
}

/* Returns 0, 1 for --help, -1 after printing why. */
static int parse_args(int argc, char **argv, FxConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_body = (size_t)64 << 20;
    cfg->upstream_timeout_ms = 120000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (i + 1 >= argc) {
            fprintf(stderr, "tierq-fixture: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        long long n = 0;
        int bad = 0;
        if (strcmp(a, "--port") == 0)
            bad = parse_num(v, 65535, &n), cfg->port = (int)n;
        else if (strcmp(a, "--port-file") == 0)
            cfg->port_file = v;
        else if (strcmp(a, "--fixtures") == 0)
            cfg->fixtures = v;
        else if (strcmp(a, "--record") == 0)
            cfg->record = v;
        else if (strcmp(a, "--upstream") == 0)
            cfg->upstream = v;
        else if (strcmp(a, "--upstream-timeout-ms") == 0)
            bad = parse_num(v, 3600000, &n) || n == 0, cfg->upstream_timeout_ms = (long)n;
        else if (strcmp(a, "--max-body") == 0)
            bad = parse_num(v, 1LL << 30, &n) || n == 0, cfg->max_body = (size_t)n;
        else {
            fprintf(stderr, "tierq-fixture: unknown option %s\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "tierq-fixture: bad value for %s\n", a);
            return -1;
        }
    }
    if (cfg->upstream && strncmp(cfg->upstream, "http://", 7) != 0 && strncmp(cfg->upstream, "https://", 8) != 0) {
        fprintf(stderr, "tierq-fixture: --upstream must be an http:// or https:// URL\n");
        return -1;
    }
    struct stat st;
    if (cfg->fixtures && (stat(cfg->fixtures, &st) || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "tierq-fixture: --fixtures %s is not a directory\n", cfg->fixtures);
        return -1;
    }
    return 0;
}

static int listen_loopback(int port, int *out_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        listen(fd, 512) || set_nonblock(fd) || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
        close(fd);
        return -1;
    }
    *out_port = ntohs(sa.sin_port);
    return fd;
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int install_signals(int wake_write)
{
    g_wake_write = wake_write;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    return sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL) || sigaction(SIGPIPE, &ign, NULL) ? -1 : 0;
}

int main(int argc, char **argv)
{
    FxConfig cfg;
    int a = parse_args(argc, argv, &cfg);
    if (a) {
        usage(a > 0 ? stdout : stderr);
        return a > 0 ? 0 : 2;
    }
    FxServer s;
    memset(&s, 0, sizeof s);
    s.cfg = &cfg;
    s.listen_fd = -1;
    s.wake_fd[0] = s.wake_fd[1] = -1;
    int rc = 1, port = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tierq-fixture: libcurl initialisation failed\n");
        return 1;
    }
    if (!(s.curl = curl_easy_init())) {
        fprintf(stderr, "tierq-fixture: libcurl initialisation failed\n");
        goto cleanup;
    }
    if (pipe(s.wake_fd) || set_nonblock(s.wake_fd[1]) || install_signals(s.wake_fd[1])) {
        fprintf(stderr, "tierq-fixture: cannot set up signal handling: %s\n", strerror(errno));
        goto cleanup;
    }
    if (cfg.record && !(s.record = fopen(cfg.record, "a"))) {
        fprintf(stderr, "tierq-fixture: cannot open record file %s: %s\n", cfg.record, strerror(errno));
        goto cleanup;
    }
    if ((s.listen_fd = listen_loopback(cfg.port, &port)) < 0) {
        fprintf(stderr, "tierq-fixture: cannot listen on 127.0.0.1:%d: %s\n", cfg.port, strerror(errno));
        goto cleanup;
    }
    if (cfg.port_file && write_port_file(cfg.port_file, port)) {
        fprintf(stderr, "tierq-fixture: cannot write port file %s: %s\n", cfg.port_file, strerror(errno));
        goto cleanup;
    }
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    rc = server_run(&s) ? 1 : 0;
    fprintf(stderr, "tierq-fixture: stopped after %llu requests\n", s.requests);
cleanup:
    while (s.nconns)
        drop_conn(&s, s.nconns - 1);
    if (s.listen_fd >= 0)
        close(s.listen_fd);
    if (s.record && fclose(s.record))
        rc = 1;
    for (int i = 0; i < 2; i++)
        if (s.wake_fd[i] >= 0)
            close(s.wake_fd[i]);
    if (s.curl)
        curl_easy_cleanup(s.curl);
    curl_global_cleanup();
    return rc;
}
