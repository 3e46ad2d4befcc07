#include "writer.h"

#include "db.h"
#include "log.h"
#include "pgarray.h"
#include "check.h"
#include "json.h"

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
    CallQueue *in;
    HeldSet *held;
    int notify_fd;
    PGconn *conn;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    WriterStats stats;
};

/* The whole flush is ONE statement, so it is atomic without BEGIN/COMMIT and costs one round trip:
 *   ins  inserts the ledger rows that are new (a flush retried after a lost connection finds its
 *        call keys present and inserts nothing: idempotent);
 *   ch   sums the per-job charges of the rows actually inserted;
 *   oc   the job outcomes (done, or failed with retry or not);
 *   then every touched job is updated once: charges always (money spent is money spent), the
 *   outcome only when the fence holds on the locked row itself (running, our lease, this attempt).
 * A fenced write stamps updated_at with the statement's now(); RETURNING compares it to tell
 * applied outcomes from lease_lost ones (PostgreSQL 15 has no OLD in RETURNING). */
#define FENCED "(oc.id IS NOT NULL AND j.state = 'running' AND j.lease_owner = $1 AND j.attempts = oc.att)"
#define RETRY_LATER "(NOT oc.done AND oc.retry AND j.attempts < j.max_attempts)"
static const char *const SQL_FLUSH =
    "WITH ins AS ("
    "  INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, worker, attempt,"
    "    tokens_in, tokens_cached_in, tokens_out, tokens_reasoning, usage_estimated, cost_usd, latency_ms,"
    "    http_status, status, reason, error, score, answer, solo_cost_usd, solo_tokens_in, missing_signals,"
    "    max_tokens, max_tokens_capped)"
    "  SELECT u.k, u.rn, string_to_array(u.ji, ',')::bigint[], u.kind, u.model, u.tier, u.purpose, $1, u.att,"
    "    u.ti, u.tc, u.tout, u.tr, u.est, u.cost, u.lat, u.http, u.st, u.reason, u.err, u.score, u.ans, u.solo, u.solo_tok,"
    "    u.miss, u.maxtok, u.capped"
    "  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::int[],"
    "    $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bool[], $14::numeric[], $15::int[],"
    "    $16::int[], $17::text[], $18::text[], $19::text[], $20::real[], $21::text[], $41::text[], $42::numeric[], $43::bigint[],"
    "    $44::text[], $45::int[], $46::bool[])"
    "    AS u(k, ji, kind, model, tier, purpose, att, ti, tc, tout, tr, est, cost, lat, http, st, reason, err, score, rn, ans,"
    "      solo, solo_tok, miss, maxtok, capped)"
    "  ON CONFLICT (call_key) DO NOTHING"
    "  RETURNING call_key),"
    " ch AS ("
    "  SELECT c.id, sum(c.cost) AS cost, sum(c.ti) AS ti, sum(c.tc) AS tc, sum(c.tout) AS tout"
    "  FROM unnest($22::text[], $23::bigint[], $24::numeric[], $25::bigint[], $26::bigint[], $27::bigint[])"
    "    AS c(k, id, cost, ti, tc, tout)"
    "  WHERE c.k IN (SELECT call_key FROM ins) GROUP BY c.id),"
    " oc AS ("
    "  SELECT * FROM unnest($28::bigint[], $29::int[], $30::bool[], $31::text[], $32::text[], $33::int[],"
    "    $34::real[], $35::int[], $36::text[], $37::numeric[], $38::text[], $39::bool[], $40::bigint[])"
    "    AS o(id, att, done, res, model, tier, q, esc, reason, base, err, retry, after_ms)),"
    " ids AS (SELECT id FROM ch UNION SELECT id FROM oc)"
    " UPDATE tierq.jobs j SET"
    "   cost_usd = j.cost_usd + coalesce(ch.cost, 0), tokens_in = j.tokens_in + coalesce(ch.ti, 0),"
    "   tokens_cached_in = j.tokens_cached_in + coalesce(ch.tc, 0), tokens_out = j.tokens_out + coalesce(ch.tout, 0),"
    "   state = CASE WHEN NOT " FENCED " THEN j.state WHEN oc.done THEN 'done' WHEN NOT oc.retry THEN 'failed'"
    "                WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,"
    "   result = CASE WHEN " FENCED " AND oc.done THEN oc.res ELSE j.result END,"
    "   model = CASE WHEN " FENCED " AND oc.done THEN oc.model ELSE j.model END,"
    "   tier = CASE WHEN " FENCED " AND oc.done THEN oc.tier ELSE j.tier END,"
    "   quality = CASE WHEN " FENCED " AND oc.done THEN oc.q ELSE j.quality END,"
    "   escalations = CASE WHEN " FENCED " AND oc.done THEN oc.esc ELSE j.escalations END,"
    "   baseline_cost_usd = CASE WHEN " FENCED " AND oc.done THEN oc.base ELSE j.baseline_cost_usd END,"
    "   reason = CASE WHEN " FENCED " THEN oc.reason ELSE j.reason END,"
    "   error = CASE WHEN " FENCED " THEN CASE WHEN oc.done THEN NULL ELSE oc.err END ELSE j.error END,"
    "   run_after = CASE WHEN " FENCED " AND " RETRY_LATER
    "               THEN now() + make_interval(secs => oc.after_ms / 1000.0) ELSE j.run_after END,"
    "   finished_at = CASE WHEN " FENCED " THEN CASE WHEN " RETRY_LATER " THEN NULL ELSE now() END"
    "                 ELSE j.finished_at END,"
    "   lease_owner = CASE WHEN " FENCED " THEN NULL ELSE j.lease_owner END,"
    "   lease_until = CASE WHEN " FENCED " THEN NULL ELSE j.lease_until END,"
    "   updated_at = CASE WHEN " FENCED " THEN now() ELSE j.updated_at END"
    " FROM ids LEFT JOIN ch ON ch.id = ids.id LEFT JOIN oc ON oc.id = ids.id"
    " WHERE j.id = ids.id"
    " RETURNING oc.id IS NOT NULL, j.updated_at = now(), j.state, oc.reason, oc.err";

enum {
    L_KEY, L_JOBS, L_KIND, L_MODEL, L_TIER, L_PURPOSE, L_ATT, L_TI, L_TC, L_TOUT, L_TR, L_EST, L_COST, L_LAT,
    L_HTTP, L_ST, L_REASON, L_ERR, L_SCORE, L_RUN, L_CKEY, L_CID, L_CCOST, L_CTI, L_CTC, L_CTOUT,
    O_ID, O_ATT, O_DONE, O_RES, O_MODEL, O_TIER, O_Q, O_ESC, O_REASON, O_BASE, O_ERR, O_RETRY, O_AFTER, L_ANSWER,
    L_SOLO, L_SOLO_TOK, L_MISSING, L_MAXTOK, L_CAPPED, L_N
};

typedef struct Batch {
    Call **calls;
    int n;
} Batch;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int add_usd(Buf *b, int64_t pico)
{
    char s[48];
    db_format_usd(s, sizeof s, pico);
    return pgarray_add_text(b, s);
}

static int add_missing(Buf *b, unsigned mask)
{
    if (!mask)
        return pgarray_add_null(b);
    char names[64];
    check_signal_names(mask, names, sizeof names);
    return pgarray_add_text(b, names);
}

/* Build every array of the flush statement. */
static int build_arrays(const Batch *bt, Buf *col, int *nrows, int *noutcomes)
{
    int rc = 0;
    *nrows = 0;
    *noutcomes = 0;
    for (int i = 0; i < L_N; i++)
        pgarray_begin(&col[i]);
    for (int ci = 0; ci < bt->n && !rc; ci++) {
        const Call *c = bt->calls[ci];
        for (int r = 0; r < c->nrows && !rc; r++) {
            const LedgerRow *row = &c->rows[r];
            (*nrows)++;
            rc = pgarray_add_text(&col[L_KEY], row->key) || pgarray_add_text(&col[L_JOBS], row->job_ids) ||
                 pgarray_add_text(&col[L_KIND], c->kind->name) ||
                 pgarray_add_text(&col[L_MODEL], c->cfg->models[row->model].name) ||
                 pgarray_add_int64(&col[L_TIER], row->tier + 1) || pgarray_add_text(&col[L_PURPOSE], row->purpose) ||
                 pgarray_add_text(&col[L_ANSWER], row->answer) ||
                 (row->solo_pico > 0 ? add_usd(&col[L_SOLO], row->solo_pico) : pgarray_add_null(&col[L_SOLO])) ||
                 (row->solo_pico > 0 ? pgarray_add_int64(&col[L_SOLO_TOK], row->solo_tokens_in)
                                     : pgarray_add_null(&col[L_SOLO_TOK])) ||
                 pgarray_add_int64(&col[L_ATT], row->attempt) ||
                 pgarray_add_int64(&col[L_TI], row->tokens_in) || pgarray_add_int64(&col[L_TC], row->tokens_cached) ||
                 pgarray_add_int64(&col[L_TOUT], row->tokens_out) ||
                 pgarray_add_int64(&col[L_TR], row->tokens_reasoning) || pgarray_add_bool(&col[L_EST], row->estimated) ||
                 add_usd(&col[L_COST], row->cost_pico) || pgarray_add_int64(&col[L_LAT], row->latency_ms) ||
                 pgarray_add_int64(&col[L_HTTP], row->http_status) ||
                 pgarray_add_text(&col[L_ST], row->status ? row->status : "ok") ||
                 pgarray_add_text(&col[L_REASON], row->reason) || pgarray_add_text(&col[L_ERR], row->error) ||
                 pgarray_add_double(&col[L_SCORE], row->score) || pgarray_add_text(&col[L_RUN], row->run_name) ||
                 add_missing(&col[L_MISSING], row->missing_signals) ||
                 (row->max_tokens > 0 ? pgarray_add_int64(&col[L_MAXTOK], row->max_tokens) : pgarray_add_null(&col[L_MAXTOK])) ||
                 pgarray_add_bool(&col[L_CAPPED], row->max_tokens_capped);
            for (int k = 0; k < row->ncharges && !rc; k++) {
                const LedgerCharge *ch = &row->charges[k];
                if (ch->cost_pico == 0 && ch->tokens_in == 0 && ch->tokens_out == 0)
                    continue;
                rc = pgarray_add_text(&col[L_CKEY], row->key) || pgarray_add_int64(&col[L_CID], ch->job_id) ||
                     add_usd(&col[L_CCOST], ch->cost_pico) || pgarray_add_int64(&col[L_CTI], ch->tokens_in) ||
                     pgarray_add_int64(&col[L_CTC], ch->tokens_cached) || pgarray_add_int64(&col[L_CTOUT], ch->tokens_out);
            }
        }
        for (int j = 0; j < c->njobs && !rc; j++) {
            const CallJob *cj = &c->jobs[j];
            if (cj->outcome == CALL_JOB_PENDING || !cj->job)
                continue;
            bool done = cj->outcome == CALL_JOB_DONE;
            (*noutcomes)++;
            rc = pgarray_add_int64(&col[O_ID], cj->job->id) || pgarray_add_int64(&col[O_ATT], cj->job->attempt) ||
                 pgarray_add_bool(&col[O_DONE], done) || pgarray_add_text(&col[O_RES], done ? cj->result : NULL) ||
                 pgarray_add_text(&col[O_MODEL], done ? c->cfg->models[cj->answer_model].name : NULL) ||
                 pgarray_add_int64(&col[O_TIER], cj->answer_tier + 1) || pgarray_add_double(&col[O_Q], cj->quality) ||
                 pgarray_add_int64(&col[O_ESC], cj->escalations) || pgarray_add_text(&col[O_REASON], cj->reason) ||
                 add_usd(&col[O_BASE], cj->baseline_pico) || pgarray_add_text(&col[O_ERR], cj->error) ||
                 pgarray_add_bool(&col[O_RETRY], cj->retryable) ||
                 pgarray_add_int64(&col[O_AFTER], cj->retry_after_ms > 0 ? cj->retry_after_ms : 0);
        }
    }
    for (int i = 0; i < L_N && !rc; i++)
        rc = pgarray_end(&col[i]);
    return rc;
}

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

/* One attempt at writing the batch: one statement. Fills delta only on success. */
static int flush_once(Writer *w, const Batch *bt, WriterStats *delta, TqErr *err)
{
    Buf col[L_N];
    int nrows = 0, noutcomes = 0;
    int rc = build_arrays(bt, col, &nrows, &noutcomes);
    if (rc) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory building the write-back");
        goto cleanup;
    }
    const char *p[L_N + 1];
    p[0] = w->owner;
    for (int i = 0; i < L_N; i++)
        p[1 + i] = col[i].data;
    PGresult *r = db_query(w->conn, "write back", SQL_FLUSH, L_N + 1, p, err);
    if (!r) {
        rc = TQ_EDB;
        goto cleanup;
    }
    int64_t done = 0, retry = 0, failed = 0, applied = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetvalue(r, i, 0)[0] != 't' || PQgetvalue(r, i, 1)[0] != 't')
            continue;
        applied++;
        const char *st = PQgetvalue(r, i, 2);
        if (strcmp(st, "done") == 0) {
            done++;
            continue;
        }
        if (strcmp(st, "queued") == 0)
            retry++;
        else
            failed++;
        writer_tally_failure(delta, PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
    }
    PQclear(r);
    int64_t cost = 0, baseline = 0;
    for (int ci = 0; ci < bt->n; ci++) {
        const Call *c = bt->calls[ci];
        for (int k = 0; k < c->nrows; k++)
            cost += c->rows[k].cost_pico;
        for (int j = 0; j < c->njobs; j++)
            if (c->jobs[j].outcome == CALL_JOB_DONE)
                baseline += c->jobs[j].baseline_pico;
    }
    delta->calls = nrows;
    delta->jobs_done = done;
    delta->jobs_retry = retry;
    delta->jobs_failed = failed;
    delta->lease_lost = noutcomes - applied;
    delta->cost_pico = cost;
    delta->baseline_pico = baseline;
    delta->statements = 1;
cleanup:
    for (int i = 0; i < L_N; i++)
        buf_free(&col[i]);
    return rc;
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
        int64_t t0 = mono_ms();
        if (w->conn && flush_once(w, bt, &d, &err) == 0) {
            log_msg(LOG_DEBUG, "writer", "flushed calls=%d ms=%lld", bt->n, (long long)(mono_ms() - t0));
            pthread_mutex_lock(&w->mu);
            for (int k = 0; k < d.nfailures; k++)
                for (int64_t m = 0; m < d.failures[k].count; m++)
                    writer_tally_failure(&w->stats, d.failures[k].reason, d.failures[k].sample);
            w->stats.calls += d.calls;
            w->stats.jobs_done += d.jobs_done;
            w->stats.jobs_failed += d.jobs_failed;
            w->stats.jobs_retry += d.jobs_retry;
            w->stats.lease_lost += d.lease_lost;
            w->stats.cost_pico += d.cost_pico;
            w->stats.baseline_pico += d.baseline_pico;
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
        Call *list = callq_take_all(w->in, pending ? 2 : 50, &n);
        if (list) {
            if (!pending)
                first_ms = mono_ms();
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
            if (count < WRITER_MAX_BATCH && mono_ms() - first_ms < WRITER_LINGER_MS && !stopping)
                break;
            while (pending && bt.n < WRITER_MAX_BATCH) {
                bt.calls[bt.n++] = pending;
                pending = pending->next;
            }
            if (!pending)
                pending_tail = NULL;
            flush(w, &bt);
            first_ms = mono_ms();
        }
        if (stopping && !pending && callq_length(w->in) == 0)
            break;
    }
    free(bt.calls);
    return NULL;
}

int writer_start(Writer **out, const char *conninfo, const char *owner, CallQueue *in,
                 HeldSet *held, int notify_fd, TqErr *err)
{
    Writer *w = calloc(1, sizeof *w);
    if (!w)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    w->conninfo = strdup(conninfo ? conninfo : db_conninfo_from_env());
    w->owner = strdup(owner);
    w->in = in;
    w->held = held;
    w->notify_fd = notify_fd;
    pthread_mutex_init(&w->mu, NULL);
    int rc = db_connect(w->conninfo, &w->conn, err);
    if (rc) {
        free(w->conninfo);
        free(w->owner);
        free(w);
        return rc;
    }
    pthread_create(&w->thread, NULL, writer_main, w);
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
