/* Queue core against a real PostgreSQL: migrations, INSERT-time validation, concurrent claims,
 * leases, fencing, retries, hand-back and NOTIFY wake-ups. */
#include "testdb.h"

#include "queue.h"
#include "waker.h"
#include "migrations.h"

#include <pthread.h>
#include <time.h>

static TqConfig *test_cfg; /* jobs/, for the calls the write-back tests build */

static void test_migrate_twice_and_concurrently(void)
{
    testdb_setup("tq_migrate", 0);
    char out[2048];
    CHECK_INT(testdb_run("migrate", out, sizeof out), 0);
    CHECK_INT(testdb_run("migrate", out, sizeof out), 0);
    CHECKF(strstr(out, "0 migration(s) applied") != NULL, "second migrate said: %s", out);
    /* Two migrators at once on a fresh database: the advisory lock serialises them. */
    testdb_setup("tq_migrate2", 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "export TIERQ_DATABASE_URL='%s'; ('%s' migrate >/dev/null 2>&1; echo $? > /tmp/tq_m1.$$) & "
             "('%s' migrate >/dev/null 2>&1; echo $? > /tmp/tq_m2.$$) & wait; "
             "cat /tmp/tq_m1.$$ /tmp/tq_m2.$$ | tr -d '\\n'; rm -f /tmp/tq_m1.$$ /tmp/tq_m2.$$",
             testdb_conninfo, getenv("TIERQ_BIN"), getenv("TIERQ_BIN"));
    FILE *p = popen(cmd, "r");
    char st[16] = {0};
    CHECK(p && fgets(st, sizeof st, p) != NULL);
    if (p)
        pclose(p);
    CHECK_STR(st, "00");
    PGconn *c = testdb_connect();
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.schema_migrations"), tq_migration_count);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tierq'"), 1);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'tierq'"), 15); /* 8 + 013's four (schedules, fires, rows, run budgets) + 014's two daily totals + 016's tier_shifts */
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM pg_trigger WHERE tgname = 'jobs_notify_insert'"), 1);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.kinds WHERE in_config"), 8);
    PQfinish(c);
}

static void test_bad_inserts_are_refused_with_a_named_reason(void)
{
    PGconn *c = testdb_connect();
    char err[1024];
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('no_such_kind', 'hi')", err, sizeof err) != 0);
    CHECKF(strstr(err, "no_such_kind") && strstr(err, "kinds"), "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', '')", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_prompt_not_empty") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', NULL)", err, sizeof err) != 0);
    CHECKF(strstr(err, "prompt") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('chat', 'x', '[1,2]')", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_params_must_be_a_json_object") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('chat', 'x', '\"s\"')", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_params_must_be_a_json_object") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('chat', 'x', '{\"max_tokens\": -5}')", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_params_max_tokens_positive_integer") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('classify', 'x', '{\"labels\": [1]}')", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_params_labels_array_of_strings") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, max_attempts) VALUES ('chat', 'x', 0)", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_max_attempts_range") != NULL, "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('chat', 'x', '{not json')", err, sizeof err) != 0);
    CHECKF(strstr(err, "json") != NULL, "got: %s", err);
    /* nothing half-inserted; and a good row goes in */
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs"), 0);
    CHECK_INT(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('classify', 'hello', '{\"max_tokens\": 10, \"labels\": [\"a\"]}')", err, sizeof err), 0);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'queued' AND attempts = 0"), 1);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    /* a parameter the kind does not read is refused, not ignored: the message names it and what the
     * kind reads */
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('chat', 'x', '{\"labels\": [\"a\"]}')", err, sizeof err) != 0);
    CHECKF(strstr(err, "params.labels is not a parameter of kind chat") && strstr(err, "max_tokens, model, temperature"), "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('translate', 'x', '{\"target_lang\": \"fr\"}')", err, sizeof err) != 0);
    CHECKF(strstr(err, "params.target_lang is not a parameter of kind translate") && strstr(err, "target_language"), "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('translate', 'x', '{\"target_language\": 7}')", err, sizeof err) != 0);
    CHECKF(strstr(err, "must be a non-empty string"), "got: %s", err);
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('translate', 'x', '{\"target_language\": \" \"}')", err, sizeof err) != 0);
    CHECKF(strstr(err, "must be a non-empty string"), "got: %s", err);
    CHECK(testdb_exec(c, "UPDATE tierq.jobs SET params = '{\"color\": \"red\"}'", err, sizeof err) == 0);
    CHECK_INT(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('translate', 'bonjour', '{\"target_language\": \"German\"}')", err, sizeof err), 0);
    CHECK(testdb_exec(c, "UPDATE tierq.jobs SET params = '{\"color\": \"red\"}'", err, sizeof err) != 0);
    CHECKF(strstr(err, "jobs_params_known_to_kind") || strstr(err, "params.color"), "got: %s", err);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs"), 1);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

/* Producers cannot set what only tierq writes, and hostile values are refused at INSERT. */
static void test_hostile_rows_are_refused(void)
{
    PGconn *c = testdb_connect();
    char err[1024];
    static const struct {
        const char *sql, *constraint;
    } rows[] = {
        {"INSERT INTO tierq.jobs (kind, prompt, attempts) VALUES ('chat', 'x', 2147483647)", "jobs_attempts_range"},
        {"INSERT INTO tierq.jobs (kind, prompt, cost_usd) VALUES ('chat', 'x', 99999999)", "jobs_cost_range"},
        {"INSERT INTO tierq.jobs (kind, prompt, baseline_cost_usd) VALUES ('chat', 'x', -1)", "jobs_cost_range"},
        {"INSERT INTO tierq.jobs (kind, prompt, tokens_in) VALUES ('chat', 'x', 9000000000000000000)", "jobs_tokens_range"},
        {"INSERT INTO tierq.jobs (kind, prompt, max_budget_usd) VALUES ('chat', 'x', 50000000)", "jobs_max_budget_at_most_a_million"},
        {"INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', repeat('x', 1048577))", "jobs_prompt_size"},
        {"INSERT INTO tierq.jobs (kind, prompt, context) VALUES ('chat', 'x', repeat('x', 4194305))", "jobs_context_size"},
        {"INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('classify', 'x', jsonb_build_object('labels',"
         " (SELECT jsonb_agg(repeat('l', 100) || g) FROM generate_series(1, 1000) g)))", "jobs_params_size"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK(testdb_exec(c, rows[i].sql, err, sizeof err) != 0);
        CHECKF(strstr(err, rows[i].constraint) != NULL, "%s: got %s", rows[i].constraint, err);
    }
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs"), 0);
    /* the shipped producer role may enqueue and read, nothing else */
    testdb_exec(c, "DROP ROLE IF EXISTS tq_producer_login; CREATE ROLE tq_producer_login LOGIN IN ROLE tierq_producer", NULL, 0);
    char conninfo[1200];
    snprintf(conninfo, sizeof conninfo, "%s user=tq_producer_login", testdb_conninfo);
    PGconn *p = PQconnectdb(conninfo);
    CHECKF(PQstatus(p) == CONNECTION_OK, "%s", PQerrorMessage(p));
    CHECK_INT(testdb_exec(p, "INSERT INTO tierq.jobs (kind, prompt, params, run_name, priority) VALUES"
                             " ('classify', 'a ticket', '{\"labels\": [\"bug\"]}', 'producer', 5)", err, sizeof err), 0);
    CHECKF(err[0] == 0 || strstr(err, "ERROR") == NULL, "%s", err);
    static const char *const forbidden[] = {
        "INSERT INTO tierq.jobs (kind, prompt, state) VALUES ('chat', 'x', 'done')",
        "INSERT INTO tierq.jobs (kind, prompt, cost_usd) VALUES ('chat', 'x', 0)",
        "INSERT INTO tierq.jobs (kind, prompt, baseline_cost_usd) VALUES ('chat', 'x', 5)",
        "INSERT INTO tierq.jobs (id, kind, prompt) VALUES (424242, 'chat', 'x')",
        "INSERT INTO tierq.jobs (kind, prompt, result) VALUES ('chat', 'x', 'faked')",
        "UPDATE tierq.jobs SET result = 'faked'",
        "DELETE FROM tierq.jobs",
        "INSERT INTO tierq.calls (call_key, job_ids, kind, model, status, cost_usd) VALUES ('k', '{1}', 'chat', 'm', 'ok', 1)",
    };
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
        CHECK(testdb_exec(p, forbidden[i], err, sizeof err) != 0);
        CHECKF(strstr(err, "permission denied") != NULL, "%s: got %s", forbidden[i], err);
    }
    CHECK_INT(testdb_scalar(p, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'producer' AND state = 'queued'"), 1);
    PQfinish(p);
    CHECK(testdb_scalar(c, "SELECT count(*) FROM pg_roles WHERE rolname IN ('tierq_producer', 'tierq_daemon')"
                           " AND NOT rolsuper AND NOT rolcanlogin") == 2);
    testdb_exec(c, "DELETE FROM tierq.jobs; DROP ROLE tq_producer_login", NULL, 0);
    PQfinish(c);
}

/* Rows from before those bounds (or put in by a superuser) that break them: claiming goes on for
 * everyone else, and never throws on them. */
/* Rows from before the bounds of sql/006: drop the bounds, write, add them back NOT VALID. */
#define DROP_BOUNDS                                                                                   \
    "ALTER TABLE tierq.jobs DROP CONSTRAINT jobs_attempts_range, DROP CONSTRAINT jobs_cost_range,"    \
    " DROP CONSTRAINT jobs_tokens_range, DROP CONSTRAINT jobs_max_budget_at_most_a_million"
#define ADD_BOUNDS_NOT_VALID                                                                          \
    "ALTER TABLE tierq.jobs"                                                                          \
    " ADD CONSTRAINT jobs_attempts_range CHECK (attempts BETWEEN 0 AND 1000) NOT VALID,"              \
    " ADD CONSTRAINT jobs_cost_range CHECK (cost_usd BETWEEN 0 AND 10000000"                          \
    " AND baseline_cost_usd BETWEEN 0 AND 10000000) NOT VALID,"                                       \
    " ADD CONSTRAINT jobs_tokens_range CHECK (tokens_in BETWEEN 0 AND 1000000000000000"               \
    " AND tokens_cached_in BETWEEN 0 AND 1000000000000000 AND tokens_out BETWEEN 0 AND 1000000000000000) NOT VALID," \
    " ADD CONSTRAINT jobs_max_budget_at_most_a_million CHECK (max_budget_usd <= 1000000) NOT VALID"

static void test_claim_survives_hostile_rows(void)
{
    PGconn *c = testdb_connect();
    CHECK_INT(testdb_exec(c, DROP_BOUNDS, NULL, 0), 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, attempts, max_attempts, priority) VALUES ('chat', 'hostile 1', 2147483647, 100, 1000);"
                   " INSERT INTO tierq.jobs (kind, prompt, cost_usd, priority) VALUES ('chat', 'hostile 2', 99999999, 1000);"
                   " INSERT INTO tierq.jobs (kind, prompt, tokens_in, priority) VALUES ('chat', 'hostile 3', 9223372036854775807, 1000);"
                   " INSERT INTO tierq.jobs (kind, prompt, max_budget_usd, priority) VALUES ('chat', 'hostile 4', 99999999, 1000);"
                   " INSERT INTO tierq.jobs (kind, prompt) SELECT 'chat', 'healthy ' || g FROM generate_series(1, 5) g",
                NULL, 0);
    CHECK_INT(testdb_exec(c, ADD_BOUNDS_NOT_VALID, NULL, 0), 0);
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    /* the hostile rows come first in claim order (priority 1000), yet the claim does not throw */
    CHECKF(queue_claim(c, "w", NULL, 0, NULL, 100, 60, 0, &jobs, &n, &err) == 0, "%s", err.msg);
    int healthy = 0;
    for (int i = 0; i < n; i++) {
        healthy += strncmp(jobs[i]->prompt, "healthy", 7) == 0;
        /* a budget beyond the bound is read as the bound, never as an overflow */
        CHECK(jobs[i]->max_budget_micro >= 0 && jobs[i]->max_budget_micro <= 1000000000000LL);
        job_free(jobs[i]);
    }
    free(jobs);
    CHECK_INT(healthy, 5);
    CHECK_INT(n, 5);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs WHERE prompt LIKE 'hostile%' AND state = 'queued'"), 4);
    /* the statements that update many rows at once pass over them too: with every row running on an
     * expired lease, lease expiry requeues the healthy ones and hand-back does not throw */
    CHECK_INT(testdb_exec(c, DROP_BOUNDS, NULL, 0), 0);
    CHECK_INT(testdb_exec(c, "UPDATE tierq.jobs SET state = 'running', lease_owner = 'w',"
                             " lease_until = now() - interval '1 second' WHERE prompt LIKE 'hostile%'",
                          NULL, 0),
              0);
    CHECK_INT(testdb_exec(c, ADD_BOUNDS_NOT_VALID, NULL, 0), 0);
    int requeued = -1, dead = -1, handed = -1;
    CHECKF(queue_requeue_expired(c, 100, &requeued, &dead, &err) == 0, "%s", err.msg);
    CHECK_INT(requeued + dead, 0); /* the healthy ones are held on a live lease */
    testdb_exec(c, "UPDATE tierq.jobs SET lease_until = now() - interval '1 second' WHERE prompt LIKE 'healthy%'", NULL, 0);
    CHECKF(queue_requeue_expired(c, 100, &requeued, &dead, &err) == 0, "%s", err.msg);
    CHECK_INT(requeued, 5);
    testdb_exec(c, "UPDATE tierq.jobs SET state = 'running', lease_owner = 'w', lease_until = now() + interval '1 minute'"
                   " WHERE prompt LIKE 'healthy%'",
                NULL, 0);
    CHECKF(queue_hand_back(c, "w", NULL, 0, &handed, &err) == 0, "%s", err.msg);
    CHECK_INT(handed, 5);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

/* A claim takes jobs up to a bound on their input bytes, and always the first one. */
static void test_claim_is_bounded_by_bytes(void)
{
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) SELECT 'chat', repeat('x', 100000) FROM generate_series(1, 10)",
                NULL, 0);
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    CHECK_INT(queue_claim(c, "w", NULL, 0, NULL, 10, 60, 350000, &jobs, &n, &err), 0);
    CHECK_INT(n, 3);
    for (int i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    /* a bound smaller than one job still claims that job */
    CHECK_INT(queue_claim(c, "w", NULL, 0, NULL, 10, 60, 1, &jobs, &n, &err), 0);
    CHECK_INT(n, 1);
    for (int i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    /* no bound: the count alone */
    CHECK_INT(queue_claim(c, "w", NULL, 0, NULL, 10, 60, 0, &jobs, &n, &err), 0);
    CHECK_INT(n, 6);
    for (int i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'running'"), 10);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

#define RACE_JOBS 10000
#define RACERS 4

typedef struct Racer {
    int64_t *ids;
    int n;
    int errors;
} Racer;

static void *race(void *arg)
{
    Racer *r = arg;
    PGconn *c = testdb_connect();
    char owner[64];
    snprintf(owner, sizeof owner, "racer-%p", (void *)r);
    for (;;) {
        QueueJob **jobs = NULL;
        int n = 0;
        TqErr err = {0};
        if (queue_claim(c, owner, NULL, 0, NULL, 37, 300, 0, &jobs, &n, &err)) {
            r->errors++;
            printf("# claim error: %s\n", err.msg);
            break;
        }
        for (int i = 0; i < n; i++) {
            r->ids[r->n++] = jobs[i]->id;
            job_free(jobs[i]);
        }
        free(jobs);
        if (n == 0)
            break;
    }
    PQfinish(c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_four_claimers_claim_each_job_exactly_once(void)
{
    PGconn *c = testdb_connect();
    CHECK_INT(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) SELECT 'simple', 'q' || g FROM generate_series(1, 10000) g", NULL, 0), 0);
    Racer rs[RACERS];
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        rs[i].ids = malloc(RACE_JOBS * sizeof(int64_t));
        rs[i].n = 0;
        rs[i].errors = 0;
        pthread_create(&th[i], NULL, race, &rs[i]);
    }
    int64_t *all = malloc(RACE_JOBS * RACERS * sizeof(int64_t));
    int total = 0, errors = 0, racers_with_work = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        memcpy(all + total, rs[i].ids, (size_t)rs[i].n * sizeof(int64_t));
        total += rs[i].n;
        errors += rs[i].errors;
        racers_with_work += rs[i].n > 0;
        free(rs[i].ids);
    }
    qsort(all, (size_t)total, sizeof *all, cmp_i64);
    int dups = 0;
    for (int i = 1; i < total; i++)
        dups += all[i] == all[i - 1];
    CHECK_INT(errors, 0);
    CHECK_INT(total, RACE_JOBS);
    CHECK_INT(dups, 0);
    CHECKF(racers_with_work >= 2, "only %d claimers got work", racers_with_work);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'running' AND attempts = 1"), RACE_JOBS);
    free(all);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

static int64_t insert_one(PGconn *c, const char *extra_cols, const char *extra_vals)
{
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO tierq.jobs (kind, prompt%s) VALUES ('chat', 'lease test'%s) RETURNING id",
             extra_cols, extra_vals);
    return testdb_scalar(c, sql);
}

static int claim_one(PGconn *c, const char *owner, int lease_s, QueueJob **out)
{
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    if (queue_claim(c, owner, NULL, 0, NULL, 1, lease_s, 0, &jobs, &n, &err)) {
        printf("# claim: %s\n", err.msg);
        return -1;
    }
    if (n == 1)
        *out = jobs[0];
    free(jobs);
    return n;
}

static void test_expired_lease_requeues_then_dead_keeps_error(void)
{
    PGconn *c = testdb_connect();
    int64_t id = insert_one(c, ", max_attempts", ", 2");
    QueueJob *j = NULL;
    CHECK_INT(claim_one(c, "w1", 0, &j), 1); /* a lease of 0 s has expired by the next statement */
    CHECK_INT(j ? j->attempt : -1, 1);
    /* the first attempt also failed in a retryable way once, so there is an earlier error to keep */
    job_free(j);
    int requeued = -1, dead = -1;
    TqErr err = {0};
    CHECK_INT(queue_requeue_expired(c, 100, &requeued, &dead, &err), 0);
    CHECK_INT(requeued, 1);
    CHECK_INT(dead, 0);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT attempts FROM tierq.jobs WHERE id = %lld AND state = 'queued' AND reason = 'lease_expired'", (long long)id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    j = NULL;
    CHECK_INT(claim_one(c, "w2", 0, &j), 1);
    CHECK_INT(j ? j->attempt : -1, 2);
    job_free(j);
    CHECK_INT(queue_requeue_expired(c, 100, &requeued, &dead, &err), 0);
    CHECK_INT(requeued, 0);
    CHECK_INT(dead, 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'dead' AND attempts = 2"
             " AND error LIKE 'lease_expired: attempt 2 held by w2%%' AND finished_at IS NOT NULL", (long long)id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    /* nothing is deleted and a dead job is never claimed again */
    CHECK_INT(claim_one(c, "w3", 30, &j), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

/* A call carrying one outcome for job (the call owns the job from here). */
static Call *outcome_call(QueueJob *job, bool done, const char *text, const char *reason, bool retryable,
                          int64_t after_ms)
{
    const TqKind *kind = config_kind(test_cfg, job->kind);
    Call *call = kind ? call_new_for_job(test_cfg, kind, job) : NULL;
    if (!call)
        return NULL;
    CallJob *cj = &call->jobs[0];
    cj->outcome = done ? CALL_JOB_DONE : CALL_JOB_FAIL;
    cj->reason = reason;
    cj->retryable = retryable;
    cj->retry_after_ms = after_ms;
    if (done) {
        cj->result = strdup(text);
        cj->quality = 0.9;
        cj->answer_model = config_model_index(test_cfg, "qwen3-8b");
        cj->baseline_pico = 1234567;
    } else {
        cj->error = strdup(text);
    }
    return call;
}

/* The fence, through the write-back `tierq run` uses: a write for a lost lease changes nothing. */
static void test_stale_completion_after_lease_loss_changes_nothing(void)
{
    PGconn *c = testdb_connect();
    int64_t id = insert_one(c, "", "");
    QueueJob *a = NULL, *b = NULL;
    CHECK_INT(claim_one(c, "stalled", 0, &a), 1);
    TqErr err = {0};
    CHECK_INT(queue_requeue_expired(c, 100, NULL, NULL, &err), 0);
    CHECK_INT(claim_one(c, "fresh", 60, &b), 1);
    CHECK(a && b && a->id == id && b->id == id && b->attempt == a->attempt + 1);
    if (!a || !b)
        return;
    /* the stalled process's completion for its old attempt is fenced out ... */
    Call *stale = outcome_call(a, true, "stale answer", "accepted", false, 0);
    QueueWriteBack wb = {0};
    CHECK_INT(queue_write_back(c, "stalled", &stale, 1, &wb, &err), 0);
    CHECK_INT(wb.done + wb.failed + wb.retry, 0);
    CHECK_INT(wb.lease_lost, 1);
    /* ... and so is a failure for it */
    if (stale) {
        stale->jobs[0].outcome = CALL_JOB_FAIL;
        stale->jobs[0].reason = "http_500";
        stale->jobs[0].error = strdup("boom");
    }
    memset(&wb, 0, sizeof wb);
    CHECK_INT(queue_write_back(c, "stalled", &stale, 1, &wb, &err), 0);
    CHECK_INT(wb.lease_lost, 1);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'running' AND lease_owner = 'fresh' AND result IS NULL", (long long)id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    /* the holder's completion goes through */
    Call *good = outcome_call(b, true, "fresh answer", "accepted", false, 0);
    memset(&wb, 0, sizeof wb);
    CHECK_INT(queue_write_back(c, "fresh", &good, 1, &wb, &err), 0);
    CHECK_INT(wb.done, 1);
    CHECK_INT(wb.lease_lost, 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'done' AND result = 'fresh answer'"
             " AND lease_owner IS NULL AND baseline_cost_usd = 0.000001234567 AND model = 'qwen3-8b'", (long long)id);
    CHECK_INT(testdb_scalar(c, sql), 1);
    call_free(stale);
    call_free(good);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

static void failure_tally(void *ud, const char *reason, const char *error)
{
    (void)error;
    strcat((char *)ud, reason);
    strcat((char *)ud, ";");
}

static void test_fail_retry_backoff_and_final_failure(void)
{
    PGconn *c = testdb_connect();
    int64_t id1 = insert_one(c, "", "");
    int64_t id2 = insert_one(c, "", "");
    QueueJob **jobs = NULL;
    int n = 0;
    TqErr err = {0};
    CHECK_INT(queue_claim(c, "w", NULL, 0, NULL, 10, 60, 0, &jobs, &n, &err), 0);
    CHECK_INT(n, 2);
    if (n != 2)
        return;
    QueueJob *j1 = jobs[0]->id == id1 ? jobs[0] : jobs[1], *j2 = jobs[0]->id == id1 ? jobs[1] : jobs[0];
    Call *calls[2] = {outcome_call(j1, false, "provider said 503", "http_503", true, 60000),
                      outcome_call(j2, false, "invalid_request_error: bad", "http_400", false, 0)};
    char reasons[256] = "";
    QueueWriteBack wb = {.on_failure = failure_tally, .ud = reasons};
    CHECK_INT(queue_write_back(c, "w", calls, 2, &wb, &err), 0);
    CHECK_INT(wb.retry, 1);
    CHECK_INT(wb.failed, 1);
    CHECK(strstr(reasons, "http_503;") && strstr(reasons, "http_400;"));
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'queued' AND run_after > now() + interval '50 seconds' AND error = 'provider said 503'", (long long)id1);
    CHECK_INT(testdb_scalar(c, sql), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE id = %lld AND state = 'failed' AND reason = 'http_400'", (long long)id2);
    CHECK_INT(testdb_scalar(c, sql), 1);
    /* the backed-off job is not claimable yet */
    QueueJob *j = NULL;
    CHECK_INT(claim_one(c, "w", 60, &j), 0);
    call_free(calls[0]);
    call_free(calls[1]);
    free(jobs);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

static void test_hand_back_returns_jobs_without_spending_an_attempt(void)
{
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) SELECT 'chat', 'h' || g FROM generate_series(1, 5) g", NULL, 0);
    QueueJob **jobs = NULL;
    int n = 0, handed = -1;
    TqErr err = {0};
    CHECK_INT(queue_claim(c, "leaving", NULL, 0, NULL, 10, 60, 0, &jobs, &n, &err), 0);
    CHECK_INT(n, 5);
    CHECK_INT(queue_hand_back(c, "leaving", NULL, 0, &handed, &err), 0);
    CHECK_INT(handed, 5);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'queued' AND attempts = 0 AND lease_owner IS NULL"), 5);
    for (int i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    /* renew: only our own jobs are extended */
    CHECK_INT(queue_claim(c, "holder", NULL, 0, NULL, 2, 5, 0, &jobs, &n, &err), 0);
    CHECK_INT(n, 2);
    int64_t ids[3] = {jobs[0]->id, jobs[1]->id, 999999};
    int atts[3] = {1, 1, 1};
    bool lost[3];
    int renewed = 0;
    CHECK_INT(queue_renew(c, "holder", ids, atts, 3, 600, lost, &renewed, &err), 0);
    CHECK_INT(renewed, 2);
    CHECK(!lost[0] && !lost[1] && lost[2]);
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.jobs WHERE lease_until > now() + interval '500 seconds'"), 2);
    for (int i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

static void test_waker_notify_lost_notification_and_reconnect(void)
{
    Waker w;
    TqErr err = {0};
    CHECK_INT(waker_open(&w, testdb_conninfo, false, &err), 0);
    PGconn *c = testdb_connect();
    bool notified = false;
    /* nothing pending: the wait ends at its timeout without a notification */
    CHECK_INT(waker_wait(&w, 200, -1, &notified, &err), 0);
    CHECK(!notified);
    /* one INSERT statement of many rows wakes us */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) SELECT 'chat', 'n' || g FROM generate_series(1, 50) g", NULL, 0);
    CHECK_INT(waker_wait(&w, 10000, -1, &notified, &err), 0);
    CHECK(notified);
    /* ...once: no second notification is left behind for the same statement */
    CHECK_INT(waker_wait(&w, 200, -1, &notified, &err), 0);
    CHECK(!notified);
    /* a lost notification (triggers bypassed, as by a replica-role loader) only delays the work:
     * the wait times out and the claim that follows finds the job */
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    testdb_exec(c, "SET session_replication_role = replica", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', 'silent')", NULL, 0);
    testdb_exec(c, "SET session_replication_role = origin", NULL, 0);
    CHECK_INT(waker_wait(&w, 300, -1, &notified, &err), 0);
    CHECK(!notified);
    QueueJob *j = NULL;
    CHECK_INT(claim_one(c, "poller", 60, &j), 1);
    job_free(j);
    /* the listening connection is killed: the waker reconnects, LISTENs again and reports a wake-up */
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(w.conn));
    testdb_exec(c, sql, NULL, 0);
    usleep(100000);
    int attempts = 0;
    do {
        waker_wait(&w, 500, -1, &notified, &err);
    } while (w.reconnects == 0 && ++attempts < 10);
    CHECK_INT(w.reconnects, 1);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) VALUES ('chat', 'after reconnect')", NULL, 0);
    notified = false;
    CHECK_INT(waker_wait(&w, 10000, -1, &notified, &err), 0);
    CHECK(notified);
    waker_close(&w);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

static void test_status_shows_counts(void)
{
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt) SELECT 'classify', 's' || g FROM generate_series(1, 3) g", NULL, 0);
    char out[8192];
    CHECK_INT(testdb_run("status", out, sizeof out), 0);
    CHECKF(strstr(out, "classify") != NULL, "status said: %s", out);
    CHECKF(strstr(out, "live workers: 0") != NULL, "status said: %s", out);
    /* the row for classify shows 3 queued */
    const char *row = strstr(out, "classify");
    long long q = row ? atoll(row + 8) : -1;
    CHECK_INT(q, 3);
    testdb_exec(c, "DELETE FROM tierq.jobs", NULL, 0);
    PQfinish(c);
}

int main(void)
{
    TqErr cerr = {0};
    if (config_load(config_default_dir(), &test_cfg, &cerr)) {
        printf("# %s\n", cerr.msg);
        return 1;
    }
    RUN(test_migrate_twice_and_concurrently);
    RUN(test_bad_inserts_are_refused_with_a_named_reason);
    RUN(test_hostile_rows_are_refused);
    RUN(test_claim_survives_hostile_rows);
    RUN(test_claim_is_bounded_by_bytes);
    RUN(test_four_claimers_claim_each_job_exactly_once);
    RUN(test_expired_lease_requeues_then_dead_keeps_error);
    RUN(test_stale_completion_after_lease_loss_changes_nothing);
    RUN(test_fail_retry_backoff_and_final_failure);
    RUN(test_hand_back_returns_jobs_without_spending_an_attempt);
    RUN(test_waker_notify_lost_notification_and_reconnect);
    RUN(test_status_shows_counts);
    return check_done();
}
