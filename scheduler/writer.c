#include "writer.h"

#include "zpack.h"

#include "clock.h"
#include "cost.h"
#include "db.h"
#include "log.h"
#include "json.h"
#include "queue.h"
#include "spill.h"

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
#define WRITER_INTENT_LINGER_MS 2 /* ... but a request waits for its intent: not as long */

struct Writer {
    char *conninfo;
    char *owner;
    Fifo *in;
    HeldSet *held;
    int notify_fd;
    PGconn *conn;
    pthread_t thread;
    atomic_bool stop;
    atomic_llong give_up_ms;  /* 0: never give up waiting for the database */
    bool spilling;            /* the deadline passed: everything left goes to the spill directory */
    pthread_mutex_t mu;
    WriterStats stats;
    WriterOptions opt;
    char *spill_dir;
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

/* One attempt at writing calls[0..n): the queue's one fenced write-back statement. Fills delta only
 * on success. */
static int write_back(Writer *w, Call *const *calls, int n, WriterStats *delta, TqErr *err)
{
    WriterStats d = {0};
    QueueWriteBack wb = {.on_failure = tally, .ud = &d};
    int rc = queue_write_back(w->conn, w->owner, calls, n, &wb, err);
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

static void account(Writer *w, const WriterStats *d)
{
    pthread_mutex_lock(&w->mu);
    for (int k = 0; k < d->nfailures; k++)
        for (int64_t m = 0; m < d->failures[k].count; m++)
            writer_tally_failure(&w->stats, d->failures[k].reason, d->failures[k].sample);
    w->stats.calls += d->calls;
    w->stats.jobs_done += d->jobs_done;
    w->stats.jobs_failed += d->jobs_failed;
    w->stats.jobs_retry += d->jobs_retry;
    w->stats.lease_lost += d->lease_lost;
    w->stats.cost_pico = cost_add(w->stats.cost_pico, d->cost_pico);
    w->stats.baseline_pico = cost_add(w->stats.baseline_pico, d->baseline_pico);
    w->stats.statements += d->statements;
    w->stats.flushes++;
    pthread_mutex_unlock(&w->mu);
    if (d->lease_lost)
        log_msg(LOG_WARN, "writer", "lease_lost jobs=%lld: another attempt owns them; results not written",
                (long long)d->lease_lost);
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

typedef enum {
    WRITE_OK,      /* written */
    WRITE_REFUSED, /* PostgreSQL refused the statement for what it carries (err says why) */
    WRITE_GAVE_UP, /* stopping, and it could not be written in time: to be spilled */
} WriteOutcome;

/* Stopping with a deadline that has passed. */
static bool past_deadline(Writer *w)
{
    int64_t at = atomic_load(&w->give_up_ms);
    return atomic_load(&w->stop) && at > 0 && clock_mono_ms() >= at;
}

/* Sleep *backoff_ms and double it (to 5 s). True when the writer is stopping and has waited long
 * enough on a connection that works: give up rather than hold the shutdown. A lost connection is
 * waited for (the results it would lose are already paid for) — until writer_stop_by's deadline:
 * the sleep is cut short when it passes, so the deadline is kept to a slice. */
static bool backoff_or_give_up(Writer *w, int64_t *backoff_ms)
{
    int64_t until = clock_mono_ms() + *backoff_ms;
    for (int64_t now = clock_mono_ms(); now < until && !past_deadline(w); now = clock_mono_ms()) {
        int64_t ms = until - now < 50 ? until - now : 50;
        struct timespec ts = {0, ms * 1000000};
        nanosleep(&ts, NULL);
    }
    if (*backoff_ms < 5000)
        *backoff_ms *= 2;
    return atomic_load(&w->stop) && *backoff_ms >= 5000 && w->conn && !db_is_broken(w->conn);
}

/* Write calls[0..n) until it is written or refused for its data. Lost connections and transient
 * errors (deadlock, lock or statement timeout) are retried with backoff: nothing is lost by waiting,
 * the jobs stay leased and their leases are renewed. */
static WriteOutcome write_settled(Writer *w, Call *const *calls, int n, TqErr *err)
{
    int64_t backoff = 100;
    for (;;) {
        if (w->spilling)
            return WRITE_GAVE_UP; /* the deadline passed with the database away: no more waiting */
        if (!w->conn || db_is_broken(w->conn))
            reconnect(w);
        WriterStats d = {0};
        int64_t t0 = clock_mono_ms();
        if (w->conn && write_back(w, calls, n, &d, err) == 0) {
            log_msg(LOG_DEBUG, "writer", "flushed calls=%d ms=%lld", n, (long long)(clock_mono_ms() - t0));
            account(w, &d);
            return WRITE_OK;
        }
        pthread_mutex_lock(&w->mu);
        w->stats.db_errors++;
        pthread_mutex_unlock(&w->mu);
        if (w->conn && !db_is_broken(w->conn) && !db_error_is_transient(err))
            return WRITE_REFUSED;
        if (past_deadline(w)) {
            w->spilling = true;
            return WRITE_GAVE_UP;
        }
        log_msg(LOG_WARN, "writer", "write-back interrupted (%s); retrying", err->msg[0] ? err->msg : "no connection");
        if (backoff_or_give_up(w, &backoff))
            return WRITE_GAVE_UP;
    }
}

/* Whether the write-back statement is refused whatever it carries (a missing migration, revoked
 * rights, a read-only server): an empty write goes through parsing, planning and the permission
 * checks without a row. Then no call is to blame. */
static bool refused_whatever_it_carries(Writer *w, TqErr *err)
{
    WriterStats d;
    TqErr e = {0};
    if (!w->conn || db_is_broken(w->conn) || write_back(w, NULL, 0, &d, &e) == 0)
        return false;
    *err = e;
    return true;
}

typedef struct Refused {
    Call *call;
    TqErr why;
} Refused;

/* calls[0..n) was refused (why): write the halves, recursing into a refused half, so every call
 * PostgreSQL accepts is written and each call it refuses alone lands in bad[] with its refusal. */
static WriteOutcome write_bisecting(Writer *w, Call **calls, int n, const TqErr *why, Refused *bad, int *nbad)
{
    if (n == 1) {
        bad[*nbad].call = calls[0];
        bad[*nbad].why = *why;
        (*nbad)++;
        return WRITE_OK;
    }
    int half = n / 2;
    for (int part = 0; part < 2; part++) {
        Call **p = part ? calls + half : calls;
        int m = part ? n - half : half;
        TqErr e = {0};
        WriteOutcome o = write_settled(w, p, m, &e);
        if (o == WRITE_REFUSED)
            o = write_bisecting(w, p, m, &e, bad, nbad);
        if (o == WRITE_GAVE_UP)
            return o;
    }
    return WRITE_OK;
}

/* The batch could not be written in time: to the spill directory, else counted as unwritten (its
 * jobs' leases expire; what its ledger rows cost is logged, since it is spent and not recorded).
 * Calls of it already written may be in the file too: a replay changes nothing for them. */
static void spill(Writer *w, Call *const *calls, int n)
{
    int64_t pico = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < calls[i]->nrows; k++)
            pico = cost_add(pico, calls[i]->rows[k].cost_pico);
    TqErr err = {0};
    bool kept = w->spill_dir && spill_write(w->spill_dir, w->owner, calls, n, &err) == 0;
    pthread_mutex_lock(&w->mu);
    if (kept) {
        w->stats.spilled_calls += n;
    } else {
        w->stats.unwritten_calls += n;
        w->stats.unwritten_pico = cost_add(w->stats.unwritten_pico, pico);
    }
    pthread_mutex_unlock(&w->mu);
    if (!kept) {
        char usd[32];
        cost_format_usd(usd, sizeof usd, pico, 6);
        log_msg(LOG_ERROR, "writer", "%d calls could not be written or spilled (%s): their jobs' leases expire and they run"
                " again; $%s they cost is not in the ledger", n, w->spill_dir ? err.msg : "no spill directory", usd);
    }
}

static void job_ids_text(const Call *c, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int j = 0; j < c->njobs && len + 24 < cap; j++)
        if (c->jobs[j].job)
            len += (size_t)snprintf(out + len, cap - len, "%s%lld", len ? "," : "", (long long)c->jobs[j].job->id);
}

/* A call PostgreSQL refuses on its own, on a connection that writes others. Step by step, until one
 * is accepted: its jobs fail with reason unwritable_result and no answer text (the text is the usual
 * culprit: a trigger, a constraint); then without its ledger rows, whose money is logged as lost;
 * else the jobs are left to lease expiry. Never retried as is: the same values fail the same way. */
static void quarantine(Writer *w, Call *c, const TqErr *why)
{
    char ids[256];
    job_ids_text(c, ids, sizeof ids);
    char *refusal = log_scrub_dup(why->msg);
    const char *shown = refusal ? refusal : "refused";
    for (int j = 0; j < c->njobs; j++) {
        CallJob *cj = &c->jobs[j];
        if (!cj->job || cj->outcome == CALL_JOB_PENDING)
            continue;
        free(cj->result);
        cj->result = NULL;
        free(cj->error);
        cj->error = NULL;
        size_t cap = strlen(shown) + 96;
        if ((cj->error = malloc(cap)) != NULL)
            snprintf(cj->error, cap, "unwritable_result: PostgreSQL refused to store this result: %s", shown);
        cj->outcome = CALL_JOB_FAIL;
        cj->reason = "unwritable_result";
        cj->retryable = false;
        cj->keep_attempt = false;
    }
    for (int k = 0; k < c->nrows; k++) {
        free(c->rows[k].answer);
        free(c->rows[k].error);
        c->rows[k].answer = c->rows[k].error = NULL;
    }
    TqErr e = {0};
    WriteOutcome o = write_settled(w, &c, 1, &e);
    if (o == WRITE_GAVE_UP) {
        spill(w, &c, 1);
    } else if (o == WRITE_OK) {
        log_msg(LOG_ERROR, "writer", "jobs %s failed (unwritable_result): PostgreSQL refused their result: %s", ids, shown);
    } else {
        int64_t lost = 0;
        for (int k = 0; k < c->nrows; k++) {
            lost = cost_add(lost, c->rows[k].cost_pico);
            free(c->rows[k].job_ids);
            free(c->rows[k].run_name);
            free(c->rows[k].charges);
        }
        int nrows = c->nrows;
        c->nrows = 0;
        char usd[32];
        cost_format_usd(usd, sizeof usd, lost, 6);
        o = write_settled(w, &c, 1, &e);
        if (o == WRITE_GAVE_UP)
            spill(w, &c, 1);
        else if (o == WRITE_OK)
            log_msg(LOG_ERROR, "writer",
                    "jobs %s failed (unwritable_result); their %d ledger rows ($%s spent) were refused too and are not"
                    " recorded: %s",
                    ids, nrows, usd, shown);
        else
            log_msg(LOG_ERROR, "writer", "jobs %s: nothing of their result can be written (%s); left to lease expiry",
                    ids, e.msg);
    }
    free(refusal);
}

static void flush(Writer *w, Batch *bt)
{
    if (bt->n == 0)
        return;
    int64_t backoff = 100;
    for (;;) {
        TqErr err = {0};
        WriteOutcome o = write_settled(w, bt->calls, bt->n, &err);
        if (o == WRITE_GAVE_UP)
            spill(w, bt->calls, bt->n);
        if (o != WRITE_REFUSED)
            break;
        TqErr whole = {0};
        if (refused_whatever_it_carries(w, &whole)) {
            /* Not the data: the schema or the rights. Wait for someone to fix it; the jobs stay
             * leased meanwhile, and expire and retry if this process goes away. */
            log_msg(LOG_ERROR, "writer", "write-back refused whatever it carries, retrying: %s", whole.msg);
            if (backoff_or_give_up(w, &backoff) || past_deadline(w)) {
                spill(w, bt->calls, bt->n);
                break;
            }
            continue;
        }
        log_msg(LOG_WARN, "writer", "write-back of %d calls refused, isolating the culprit: %s", bt->n, err.msg);
        Refused *bad = malloc((size_t)bt->n * sizeof *bad);
        int nbad = 0;
        if (!bad) {
            log_msg(LOG_ERROR, "writer", "out of memory isolating a refused write-back; left to lease expiry");
            break;
        }
        if (write_bisecting(w, bt->calls, bt->n, &err, bad, &nbad) == WRITE_OK)
            for (int i = 0; i < nbad; i++)
                quarantine(w, bad[i].call, &bad[i].why);
        else
            spill(w, bt->calls, bt->n);
        free(bad);
        break;
    }
    for (int i = 0; i < bt->n; i++) {
        Call *c = bt->calls[i];
        if (c->parked) {
            /* an intent: its call may now send the request it announced */
            if (w->opt.on_intent)
                w->opt.on_intent(w->opt.ud, c->parked);
            c->parked = NULL;
        }
        if (w->opt.on_call)
            w->opt.on_call(w->opt.ud, c);
        for (int j = 0; j < c->njobs; j++)
            /* a job moved to another call is still held; a shadow call's job was released before */
            if (c->jobs[j].job && c->jobs[j].outcome != CALL_JOB_SHADOW)
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
            bool intents = false;
            for (Call *c = pending; c && count < WRITER_MAX_BATCH; c = c->next) {
                count++;
                intents |= c->parked != NULL;
            }
            int64_t linger = intents ? WRITER_INTENT_LINGER_MS : WRITER_LINGER_MS;
            if (count < WRITER_MAX_BATCH && clock_mono_ms() - first_ms < linger && !stopping)
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
    zpack_thread_done(); /* the cache's compression context, kept per thread */
    return NULL;
}

int writer_start(Writer **out, const char *conninfo, const char *owner, Fifo *in, HeldSet *held, int notify_fd,
                 const WriterOptions *opt, TqErr *err)
{
    Writer *w = calloc(1, sizeof *w);
    if (!w)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    w->conninfo = strdup(conninfo ? conninfo : db_conninfo_from_env());
    w->owner = strdup(owner);
    w->in = in;
    w->held = held;
    w->notify_fd = notify_fd;
    if (opt)
        w->opt = *opt;
    w->spill_dir = opt && opt->spill_dir ? strdup(opt->spill_dir) : NULL;
    w->opt.spill_dir = NULL; /* the copy above is the one used */
    int rc = 0;
    if (!w->conninfo || !w->owner || (opt && opt->spill_dir && !w->spill_dir))
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
        free(w->spill_dir);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void writer_stop(Writer *w, WriterStats *final) { writer_stop_by(w, 0, final); }

void writer_stop_by(Writer *w, int64_t give_up_ms, WriterStats *final)
{
    if (!w)
        return;
    atomic_store(&w->give_up_ms, give_up_ms);
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    if (final)
        *final = w->stats;
    if (w->conn)
        PQfinish(w->conn);
    pthread_mutex_destroy(&w->mu);
    free(w->conninfo);
    free(w->owner);
    free(w->spill_dir);
    free(w);
}

void writer_get_stats(Writer *w, WriterStats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}
