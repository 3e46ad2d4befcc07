#include "waker.h"

#include "db.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int waker_connect(Waker *w, TqErr *err)
{
    PGconn *c;
    int rc = db_connect(w->conninfo, &c, err);
    if (rc)
        return rc;
    if (!w->poll_only && (rc = db_exec(c, "listen", "LISTEN tierq_jobs", 0, NULL, err))) {
        PQfinish(c);
        return rc;
    }
    w->conn = c;
    return 0;
}

int waker_open(Waker *w, const char *conninfo, bool poll_only, TqErr *err)
{
    memset(w, 0, sizeof *w);
    w->conninfo = strdup(conninfo ? conninfo : db_conninfo_from_env());
    w->poll_only = poll_only;
    if (!w->conninfo)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    int rc = waker_connect(w, err);
    if (rc) {
        free(w->conninfo);
        w->conninfo = NULL;
    }
    return rc;
}

void waker_close(Waker *w)
{
    if (!w)
        return;
    if (w->conn)
        PQfinish(w->conn);
    free(w->conninfo);
    memset(w, 0, sizeof *w);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool drain(PGconn *c)
{
    bool got = false;
    PGnotify *n;
    while ((n = PQnotifies(c)) != NULL) {
        got = true;
        PQfreemem(n);
    }
    return got;
}

int waker_wait(Waker *w, int timeout_ms, int extra_fd, bool *notified, TqErr *err)
{
    *notified = false;
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - now_ms();
        if (!w->conn || db_is_broken(w->conn)) {
            if (w->conn) {
                PQfinish(w->conn);
                w->conn = NULL;
            }
            TqErr cerr = {0};
            if (waker_connect(w, &cerr) == 0) {
                w->reconnects++;
                log_msg(LOG_INFO, "waker", "reconnected and listening again");
                /* Anything inserted while we were away was not notified to us: report a wake-up
                 * so the caller claims now rather than at the next poll. */
                *notified = true;
                return 0;
            }
            /* Database still down: wait out the slot, then let the caller retry. */
            if (left > 0) {
                /* a short sleep; the caller's loop comes back here */
                if (left > 1000)
                    left = 1000;
                struct timespec ts = {left / 1000, (left % 1000) * 1000000};
                nanosleep(&ts, NULL);
            }
            return tq_err(err, cerr.code ? cerr.code : TQ_EDB, "%s", cerr.msg);
        }
        if (!PQconsumeInput(w->conn))
            continue; /* broken: reconnect on the next turn */
        if (drain(w->conn)) {
            *notified = true;
            return 0;
        }
        if (left <= 0)
            return 0;
        struct pollfd pfd[2] = {{.fd = PQsocket(w->conn), .events = POLLIN}, {.fd = extra_fd, .events = POLLIN}};
        int pr = poll(pfd, extra_fd >= 0 ? 2 : 1, (int)left);
        if (pr < 0 && errno == EINTR)
            return 0; /* a signal: let the caller look at it */
        if (pr < 0)
            return tq_err(err, TQ_EIO, "poll: %s", strerror(errno));
        if (pr == 0)
            return 0;
        if (extra_fd >= 0 && (pfd[1].revents & POLLIN)) {
            uint64_t v;
            ssize_t rd = read(extra_fd, &v, sizeof v);
            (void)rd;
            if (!(pfd[0].revents & POLLIN))
                return 0;
        }
    }
}
