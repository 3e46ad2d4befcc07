/* waker.h — wake the scheduler when jobs are inserted, and still find them when a notification is
 * lost.
 *
 * A dedicated connection LISTENs on channel tierq_jobs (the statement trigger NOTIFYs once per
 * INSERT statement). waker_wait returns as soon as a notification arrives or after timeout_ms,
 * whichever comes first, so callers claim at least every poll interval: a lost notification (or a
 * PgBouncer in transaction mode, where LISTEN does not work: poll_only) only delays work. A broken
 * connection is reopened and LISTEN issued again; while the database is down waker_wait still
 * returns on time, reporting the reconnect error. Blocks up to timeout_ms: scheduler thread only. */
#ifndef TQ_WAKER_H
#define TQ_WAKER_H

#include "err.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct Waker {
    char *conninfo;
    PGconn *conn;       /* NULL while disconnected */
    bool poll_only;
    int reconnects;     /* how many times the connection was reopened */
} Waker;

int waker_open(Waker *w, const char *conninfo, bool poll_only, TqErr *err);
void waker_close(Waker *w);
/* *notified is true when at least one notification arrived (all pending ones are consumed). The
 * wait also ends early when extra_fd (an eventfd, or -1 for none) becomes readable; it is drained. */
int waker_wait(Waker *w, int timeout_ms, int extra_fd, bool *notified, TqErr *err);

#endif
