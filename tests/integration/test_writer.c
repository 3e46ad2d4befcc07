/* The write-back path against a real PostgreSQL: a result for a lost lease changes nothing but is
 * still charged (money spent is money spent), a flush repeated after an unknown COMMIT outcome
 * (same call keys) inserts and charges nothing twice, and a call PostgreSQL refuses for its values
 * fails alone (unwritable_result) instead of stalling the writer with the healthy calls it came
 * with, while a statement refused whatever it carries (the schema) fails nobody. */
#include "testdb.h"

#include "call.h"
#include "config.h"
#include "held.h"
#include "queue.h"
#include "writer.h"

#include <math.h>
#include <unistd.h>

static TqConfig *cfg;

static QueueJob *claim_one(PGconn *c, const char *owner, int lease_s)
{
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    if (queue_claim(c, owner, NULL, 0, NULL, 1, lease_s, 0, &jobs, &n, &err) || n != 1) {
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

/* Claim n jobs (prompts p0..) for owner and make each a finished call answering answers[i]. */
static int claim_finished(PGconn *c, const char *owner, const char *const *answers, int n, Call **calls,
                          long long *ids)
{
    for (int i = 0; i < n; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', 'p%d') RETURNING id", i);
        ids[i] = testdb_scalar(c, sql);
    }
    for (int i = 0; i < n; i++) {
        QueueJob *j = claim_one(c, owner, 60);
        if (!j)
            return -1;
        int k = 0;
        while (k < n && ids[k] != j->id)
            k++;
        if (k == n) {
            job_free(j);
            return -1;
        }
        char key[64];
        snprintf(key, sizeof key, "test:%s:%d", owner, k);
        calls[k] = finished_call(j, key, 1000000 * (k + 1), answers[k]);
    }
    return 0;
}

static long long job_count(PGconn *c, long long id, const char *cond)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND %s", id, cond);
    return testdb_scalar(c, sql);
}

static void test_refused_result_fails_alone(void)
{
    PGconn *c = testdb_connect();
    /* a team's own trigger refusing some text: the values, not the statement, are at fault */
    CHECK_INT(testdb_exec(c,
                          "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$"
                          " BEGIN IF NEW.result = 'POISON' THEN RAISE EXCEPTION 'poisoned result refused'; END IF;"
                          " RETURN NEW; END $$;"
                          "CREATE TRIGGER refuse_poison BEFORE UPDATE ON tierq.jobs"
                          " FOR EACH ROW EXECUTE FUNCTION public.refuse_poison()",
                          NULL, 0),
              0);
    const char *answers[] = {"fine one", "POISON", "fine two", "fine three"};
    Call *calls[4] = {0};
    long long ids[4];
    CHECK_INT(claim_finished(c, "poison", answers, 4, calls, ids), 0);
    WriterStats st = {0};
    write_calls("poison", calls, 4, &st);
    CHECK_INT(st.jobs_done, 3);
    CHECK_INT(st.jobs_failed, 1);
    for (int i = 0; i < 4; i++)
        if (i != 1)
            CHECK_INT(job_count(c, ids[i], "state = 'done' AND result LIKE 'fine%' AND cost_usd > 0"), 1);
    CHECK_INT(job_count(c, ids[1], "state = 'failed' AND reason = 'unwritable_result' AND result IS NULL"
                                   " AND error LIKE '%poisoned result refused%' AND lease_owner IS NULL"),
              1);
    /* every paid exchange is in the ledger, the refused one included (only its text was at fault) */
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.calls WHERE call_key LIKE 'test:poison:%'"), 4);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM (SELECT (SELECT sum(cost_usd) FROM tierq.jobs) AS j,"
                               " (SELECT sum(cost_usd) FROM tierq.calls) AS k) x WHERE j = k"),
              1);
    testdb_exec(c, "DROP TRIGGER refuse_poison ON tierq.jobs; DROP FUNCTION public.refuse_poison();"
                   "DELETE FROM tierq.jobs; DELETE FROM tierq.calls",
                NULL, 0);
    PQfinish(c);
}

static void test_refused_ledger_row_is_dropped_and_job_fails(void)
{
    PGconn *c = testdb_connect();
    /* a row whose counters cannot absorb the call (a database where the bounds of 006 were dropped:
     * tokens near 2^63) overflows on every write that charges it */
    const char *answers[] = {"fine one", "fine two", "overflowing"};
    Call *calls[3] = {0};
    long long ids[3];
    CHECK_INT(claim_finished(c, "overflow", answers, 3, calls, ids), 0);
    char sql[512];
    snprintf(sql, sizeof sql,
             "ALTER TABLE tierq.jobs DROP CONSTRAINT jobs_tokens_range;"
             "UPDATE tierq.jobs SET tokens_in = 9223372036854775800 WHERE id = %lld",
             ids[2]);
    CHECK_INT(testdb_exec(c, sql, NULL, 0), 0);
    WriterStats st = {0};
    write_calls("overflow", calls, 3, &st);
    CHECK_INT(st.jobs_done, 2);
    CHECK_INT(st.jobs_failed, 1);
    CHECK_INT(job_count(c, ids[0], "state = 'done'"), 1);
    CHECK_INT(job_count(c, ids[1], "state = 'done'"), 1);
    CHECK_INT(job_count(c, ids[2], "state = 'failed' AND reason = 'unwritable_result' AND error LIKE '%out of range%'"), 1);
    /* the healthy calls' ledger rows are written; the refused one could not be (logged as lost) */
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.calls WHERE call_key IN ('test:overflow:0:1', 'test:overflow:1:1')"), 2);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.calls WHERE call_key = 'test:overflow:2:1'"), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    CHECK_INT(testdb_exec(c,
                          "ALTER TABLE tierq.jobs ADD CONSTRAINT jobs_tokens_range CHECK (tokens_in BETWEEN 0 AND"
                          " 1000000000000000 AND tokens_cached_in BETWEEN 0 AND 1000000000000000"
                          " AND tokens_out BETWEEN 0 AND 1000000000000000) NOT VALID",
                          NULL, 0),
              0);
    PQfinish(c);
}

static void test_statement_refused_whatever_it_carries_fails_nobody(void)
{
    PGconn *c = testdb_connect();
    const char *answers[] = {"kept one", "kept two"};
    Call *calls[2] = {0};
    long long ids[2];
    CHECK_INT(claim_finished(c, "schema", answers, 2, calls, ids), 0);
    /* a broken schema: every write-back fails, so no job is to blame and none is failed; the writer
     * waits (leases renewed) until the schema is back */
    CHECK_INT(testdb_exec(c, "ALTER TABLE tierq.calls RENAME COLUMN latency_ms TO latency_ms_away", NULL, 0), 0);
    Fifo *q = callq_new();
    HeldSet *held = held_new();
    Writer *w = NULL;
    TqErr err = {0};
    CHECK_INT(writer_start(&w, testdb_conninfo, "schema", q, held, -1, NULL, &err), 0);
    fifo_push(q, calls[0]);
    fifo_push(q, calls[1]);
    usleep(700 * 1000);
    CHECK_INT(job_count(c, ids[0], "state = 'running'"), 1);
    CHECK_INT(testdb_exec(c, "ALTER TABLE tierq.calls RENAME COLUMN latency_ms_away TO latency_ms", NULL, 0), 0);
    WriterStats st = {0};
    writer_stop(w, &st);
    held_free(held);
    fifo_free(q);
    CHECK(st.db_errors >= 1);
    CHECK_INT(st.jobs_done, 2);
    CHECK_INT(st.jobs_failed, 0);
    CHECK_INT(job_count(c, ids[0], "state = 'done' AND result = 'kept one'"), 1);
    CHECK_INT(job_count(c, ids[1], "state = 'done' AND result = 'kept two'"), 1);
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
    RUN(test_refused_result_fails_alone);
    RUN(test_refused_ledger_row_is_dropped_and_job_fails);
    RUN(test_statement_refused_whatever_it_carries_fails_nobody);
    config_free(cfg);
    return check_done();
}
