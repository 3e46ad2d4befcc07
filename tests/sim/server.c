#include "server.h"

#include "clock.h"

#include "http.h"
#include "log.h"
#include "reply.h"
#include "routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK ((size_t)4 << 10) /* first read size; a known body is reserved whole */
#define OUT_HIGH_WATER ((size_t)1 << 20)    /* stop parsing pipelined requests above this */
#define IN_PAUSE ((size_t)64 << 10)         /* stop reading while busy above this */
#define OUT_KEEP ((size_t)1 << 20)          /* free larger output buffers once sent */
#define DISCARD_MAX ((int64_t)64 << 20)     /* read and drop a refused body up to this size */
#define ACCEPT_PAUSE_MS 100
#define MAX_EVENTS 1024

typedef struct Conn {
    int fd;
    uint64_t gen;       /* tells this connection from a later one on the same fd */
    uint32_t events;    /* current epoll interest */
    Buf in;
    size_t in_start;    /* first byte of in not yet consumed */
    size_t scan;        /* head search position, relative to in_start */
    size_t head_len;    /* 0 until the current request's head has arrived */
    int64_t body_len;
    int64_t discard;    /* bytes of a refused body still to drop */
    bool sent_continue;
    Buf out;
    size_t out_off;
    Buf pend;           /* a delayed reply, serialized */
    size_t pend_cut;    /* bytes of pend to send for REPLY_TRUNCATE */
    ReplyAction pend_action;
    int pend_status;
    bool pend_close, pend_meta;
    bool busy;          /* a request waits for its delayed reply */
    bool closing;       /* close once out is flushed; read nothing more */
    bool peer_closed;
} Conn;

typedef struct Timer {
    int64_t due;
    uint64_t gen;
    int fd;
} Timer;

struct Server {
    Sim *sim;
    int lfd, ep, sfd;
    int port;
    Conn **conns; /* indexed by fd */
    size_t conns_cap;
    uint64_t next_gen;
    Timer *heap;
    size_t nheap, heap_cap;
    SimReply reply;
    bool accept_paused;
    int64_t accept_resume_ms;
    bool stop;
};

/* ---- timers: a binary min-heap on due time ---- */

static int heap_push(Server *s, Timer t)
{
    if (s->nheap == s->heap_cap) {
        size_t nc = s->heap_cap ? s->heap_cap * 2 : 1024;
        Timer *nh = realloc(s->heap, nc * sizeof *nh);
        if (!nh)
            return TQ_ENOMEM;
        s->heap = nh;
        s->heap_cap = nc;
    }
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].due <= t.due)
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = t;
    return 0;
}

static Timer heap_pop(Server *s)
{
    Timer top = s->heap[0];
    Timer last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && s->heap[c + 1].due < s->heap[c].due)
            c++;
        if (last.due <= s->heap[c].due)
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

/* ---- connections ---- */

static void conn_close(Server *s, Conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    if (c->busy && !c->pend_meta)
        stats_inflight_done(&s->sim->stats);
    s->conns[c->fd] = NULL;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->pend);
    free(c);
    stats_conn_close(&s->sim->stats);
}

static int conn_new(Server *s, int fd)
{
    if ((size_t)fd >= s->conns_cap) {
        size_t nc = s->conns_cap ? s->conns_cap : 1024;
        while (nc <= (size_t)fd)
            nc *= 2;
        Conn **n = realloc(s->conns, nc * sizeof *n);
        if (!n)
            return TQ_ENOMEM;
        memset(n + s->conns_cap, 0, (nc - s->conns_cap) * sizeof *n);
        s->conns = n;
        s->conns_cap = nc;
    }
    Conn *c = calloc(1, sizeof *c);
    if (!c)
        return TQ_ENOMEM;
    c->fd = fd;
    c->gen = ++s->next_gen;
    buf_init(&c->in, s->sim->cfg->max_head + s->sim->cfg->max_body + IN_PAUSE);
    buf_init(&c->out, 0);
    buf_init(&c->pend, 0);
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev)) {
        free(c);
        return TQ_EIO;
    }
    s->conns[fd] = c;
    stats_conn_open(&s->sim->stats);
    return 0;
}

/* Send what is buffered. Returns 0, or -1 after closing the connection on a socket error. */
static int conn_flush(Server *s, Conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        conn_close(s, c);
        return -1;
    }
    c->out_off = 0;
    buf_reset(&c->out);
    if (c->out.size > OUT_KEEP)
        buf_free(&c->out);
    return 0;
}

/* After any activity: close if done, else make the epoll interest match the state.
 * Returns 0, or -1 if the connection was closed. */
static int conn_settle(Server *s, Conn *c)
{
    bool out_pending = c->out_off < c->out.len;
    if ((c->closing || c->peer_closed) && !c->busy && !out_pending) {
        conn_close(s, c);
        return -1;
    }
    uint32_t want = 0;
    size_t buffered = c->in.len - c->in_start;
    bool stalled = c->busy || c->out.len - c->out_off > OUT_HIGH_WATER;
    if (!c->closing && !c->peer_closed && !(stalled && buffered >= IN_PAUSE))
        want |= EPOLLIN;
    if (out_pending)
        want |= EPOLLOUT;
    if (want != c->events) {
        struct epoll_event ev = {.events = want, .data.fd = c->fd};
        if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev)) {
            conn_close(s, c);
            return -1;
        }
        c->events = want;
    }
    return 0;
}

/* Serialize rep (with close) into out; *cut is where a truncated reply stops. */
static int serialize(const SimReply *rep, bool close, Buf *out, size_t *cut)
{
    size_t start = out->len;
    int rc = http_put_head(out, rep->status, rep->content_type, rep->body.len, rep->headers.data,
                           rep->headers.len, close);
    if (!rc && rep->body.len)
        rc = buf_append(out, rep->body.data, rep->body.len);
    if (rc) {
        out->len = start;
        return rc;
    }
    *cut = (out->len - start) - rep->body.len / 2 - (rep->body.len % 2);
    return 0;
}

/* The bytes of one reply now sit in out from offset start: apply its action and send.
 * Returns 0 or -1 if the connection was closed. */
static int conn_deliver(Server *s, Conn *c, size_t start, size_t cut, ReplyAction action, int status, bool close,
                        bool meta)
{
    SimStats *st = &s->sim->stats;
    if (!meta)
        stats_inflight_done(st);
    if (action == REPLY_DROP) {
        c->out.len = start;
        c->closing = true;
    } else {
        if (!meta)
            stats_response(st, status);
        if (action == REPLY_TRUNCATE) {
            c->out.len = start + cut;
            close = true;
        }
        if (close)
            c->closing = true;
    }
    if (c->out.data)
        c->out.data[c->out.len] = '\0';
    return conn_flush(s, c);
}

/* A reply the server makes itself for a request it cannot parse or accept. */
static int conn_refuse(Server *s, Conn *c, int status, bool close)
{
    SimReply *rep = &s->reply;
    reply_reset(rep);
    const char *msg = status == 413   ? "Request body too large."
                      : status == 431 ? "Request header fields too large."
                      : status == 501 ? "Transfer-Encoding is not supported; send a Content-Length body."
                      : status == 505 ? "HTTP version not supported."
                                      : "Malformed HTTP request.";
    size_t start = c->out.len, cut = 0;
    if (reply_error(rep, status, msg, "invalid_request_error", NULL, NULL) ||
        serialize(rep, close, &c->out, &cut)) {
        conn_close(s, c);
        return -1;
    }
    s->sim->stats.http_requests++;
    stats_inflight_add(&s->sim->stats);
    return conn_deliver(s, c, start, cut, REPLY_SEND, status, close, false);
}

static int conn_dispatch(Server *s, Conn *c, const HttpReq *req)
{
    SimReply *rep = &s->reply;
    Sim *sim = s->sim;
    reply_reset(rep);
    if (routes_dispatch(sim, req, rep)) {
        reply_reset(rep);
        reply_error(rep, 500, "The simulator could not build a reply.", "server_error", NULL, NULL);
    }
    if (!rep->meta) {
        sim->stats.http_requests++;
        stats_inflight_add(&sim->stats);
    }
    bool close = rep->close || !req->keep_alive || rep->action != REPLY_SEND;
    int rc;
    if (rep->delay_ms == 0) {
        size_t start = c->out.len, cut = 0;
        if (serialize(rep, close, &c->out, &cut)) {
            if (!rep->meta)
                stats_inflight_done(&sim->stats);
            conn_close(s, c);
            return -1;
        }
        rc = conn_deliver(s, c, start, cut, rep->action, rep->status, close, rep->meta);
    } else {
        buf_reset(&c->pend);
        if (serialize(rep, close, &c->pend, &c->pend_cut) ||
            heap_push(s, (Timer){sim->now_ms + rep->delay_ms, c->gen, c->fd})) {
            if (!rep->meta)
                stats_inflight_done(&sim->stats);
            conn_close(s, c);
            return -1;
        }
        c->busy = true;
        c->pend_action = rep->action;
        c->pend_status = rep->status;
        c->pend_close = close;
        c->pend_meta = rep->meta;
        rc = 0;
    }
    if (rep->body.size > OUT_KEEP) /* after an oversized reply, give the memory back */
        buf_free(&rep->body);
    return rc;
}

/* Parse and dispatch every complete request in the buffer, one at a time.
 * Returns 0 or -1 if the connection was closed. */
static int conn_process(Server *s, Conn *c)
{
    const SimConfig *cfg = s->sim->cfg;
    while (!c->busy && !c->closing) {
        if (c->out.len - c->out_off > OUT_HIGH_WATER)
            break;
        char *base = c->in.data + c->in_start;
        size_t avail = c->in.len - c->in_start;
        if (c->discard > 0) {
            size_t k = (size_t)c->discard < avail ? (size_t)c->discard : avail;
            c->in_start += k;
            c->discard -= (int64_t)k;
            if (c->discard > 0)
                break;
            continue;
        }
        if (avail == 0)
            break;
        HttpReq req;
        if (!c->head_len) {
            size_t e = http_head_end(base, avail, &c->scan);
            if (!e || e > cfg->max_head) {
                if (e || avail > cfg->max_head)
                    return conn_refuse(s, c, 431, true);
                break;
            }
            int st = http_parse_head(base, e, &req);
            if (st)
                return conn_refuse(s, c, st, true);
            if ((uint64_t)req.content_length > cfg->max_body) {
                /* With Expect: 100-continue the client has not sent the body: refuse and close. Else
                 * drop a moderate body so the connection stays usable and the client sees the 413. */
                bool keep = !req.expect_continue && req.keep_alive && req.content_length <= DISCARD_MAX;
                c->in_start += e;
                c->scan = 0;
                if (keep)
                    c->discard = req.content_length;
                if (conn_refuse(s, c, 413, !keep) < 0)
                    return -1;
                continue;
            }
            c->head_len = e;
            c->body_len = req.content_length;
            c->sent_continue = false;
            if (req.expect_continue && avail < e + (size_t)c->body_len) {
                if (buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") || conn_flush(s, c) < 0)
                    return -1;
                c->sent_continue = true;
            }
        }
        size_t total = c->head_len + (size_t)c->body_len;
        if (avail < total) {
            if (buf_reserve(&c->in, total - avail)) {
                conn_close(s, c);
                return -1;
            }
            break;
        }
        if (http_parse_head(base, c->head_len, &req)) { /* cannot fail: it parsed before */
            conn_close(s, c);
            return -1;
        }
        req.body = base + c->head_len;
        req.body_len = (size_t)c->body_len;
        c->in_start += total;
        c->head_len = 0;
        c->body_len = 0;
        c->scan = 0;
        if (conn_dispatch(s, c, &req) < 0)
            return -1;
    }
    if (c->in_start == c->in.len) {
        c->in_start = 0;
        buf_reset(&c->in);
    }
    return 0;
}

/* Read what the socket has. Returns 0 or -1 if the connection was closed. */
static int conn_read(Server *s, Conn *c)
{
    for (;;) {
        if (c->in_start == c->in.len) {
            c->in_start = 0;
            buf_reset(&c->in);
        } else if (c->in_start > 0 && c->in.size - c->in.len < READ_CHUNK) {
            memmove(c->in.data, c->in.data + c->in_start, c->in.len - c->in_start);
            c->in.len -= c->in_start;
            c->in_start = 0;
        }
        if (buf_reserve(&c->in, READ_CHUNK))
            return 0; /* at the cap: conn_settle stops reading until the buffer drains */
        size_t room = c->in.size - c->in.len - 1;
        ssize_t n = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            c->in.data[c->in.len] = '\0';
            if ((size_t)n < room)
                return 0;
            continue;
        }
        if (n == 0) {
            c->peer_closed = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        conn_close(s, c);
        return -1;
    }
}

static void conn_event(Server *s, Conn *c, uint32_t ev)
{
    if (ev & (EPOLLERR | EPOLLHUP)) { /* reset or fully closed: nobody is left to answer */
        conn_close(s, c);
        return;
    }
    if ((ev & EPOLLOUT) && conn_flush(s, c) < 0)
        return;
    if ((ev & EPOLLIN) && !c->peer_closed && conn_read(s, c) < 0)
        return;
    if (conn_process(s, c) < 0)
        return;
    conn_settle(s, c);
}

static void timer_fire(Server *s, Timer t)
{
    if ((size_t)t.fd >= s->conns_cap)
        return;
    Conn *c = s->conns[t.fd];
    if (!c || c->gen != t.gen || !c->busy)
        return; /* the connection went away while its reply waited */
    c->busy = false;
    size_t start = c->out.len;
    if (start == 0) { /* the usual case: hand the serialized reply over without copying */
        Buf tmp = c->out;
        c->out = c->pend;
        c->pend = tmp;
        c->out_off = 0;
    } else if (buf_append(&c->out, c->pend.data, c->pend.len)) {
        if (!c->pend_meta)
            stats_inflight_done(&s->sim->stats);
        conn_close(s, c);
        return;
    }
    buf_reset(&c->pend);
    if (c->pend.size > OUT_KEEP)
        buf_free(&c->pend);
    if (conn_deliver(s, c, start, c->pend_cut, c->pend_action, c->pend_status, c->pend_close, c->pend_meta) < 0)
        return;
    if (conn_process(s, c) < 0)
        return;
    conn_settle(s, c);
}

/* ---- listener ---- */

static void accept_all(Server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of spinning. */
                struct epoll_event ev = {.events = 0, .data.fd = s->lfd};
                epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &ev);
                s->accept_paused = true;
                s->accept_resume_ms = s->sim->now_ms + ACCEPT_PAUSE_MS;
                log_msg(LOG_WARN, "sim", "accept paused: out of file descriptors");
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (conn_new(s, fd))
            close(fd);
    }
}

int server_open(Server **out, Sim *sim, int port, TqErr *err)
{
    *out = NULL;
    Server *s = calloc(1, sizeof *s);
    if (!s)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    s->sim = sim;
    s->lfd = s->ep = s->sfd = -1;
    reply_init(&s->reply);
    int rc = TQ_EIO;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) || (s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        tq_err(err, TQ_EIO, "signalfd: %s", strerror(errno));
        goto fail;
    }
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0) {
        tq_err(err, TQ_EIO, "socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s->lfd, (struct sockaddr *)&addr, sizeof addr)) {
        tq_err(err, TQ_EIO, "bind 127.0.0.1:%d: %s", port, strerror(errno));
        goto fail;
    }
    if (listen(s->lfd, 65535)) {
        tq_err(err, TQ_EIO, "listen: %s", strerror(errno));
        goto fail;
    }
    socklen_t alen = sizeof addr;
    if (getsockname(s->lfd, (struct sockaddr *)&addr, &alen)) {
        tq_err(err, TQ_EIO, "getsockname: %s", strerror(errno));
        goto fail;
    }
    s->port = ntohs(addr.sin_port);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = s->lfd};
    struct epoll_event sev = {.events = EPOLLIN, .data.fd = s->sfd};
    if (s->ep < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &lev) || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->sfd, &sev)) {
        tq_err(err, TQ_EIO, "epoll: %s", strerror(errno));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    server_close(s);
    return rc;
}

int server_port(const Server *s) { return s->port; }

int server_run(Server *s, TqErr *err)
{
    struct epoll_event evs[MAX_EVENTS];
    Sim *sim = s->sim;
    while (!s->stop) {
        int timeout = -1;
        int64_t now = clock_mono_ms();
        if (s->nheap) {
            int64_t d = s->heap[0].due - now;
            timeout = d <= 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
        }
        if (s->accept_paused) {
            int64_t d = s->accept_resume_ms - now;
            int t = d <= 0 ? 0 : (int)d;
            if (timeout < 0 || t < timeout)
                timeout = t;
        }
        int n = epoll_wait(s->ep, evs, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return tq_err(err, TQ_EIO, "epoll_wait: %s", strerror(errno));
        }
        sim->now_ms = clock_mono_ms();
        sim->now_s = time(NULL);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == s->lfd) {
                accept_all(s);
            } else if (fd == s->sfd) {
                struct signalfd_siginfo si;
                while (read(s->sfd, &si, sizeof si) == (ssize_t)sizeof si)
                    log_msg(LOG_INFO, "sim", "stopping on signal %u", si.ssi_signo);
                s->stop = true;
            } else if ((size_t)fd < s->conns_cap && s->conns[fd]) {
                conn_event(s, s->conns[fd], evs[i].events);
            }
        }
        while (s->nheap && s->heap[0].due <= sim->now_ms)
            timer_fire(s, heap_pop(s));
        if (s->accept_paused && sim->now_ms >= s->accept_resume_ms) {
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->lfd};
            epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &ev);
            s->accept_paused = false;
        }
    }
    return 0;
}

void server_close(Server *s)
{
    if (!s)
        return;
    for (size_t fd = 0; fd < s->conns_cap; fd++)
        if (s->conns[fd])
            conn_close(s, s->conns[fd]);
    free(s->conns);
    free(s->heap);
    reply_free(&s->reply);
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->sfd >= 0)
        close(s->sfd);
    if (s->ep >= 0)
        close(s->ep);
    free(s);
}
