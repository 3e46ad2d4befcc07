#include "writer.h"

#include "clock.h"
#include "cost.h"
#include "db.h"
#include "log.h"
#include "json.h"
#include "queue.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITER_MAX_BATCH 1000   /* calls per flush */
#define WRITER_LINGER_MS 20     /* wait for more calls before a small flush */

struct Writer {
    char *conninfo;
    char *owner;
    Fifo *in;
    HeldSet *held;
    int notify_fd;
    PGconn *conn;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    WriterStats stats;
    WriterHooks hooks;
};

typedef struct Batch {
    Call **calls;
    int n;
} Batch;

void writer_tally_failure(WriterStats *st, const char *reason, const char *error)
{
    if (!reason || !*reason)
        reason = "unknown";
    int i = 0;
    while (i < st->nfailures && strcmp(st->failures[i].reason, reason) != 0)
        i++;
    if (i == st->nfailures) {
        if (st->nfailures == WRITER_MAX_REASONS)
            i = WRITER_MAX_REASONS - 1; /* the rest are counted under the last slot */
        else {
            st->nfailures++;
            snprintf(st->failures[i].reason, sizeof st->failures[i].reason, "%s", reason);
            utf8_copy_cut(st->failures[i].sample, sizeof st->failures[i].sample, error ? error : "",
                          error ? strlen(error) : 0);
        }
    }
    st->failures[i].count++;
}

static void tally(void *ud, const char *reason, const char *error) { writer_tally_failure(ud, reason, error); }

/* One attempt at writing the batch: the queue's one fenced write-back statement. Fills delta only
 * on success. */
static int write_back(Writer *w, const Batch *bt, WriterStats *delta, TqErr *err)
{
    WriterStats d = {0};
    QueueWriteBack wb = {.on_failure = tally, .ud = &d};
    int rc = queue_write_back(w->conn, w->owner, bt->calls, bt->n, &wb, err);
    if (rc)
        return rc;
    d.calls = wb.rows;
    d.jobs_done = wb.done;
    d.jobs_retry = wb.retry;
    d.jobs_failed = wb.failed;
    d.lease_lost = wb.lease_lost;
    d.cost_pico = wb.cost_pico;
    d.baseline_pico = wb.baseline_pico;
    d.statements = 1;
    *delta = d;
    return 0;
}

static void reconnect(Writer *w)
{
    if (w->conn)
        PQfinish(w->conn);
    w->conn = NULL;
    TqErr err = {0};
    if (db_connect(w->conninfo, &w->conn, &err)) {
        w->conn = NULL;
        log_msg(LOG_WARN, "writer", "database unreachable, will retry: %s", err.msg);
    } else {
        log_msg(LOG_INFO, "writer", "reconnected to the database");
    }
}

static void flush(Writer *w, Batch *bt)
{
    if (bt->n == 0)
        return;
    int64_t backoff = 100;
    for (;;) {
        if (!w->conn || db_is_broken(w->conn))
            reconnect(w);
        TqErr err = {0};
        WriterStats d = {0};
        int64_t t0 = clock_mono_ms();
        if (w->conn && write_back(w, bt, &d, &err) == 0) {
            log_msg(LOG_DEBUG, "writer", "flushed calls=%d ms=%lld", bt->n, (long long)(clock_mono_ms() - t0));
            pthread_mutex_lock(&w->mu);
            for (int k = 0; k < d.nfailures; k++)
                for (int64_t m = 0; m < d.failures[k].count; m++)
                    writer_tally_failure(&w->stats, d.failures[k].reason, d.failures[k].sample);
            w->stats.calls += d.calls;
            w->stats.jobs_done += d.jobs_done;
            w->stats.jobs_failed += d.jobs_failed;
            w->stats.jobs_retry += d.jobs_retry;
            w->stats.lease_lost += d.lease_lost;
            w->stats.cost_pico = cost_add(w->stats.cost_pico, d.cost_pico);
            w->stats.baseline_pico = cost_add(w->stats.baseline_pico, d.baseline_pico);
            w->stats.statements += d.statements;
            w->stats.flushes++;
            pthread_mutex_unlock(&w->mu);
            if (d.lease_lost)
                log_msg(LOG_WARN, "writer", "lease_lost jobs=%lld: another attempt owns them; results not written",
                        (long long)d.lease_lost);
            break;
        }
        pthread_mutex_lock(&w->mu);
        w->stats.db_errors++;
        pthread_mutex_unlock(&w->mu);
        if (w->conn && !db_is_broken(w->conn)) {
            /* A statement failed on a healthy connection: something in this batch is unwritable.
             * Nothing is lost by waiting: the jobs stay leased and, if this never clears, expire
             * and are retried by the queue. Keep trying with backoff and say why. */
            log_msg(LOG_ERROR, "writer", "write-back failed, retrying: %s", err.msg);
        } else {
            log_msg(LOG_WARN, "writer", "write-back interrupted (%s); retrying", err.msg[0] ? err.msg : "no connection");
        }
        struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000};
        nanosleep(&ts, NULL);
        if (backoff < 5000)
            backoff *= 2;
        if (atomic_load(&w->stop) && backoff >= 5000 && w->conn && !db_is_broken(w->conn))
            break; /* stopping and the batch keeps failing: leave it to lease expiry */
    }
    for (int i = 0; i < bt->n; i++) {
        Call *c = bt->calls[i];
        if (w->hooks.on_call)
            w->hooks.on_call(w->hooks.ud, c);
        for (int j = 0; j < c->njobs; j++)
            if (c->jobs[j].job) /* a job moved to another call is still held */
                held_remove(w->held, c->jobs[j].job->id);
        call_free(c);
    }
    bt->n = 0;
    if (w->notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t wr = write(w->notify_fd, &one, sizeof one);
        (void)wr;
    }
}

static void *writer_main(void *arg)
{
    Writer *w = arg;
    Batch bt = {calloc(WRITER_MAX_BATCH, sizeof(Call *)), 0};
    Call *pending = NULL, *pending_tail = NULL;
    int64_t first_ms = 0;
    for (;;) {
        bool stopping = atomic_load(&w->stop);
        int n = 0;
        Call *list = fifo_take_all(w->in, pending ? 2 : 50, &n);
        if (list) {
            if (!pending)
                first_ms = clock_mono_ms();
            if (pending_tail)
                pending_tail->next = list;
            else
                pending = list;
            while (list->next)
                list = list->next;
            pending_tail = list;
        }
        /* Flush when the batch is full, has lingered long enough, or we are stopping. */
        while (pending) {
            int count = 0;
            for (Call *c = pending; c && count < WRITER_MAX_BATCH; c = c->next)
                count++;
            if (count < WRITER_MAX_BATCH && clock_mono_ms() - first_ms < WRITER_LINGER_MS && !stopping)
                break;
            while (pending && bt.n < WRITER_MAX_BATCH) {
                bt.calls[bt.n++] = pending;
                pending = pending->next;
            }
            if (!pending)
                pending_tail = NULL;
            flush(w, &bt);
            first_ms = clock_mono_ms();
        }
        if (stopping && !pending && fifo_length(w->in) == 0)
            break;
    }
    free(bt.calls);
    return NULL;
}

int writer_start(Writer **out, const char *conninfo, const char *owner, Fifo *in, HeldSet *held, int notify_fd,
                 const WriterHooks *hooks, TqErr *err)
{
    Writer *w = calloc(1, sizeof *w);
    if (!w)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    w->conninfo = strdup(conninfo ? conninfo : db_conninfo_from_env());
    w->owner = strdup(owner);
    w->in = in;
    w->held = held;
    w->notify_fd = notify_fd;
    if (hooks)
        w->hooks = *hooks;
    int rc = 0;
    if (!w->conninfo || !w->owner)
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
    else if ((rc = pthread_mutex_init(&w->mu, NULL)) != 0)
        rc = tq_err(err, TQ_EIO, "writer: pthread_mutex_init: %s", strerror(rc));
    else if ((rc = db_connect(w->conninfo, &w->conn, err)) == 0 &&
             (rc = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
        rc = tq_err(err, TQ_EIO, "cannot start the writer thread: %s", strerror(rc));
        PQfinish(w->conn);
    }
    if (rc) {
        free(w->conninfo);
        free(w->owner);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void writer_stop(Writer *w, WriterStats *final)
{
    if (!w)
        return;
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    if (final)
        *final = w->stats;
    if (w->conn)
        PQfinish(w->conn);
    pthread_mutex_destroy(&w->mu);
    free(w->conninfo);
    free(w->owner);
    free(w);
}

void writer_get_stats(Writer *w, WriterStats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}
