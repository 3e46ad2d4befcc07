/* The write-back path against a real PostgreSQL: a result for a lost lease changes nothing but is
 * still charged (money spent is money spent), and a flush repeated after an unknown COMMIT outcome
 * (same call keys) inserts and charges nothing twice. */
#include "testdb.h"

#include "call.h"
#include "config.h"
#include "held.h"
#include "queue.h"
#include "writer.h"

#include <math.h>

static TqConfig *cfg;

static QueueJob *claim_one(PGconn *c, const char *owner, int lease_s)
{
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    if (queue_claim(c, owner, NULL, 0, NULL, 1, lease_s, &jobs, &n, &err) || n != 1) {
        if (err.msg[0])
            printf("# claim: %s\n", err.msg);
        free(jobs);
        return NULL;
    }
    QueueJob *j = jobs[0];
    free(jobs);
    return j;
}

/* A finished call for job with one ledger row costing cost_pico, keyed key. */
static Call *finished_call(QueueJob *job, const char *key, int64_t cost_pico, const char *result)
{
    const TqKind *kind = config_kind(cfg, job->kind);
    Call *c = call_new_for_job(cfg, kind, job);
    LedgerRow *row = call_add_row(c, key, 1);
    row->status = "ok";
    row->reason = "answered";
    row->tokens_in = 100;
    row->tokens_out = 10;
    row->cost_pico = cost_pico;
    row->charges = calloc(1, sizeof *row->charges);
    row->ncharges = 1;
    row->charges[0] = (LedgerCharge){job->id, cost_pico, 100, 0, 10};
    CallJob *cj = &c->jobs[0];
    cj->outcome = CALL_JOB_DONE;
    cj->result = strdup(result);
    cj->reason = "accepted";
    cj->quality = 0.9;
    cj->answer_model = c->model;
    return c;
}

static void write_calls(const char *owner, Call **calls, int n, WriterStats *st)
{
    Fifo *q = callq_new();
    HeldSet *held = held_new();
    Writer *w = NULL;
    TqErr err = {0};
    CHECK_INT(writer_start(&w, testdb_conninfo, owner, q, held, -1, NULL, &err), 0);
    for (int i = 0; i < n; i++)
        fifo_push(q, calls[i]);
    writer_stop(w, st);
    held_free(held);
    fifo_free(q);
}

static void test_stale_result_changes_nothing_but_is_charged(void)
{
    PGconn *c = testdb_connect();
    long long id = testdb_scalar(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', 'fenced') RETURNING id");
    QueueJob *stale = claim_one(c, "stalled", 0);
    TqErr err = {0};
    CHECK_INT(queue_requeue_expired(c, 10, NULL, NULL, &err), 0);
    QueueJob *fresh = claim_one(c, "fresh", 60);
    CHECK(stale && fresh && stale->id == id && fresh->attempt == 2);
    if (!stale || !fresh)
        return;
    Call *call = finished_call(stale, "test:stale", 1000000, "stale answer");
    WriterStats st = {0};
    write_calls("stalled", &call, 1, &st);
    CHECK_INT(st.lease_lost, 1);
    CHECK_INT(st.jobs_done, 0);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'running' AND lease_owner = 'fresh'"
             " AND result IS NULL AND cost_usd = 0.000001", id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.calls WHERE call_key = 'test:stale:1' AND cost_usd = 0.000001"), 1);
    /* the holder's result goes through */
    Call *good = finished_call(fresh, "test:fresh", 2000000, "fresh answer");
    write_calls("fresh", &good, 1, &st);
    CHECK_INT(st.jobs_done, 1);
    CHECK_INT(st.lease_lost, 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'done' AND result = 'fresh answer'"
             " AND cost_usd = 0.000003 AND lease_owner IS NULL", id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
}

static void test_repeated_flush_is_idempotent(void)
{
    PGconn *c = testdb_connect();
    long long id = testdb_scalar(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', 'twice') RETURNING id");
    QueueJob *j1 = claim_one(c, "w", 60);
    CHECK(j1 != NULL);
    if (!j1)
        return;
    /* the same call written twice (as after a lost connection whose COMMIT went through) */
    QueueJob *copy = malloc(sizeof *copy);
    *copy = *j1; /* strings point into j1's block; the copy is freed alone below */
    Call *a = finished_call(j1, "test:once", 5000000, "answer");
    WriterStats st = {0};
    write_calls("w", &a, 1, &st);
    CHECK_INT(st.jobs_done, 1);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'done' AND cost_usd = 0.000005", id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    /* replay: a fresh job block with the same id and attempt, same ledger key */
    QueueJob *j2 = claim_one(c, "w", 60); /* nothing to claim: the job is done */
    CHECK(j2 == NULL);
    free(copy);
    testdb_exec(c, "UPDATE tierq.jobs SET state = 'running', lease_owner = 'w', lease_until = now() + interval '1 minute'", NULL, 0);
    QueueJob *again = NULL;
    {
        /* rebuild a QueueJob for the same attempt through a claim of a twin row, then retarget it */
        long long twin = testdb_scalar(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', 'twin') RETURNING id");
        again = claim_one(c, "w", 60);
        CHECK(again && again->id == twin);
        if (again) {
            again->id = id;
            again->attempt = 1;
        }
        snprintf(sql, sizeof sql, "DELETE FROM tierq.jobs WHERE id = %lld", twin);
        testdb_exec(c, sql, NULL, 0);
    }
    if (!again)
        return;
    Call *b = finished_call(again, "test:once", 5000000, "answer replayed");
    write_calls("w", &b, 1, &st);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.calls WHERE call_key = 'test:once:1'"), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND cost_usd = 0.000005", id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM (SELECT (SELECT sum(cost_usd) FROM tierq.jobs) AS j,"
                               " (SELECT sum(cost_usd) FROM tierq.calls) AS k) x WHERE j = k"), 1);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
}

int main(void)
{
    TqErr err = {0};
    if (config_load(getenv("TIERQ_JOBS_DIR") ? getenv("TIERQ_JOBS_DIR") : "jobs", &cfg, &err)) {
        printf("# %s\n", err.msg);
        return 1;
    }
    testdb_setup("tq_writer", 1);
    RUN(test_stale_result_changes_nothing_but_is_charged);
    RUN(test_repeated_flush_is_idempotent);
    config_free(cfg);
    return check_done();
}
