/* tierq run end to end: the real binary, a real PostgreSQL, the simulator over loopback HTTP.
 * Covers: 1,000 jobs done with exact cost sums; every injected provider fault ends as the rules
 * say (retried and honoured, or failed with a readable reason) and nothing is lost; the API key
 * appears in no table and no log line; a response over the cap fails cleanly. */
#include "runhelp.h"

#include <dirent.h>
#include <stdbool.h>
#include <signal.h>
#include <time.h>
#include <sys/stat.h>

static char answers[256];
#define out run_out

static void write_answers(void)
{
    snprintf(answers, sizeof answers, "/tmp/tq_run_answers.%d.tsv", (int)getpid());
    FILE *f = fopen(answers, "w");
    fprintf(f, "kind\tprompt\texpected\n");
    for (int i = 1; i <= 1000; i++)
        fprintf(f, "simple\tquestion number %d\tanswer %d\n", i, i % 7);
    fclose(f);
}

/* `tierq run --drain` with a short lease; exit status, output in `out`. */
static int run_drain_lease(const SimProc *s, const char *args)
{
    char a[512];
    snprintf(a, sizeof a, "--lease-s 30 %s", args ? args : "");
    return run_drain(s, a);
}


static void test_thousand_jobs_done_with_exact_cost_sums(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 5"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'thousand'"
                   " FROM generate_series(1, 700) g", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT k, 'tell me about item ' || g || ' of ' || k, 'thousand'"
                   " FROM generate_series(1, 100) g, unnest(ARRAY['chat', 'summarize', 'classify']) k", NULL, 0);
    int st = run_drain_lease(&s, "--max-in-flight 64");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'thousand' AND state = 'done'"), 1000);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'done' AND (result IS NULL OR result = '' OR cost_usd <= 0"
                   " OR baseline_cost_usd <= 0 OR tokens_in <= 0 OR tokens_out <= 0 OR model IS NULL OR tier NOT BETWEEN 1 AND 3)"), 0);
    /* the sum over jobs equals the sum over calls, exactly */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT (SELECT sum(cost_usd) FROM tierq.jobs) AS j,"
                   " (SELECT sum(cost_usd) FROM tierq.calls) AS k) x WHERE j = k AND j > 0"), 1);
    /* and every call costs exactly its tokens at its model's prices */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls c JOIN tierq.models m ON m.name = c.model WHERE c.cost_usd <>"
                   " ((c.tokens_in - c.tokens_cached_in) * m.input_usd_per_mtok + c.tokens_cached_in * m.cached_input_usd_per_mtok"
                   "  + c.tokens_out * m.output_usd_per_mtok) / 1000000"), 0);
    /* one ledger row per call, each naming the jobs it served (several when batched); every job answered */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE NOT EXISTS (SELECT 1 FROM tierq.calls k WHERE k.status = 'ok'"
                   " AND j.id = ANY (k.job_ids) AND k.run_name = 'thousand')"), 0);
    /* every job starts on its kind's first tier: classify on qwen3-8b (in batches: classify batches) */
    CHECK_INT(q(c, "SELECT count(DISTINCT x) FROM tierq.calls, unnest(job_ids) x WHERE kind = 'classify' AND tier = 1"
                   " AND purpose = 'answer' AND model = 'qwen3-8b'"), 100);
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE kind = 'classify' AND cardinality(job_ids) > 1") > 0);
    /* nothing left running or leased, the process unregistered */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE state <> 'done' OR lease_owner IS NOT NULL"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.workers"), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void insert_fault(PGconn *c, const char *kind, const char *marker, const char *run)
{
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('%s', 'fault %s [[sim:%s]]', '%s')",
             kind, marker, marker, run);
    testdb_exec(c, sql, NULL, 0);
}

static long long job_q(PGconn *c, const char *marker, const char *cond)
{
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE prompt LIKE '%%[[sim:%s]]%%' AND %s", marker, cond);
    return testdb_scalar(c, sql);
}

static void test_retryable_faults_are_retried_and_end_done(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    const char *retryable[] = {"429:times=2", "500", "503", "drop", "truncated", "invalid", "intcode", "500:times=2"};
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++)
        insert_fault(c, "chat", retryable[i], "faults");
    insert_fault(c, "chat", "nousage", "faults");
    /* ordinary jobs alongside are not disturbed */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'faults' FROM generate_series(1, 50) g", NULL, 0);
    int st = run_drain_lease(&s, "--max-tries 5");
    CHECKF(st == 0, "exit %d: %s", st, out);
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++) {
        CHECKF(job_q(c, retryable[i], "state = 'done' AND attempts = 1") == 1, "fault %s did not end done on its first attempt", retryable[i]);
        char sql[512];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.calls c JOIN tierq.jobs j ON j.id = ANY (c.job_ids)"
                 " WHERE j.prompt LIKE '%%[[sim:%s]]%%' AND c.reason IS NOT NULL AND c.error <> ''"
                 " AND (c.status = 'retry' OR (c.status = 'unknown' AND c.reason = 'resent_by_transport'))",
                 retryable[i]);
        /* a dropped connection that had been reused is sent again by curl itself (a resent_by_transport
         * row) rather than retried by tierq (a retry row): which one depends on the connection pool */
        long long want = strstr(retryable[i], "times=2") ? 2 : 1;
        CHECKF(testdb_scalar(c, sql) == want, "fault %s: expected %lld retry rows in the ledger", retryable[i], want);
    }
    /* retry-after honoured: two 429s asked for 200 ms each (retry-after-ms), so at least 400 ms passed */
    CHECK_INT(job_q(c, "429:times=2", "finished_at - started_at >= interval '400 milliseconds'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE http_status = 429 AND reason = 'rate_limited'"), 2);
    /* a missing usage block is estimated and marked so, and still charged */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls c JOIN tierq.jobs j ON j.id = ANY (c.job_ids) WHERE j.prompt LIKE '%nousage%'"
                   " AND c.usage_estimated AND c.tokens_in > 0 AND c.cost_usd > 0"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'faults' AND state = 'done'"), 59);
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT (SELECT sum(cost_usd) FROM tierq.jobs) AS j,"
                   " (SELECT sum(cost_usd) FROM tierq.calls) AS k) x WHERE j = k"), 1);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_permanent_faults_fail_with_readable_reason(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    insert_fault(c, "chat", "400", "perm");
    insert_fault(c, "chat", "oversized", "perm");
    insert_fault(c, "chat", "500:times=9", "perm"); /* more failures than tries: back to the queue, then dead */
    testdb_exec(c, "UPDATE tierq.jobs SET max_attempts = 2 WHERE prompt LIKE '%times=9%'", NULL, 0);
    int st = run_drain_lease(&s, "--max-tries 2 --max-response-bytes 1048576 --requeue-s 1");
    /* nothing succeeded: exit 6, and the summary names each reason with an example */
    CHECKF(st == 6, "exit %d (want 6): %s", st, out);
    CHECKF(strstr(out, "reason bad_request (e.g. http 400 bad_request:") && strstr(out, "reason response_too_large") &&
               strstr(out, "no job succeeded"),
           "output: %s", out);
    CHECK_INT(job_q(c, "400", "state = 'failed' AND reason = 'bad_request' AND error LIKE 'http 400 bad_request: %' AND attempts = 1"), 1);
    CHECK_INT(job_q(c, "oversized", "state = 'failed' AND reason = 'response_too_large' AND error LIKE '%exceeded 1048576 bytes%'"), 1);
    CHECK_INT(job_q(c, "500:times=9", "state = 'dead' AND attempts = 2 AND reason = 'server_error' AND error LIKE 'server_error after 2 tries: http 500%'"), 1);
    /* four HTTP exchanges for the dead job: two tries on each of two attempts */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls c JOIN tierq.jobs j ON j.id = ANY (c.job_ids) WHERE j.prompt LIKE '%times=9%'"), 4);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE state IN ('queued', 'running')"), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_timeout_is_retried(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1 --slow-ms 4000"), 0);
    /* a copy of jobs/ whose providers time out after 800 ms */
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/tq_jobs_timeout.%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/*.json '%s/' && sed -i 's/\"timeout_ms\": [0-9]*/\"timeout_ms\": 800/' '%s/models.json'",
             dir, dir, getenv("TIERQ_JOBS_DIR"), dir, dir);
    CHECK_INT(system(cmd), 0);
    PGconn *c = testdb_connect();
    insert_fault(c, "chat", "slow", "slow");
    setenv("TIERQ_JOBS_DIR", dir, 1);
    int st = run_drain_lease(&s, "");
    setenv("TIERQ_JOBS_DIR", getenv("TIERQ_ROOT"), 1);
    char jobs[512];
    snprintf(jobs, sizeof jobs, "%s/jobs", getenv("TIERQ_ROOT"));
    setenv("TIERQ_JOBS_DIR", jobs, 1);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(job_q(c, "slow", "state = 'done'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE reason = 'http_timeout' AND status = 'retry' AND http_status = 0"), 1);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

static void test_insufficient_quota_stops_the_provider_and_keeps_jobs(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 20"), 0);
    PGconn *c = testdb_connect();
    insert_fault(c, "simple", "429quota:times=100", "quota");
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'quota' FROM generate_series(1, 20) g", NULL, 0);
    /* one request at a time, so the quota answer comes before most of the others are sent */
    int st = run_drain_lease(&s, "--run quota --max-in-flight 1 --threads 1");
    CHECKF(st == 5, "exit %d (want 5): %s", st, out);
    CHECK_INT(job_q(c, "429quota:times=100", "state = 'queued' AND reason = 'provider_quota_exhausted' AND run_after > now() + interval '5 minutes'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE status = 'quota' AND http_status = 429"), 1);
    /* nothing lost: every job is done or waiting in the queue, none failed */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'quota' AND state IN ('done', 'queued')"), 21);
    CHECK(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'quota' AND state = 'queued' AND reason = 'provider_quota_exhausted'") >= 2);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_api_key_appears_nowhere(void)
{
    const char *key = "sk-tierqtest-9f8e7d6c5b4a39281706";
    SimProc s;
    char extra[256];
    snprintf(extra, sizeof extra, "--latency-ms 1 --require-key %s", key);
    CHECK_INT(sim_start(&s, answers, extra), 0);
    setenv("OPENAI_API_KEY", key, 1);
    setenv("DEEPSEEK_API_KEY", key, 1);
    setenv("DASHSCOPE_API_KEY", key, 1);
    setenv("TIERQ_LOG", "debug", 1);
    PGconn *c = testdb_connect();
    /* classify prompts are not in the answer key (keyed by prompt): the simulator answers them from
     * the labels the request offers */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT k,"
                   " CASE WHEN k = 'classify' THEN 'ticket ' ELSE 'question number ' END || g, 'key'"
                   " FROM generate_series(1, 10) g, unnest(ARRAY['simple', 'chat', 'classify']) k", NULL, 0);
    insert_fault(c, "chat", "400", "key");
    insert_fault(c, "chat", "500", "key");
    int st = run_drain_lease(&s, "");
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* the key was sent (the simulator refuses requests without it) ... */
    CHECKF(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'key' AND state = 'done'") == 31, "%s", out);
    /* ... and is in no row of any tierq table, nor in the output */
    const char *tables[] = {"jobs", "calls", "workers", "kinds", "models", "schema_migrations"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.%s t WHERE t::text LIKE '%%9f8e7d6c5b4a%%'", tables[i]);
        CHECKF(testdb_scalar(c, sql) == 0, "key found in tierq.%s", tables[i]);
    }
    CHECKF(strstr(out, "9f8e7d6c5b4a") == NULL, "key in the output: %s", out);
    CHECK(strstr(out, "debug") != NULL || strstr(out, "run:") != NULL);
    /* a wrong key: the jobs fail with the provider's message, which does not carry our key either */
    setenv("OPENAI_API_KEY", "sk-wrongkey-aaaabbbbccccddddeeee", 1);
    setenv("DEEPSEEK_API_KEY", "sk-wrongkey-aaaabbbbccccddddeeee", 1);
    setenv("DASHSCOPE_API_KEY", "sk-wrongkey-aaaabbbbccccddddeeee", 1);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('chat', 'wrong key', 'key2')", NULL, 0);
    st = run_drain_lease(&s, "--run key2");
    /* a refused key is the account's problem, not the job's: the provider is stopped, the job waits
     * in the queue without spending an attempt, exit 5 */
    CHECKF(st == 5, "exit %d (want 5): %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'key2' AND state = 'queued' AND reason = 'provider_unauthorized'"
                   " AND attempts = 0 AND error LIKE 'http 401 unauthorized: %'"),
              1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j::text LIKE '%aaaabbbbcccc%'"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k WHERE k::text LIKE '%aaaabbbbcccc%'"), 0);
    CHECKF(strstr(out, "aaaabbbbcccc") == NULL, "wrong key in the output: %s", out);
    unsetenv("OPENAI_API_KEY");
    unsetenv("DEEPSEEK_API_KEY");
    unsetenv("DASHSCOPE_API_KEY");
    unsetenv("TIERQ_LOG");
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}



static void test_daemon_wakes_on_notify(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    /* polling once a minute: a job done within seconds was claimed because of the NOTIFY */
    int pid = start_daemon(&s, "--poll-ms 60000");
    CHECK(pid > 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 1, 10000), 1);
    usleep(300000);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('simple', 'question number 7', 'notify')", NULL, 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'notify' AND state = 'done'", 1, 15000), 1);
    if (pid > 0)
        kill(pid, SIGTERM);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 10000), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* SIGHUP (a closed terminal) and SIGQUIT stop a daemon like SIGTERM: the jobs it holds go back to
 * the queue at once (not after lease expiry), without spending an attempt. */
static void test_hup_and_quit_hand_back(void)
{
    static const int sigs[] = {SIGHUP, SIGQUIT};
    for (size_t k = 0; k < 2; k++) {
        SimProc s;
        CHECK_INT(sim_start(&s, answers, "--latency-ms 5000"), 0);
        PGconn *c = testdb_connect();
        testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
        testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'hup'"
                       " FROM generate_series(1, 10) g", NULL, 0);
        int pid = start_daemon(&s, "--lease-s 600 --grace-s 0");
        CHECK(pid > 0);
        CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'hup' AND state = 'running'", 10, 10000), 10);
        /* a process holding API keys writes no core file (SIGQUIT would otherwise dump one) */
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/limits", pid);
        FILE *lf = fopen(path, "r");
        bool no_core = false;
        while (lf && fgets(line, sizeof line, lf))
            if (strncmp(line, "Max core file size", 18) == 0) {
                long soft = -1, hard = -1;
                no_core = sscanf(line + 18, " %ld %ld", &soft, &hard) == 2 && soft == 0 && hard == 0;
            }
        if (lf)
            fclose(lf);
        CHECKF(no_core, "%s does not say core files of size 0", path);
        if (pid > 0)
            kill(pid, sigs[k]);
        CHECKF(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'hup' AND state = 'queued' AND attempts = 0", 10, 10000) == 10,
               "signal %d: the jobs were not handed back", sigs[k]);
        CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 10000), 0);
        testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
        PQfinish(c);
        sim_stop(&s);
    }
}

static void test_kill_9_loses_no_job(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 2000"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'crash'"
                   " FROM generate_series(1, 40) g", NULL, 0);
    int pid = start_daemon(&s, "--lease-s 2");
    CHECK(pid > 0);
    /* every job claimed and in flight (the simulator takes 2 s to answer), then the process dies hard */
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'crash' AND state = 'running'", 40, 10000), 40);
    if (pid > 0)
        kill(pid, SIGKILL);
    usleep(200000);
    /* another process finishes them once their leases run out */
    int st = run_drain_lease(&s, "--run crash --lease-s 2");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'crash' AND state = 'done' AND attempts = 2"), 40);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'crash' AND reason IN ('accepted', 'final_tier')"), 40);
    /* what was written is consistent: every job's cost is the sum of its calls */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j.cost_usd <>"
                   " (SELECT coalesce(sum(k.cost_usd), 0) FROM tierq.calls k WHERE j.id = ANY (k.job_ids))"), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_database_restart_mid_run(void)
{
    const char *tmp = getenv("TIERQ_TEST_TMP");
    if (!tmp) {
        printf("# TIERQ_TEST_TMP not set: cannot restart the server\n");
        CHECK(tmp != NULL);
        return;
    }
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 300"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'restart'"
                   " FROM generate_series(1, 300) g", NULL, 0);
    PQfinish(c);
    /* one request at a time keeps the run going for ~10 s; the server restarts in the middle of it */
    int pid = start_daemon(&s, "--max-in-flight 8 --threads 1 --poll-ms 200");
    CHECK(pid > 0);
    usleep(2000000);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sh '%s/tests/pg.sh' restart '%s/pg' >/dev/null 2>&1", getenv("TIERQ_ROOT"), tmp);
    CHECK_INT(system(cmd), 0);
    c = testdb_connect();
    long long done = wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'restart' AND state = 'done'", 300, 60000);
    CHECK_INT(done, 300);
    if (pid > 0)
        kill(pid, SIGTERM);
    wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 10000);
    /* nothing written twice, nothing charged twice: per job, cost = its ledger rows; one answer per job */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j.run_name = 'restart' AND j.cost_usd <>"
                   " (SELECT coalesce(sum(k.cost_usd), 0) FROM tierq.calls k WHERE j.id = ANY (k.job_ids))"), 0);
    /* at most one answer per tier per attempt: a flush replayed after the restart wrote nothing twice */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT j.id FROM tierq.jobs j JOIN tierq.calls k ON j.id = ANY (k.job_ids)"
                   " AND k.status = 'ok' AND k.purpose = 'answer' WHERE j.run_name = 'restart'"
                   " GROUP BY j.id, k.tier, j.attempts HAVING count(*) > j.attempts) x"), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* Files in dir whose name ends with suffix. */
static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        n += l >= sl && strcmp(e->d_name + l - sl, suffix) == 0;
    }
    closedir(d);
    return n;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* PostgreSQL goes away while answers are in flight, then the run is stopped: it exits within the
 * grace period plus a few seconds (it does not wait for the database), keeping what it could not
 * write in a spill file; the next run writes it back first thing, exactly once. */
static void test_database_down_at_shutdown_spills_then_replays(void)
{
    const char *tmp = getenv("TIERQ_TEST_TMP");
    if (!tmp) {
        printf("# TIERQ_TEST_TMP not set: cannot stop the server\n");
        CHECK(tmp != NULL);
        return;
    }
    char spill[600], copy[600], cmd[2048], args[800];
    snprintf(spill, sizeof spill, "%s/spill-down", tmp);
    snprintf(copy, sizeof copy, "%s/spill-copy", tmp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", spill, copy);
    CHECK_INT(system(cmd), 0);
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1500"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'down'"
                   " FROM generate_series(1, 10) g", NULL, 0);
    snprintf(args, sizeof args, "--lease-s 600 --grace-s 2 --spill-dir '%s'", spill);
    int pid = start_daemon(&s, args);
    CHECK(pid > 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'down' AND state = 'running'", 10, 10000), 10);
    PQfinish(c);
    snprintf(cmd, sizeof cmd, "sh '%s/tests/pg.sh' stop '%s/pg' >/dev/null 2>&1", getenv("TIERQ_ROOT"), tmp);
    CHECK_INT(system(cmd), 0);
    usleep(2500000); /* the answers come back and wait for a database that is not there */
    int64_t t0 = mono_ms();
    if (pid > 0)
        kill(pid, SIGTERM);
    while (pid > 0 && kill(pid, 0) == 0 && mono_ms() - t0 < 30000)
        usleep(50000);
    int64_t took = mono_ms() - t0;
    printf("# exit %lld ms after SIGTERM with the database down (grace 2 s)\n", (long long)took);
    /* a bound on a hang, not a speed target: grace 2 s + at most 5 s */
    CHECKF(took <= 7000, "the run took %lld ms to exit after SIGTERM with the database down", (long long)took);
    CHECKF(count_files(spill, ".spill") >= 1, "no spill file in %s", spill);
    snprintf(cmd, sizeof cmd, "sh '%s/tests/pg.sh' start '%s/pg' >/dev/null 2>&1", getenv("TIERQ_ROOT"), tmp);
    CHECK_INT(system(cmd), 0);
    c = testdb_connect();
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'down' AND state = 'running'"), 10);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", spill, copy);
    CHECK_INT(system(cmd), 0);
    /* the next run writes the results back before it claims anything */
    snprintf(args, sizeof args, "--run down --spill-dir '%s'", spill);
    int st = run_drain(&s, args);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'down' AND state = 'done' AND attempts = 1"), 10);
    CHECK_INT(count_files(spill, ".spill"), 0);
    check_sums(c);
    long long calls = q(c, "SELECT count(*) FROM tierq.calls");
    long long micro = q(c, "SELECT (sum(cost_usd) * 1e9)::bigint FROM tierq.calls");
    CHECK(calls >= 10);
    /* replayed again (a crash in the middle of a replay): nothing written or charged twice */
    snprintf(cmd, sizeof cmd, "cp '%s'/*.spill '%s'/", copy, spill);
    CHECK_INT(system(cmd), 0);
    st = run_drain(&s, args);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(count_files(spill, ".spill"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls"), calls);
    CHECK_INT(q(c, "SELECT (sum(cost_usd) * 1e9)::bigint FROM tierq.calls"), micro);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* kill -9 of one of two processes with requests in flight: every request the simulator received is
 * in the ledger — the dead process's in-flight ones as "unknown" rows settled by the survivor at an
 * estimated cost — and the sum over jobs still equals the sum over calls. */
static void test_kill_9_every_request_is_in_the_ledger(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 2000"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'orphans'"
                   " FROM generate_series(1, 40) g", NULL, 0);
    int a = start_daemon(&s, "--lease-s 2 --max-in-flight 20");
    int b = start_daemon(&s, "--lease-s 2 --max-in-flight 20");
    CHECK(a > 0 && b > 0);
    /* both have requests in flight (each claims up to 1.5 x its 20 in flight, so not always 20 each) */
    CHECK_INT(wait_for(c, "SELECT (count(*) >= 30 AND count(DISTINCT worker) = 2)::int FROM tierq.calls"
                          " WHERE run_name = 'orphans' AND status = 'sent'", 1, 10000),
              1);
    if (a > 0)
        kill(a, SIGKILL);
    /* the survivor finishes every job and, once the dead one has been silent long enough, settles
     * what it left in flight */
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'orphans' AND state = 'done'", 40, 60000), 40);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.calls WHERE status = 'sent'", 0, 60000), 0);
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE status = 'unknown' AND reason = 'settled_after_crash'"
               " AND usage_estimated AND cost_usd > 0") >= 1);
    if (b > 0)
        kill(b, SIGTERM);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers WHERE heartbeat_at > now() - interval '10 seconds'", 0, 15000), 0);
    long long sent = sim_stat(&s, "requests");
    long long rows = q(c, "SELECT count(*) FROM tierq.calls WHERE status <> 'cancelled'");
    long long settled = q(c, "SELECT count(*) FROM tierq.calls WHERE reason = 'settled_after_crash'");
    /* every request the simulator received has its row; a row more can only be a request the dead
     * process had written down but not yet put on the wire when it was killed (settled at an
     * estimate: nobody can know it never left, so the ledger errs toward counting it) */
    CHECKF(sent <= rows && rows - sent <= settled,
           "the simulator received %lld requests, the ledger has %lld rows (%lld settled after the crash)", sent, rows,
           settled);
    check_sums(c);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j.cost_usd <>"
                   " (SELECT coalesce(sum(k.cost_usd), 0) FROM tierq.calls k WHERE j.id = ANY (k.job_ids))"
                   " AND j.id IN (SELECT unnest(job_ids) FROM tierq.calls GROUP BY 1 HAVING count(*) = 1)"), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* A reused connection that dies after the request went out: curl sends the request again on a new
 * connection by itself. The provider may bill both copies, so the ledger has a row for each: the
 * simulator's request count equals the ledger's. */
static void test_request_resent_by_curl_is_in_the_ledger(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 20"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    /* one at a time on one thread: the second request goes on the first one's connection */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, priority) VALUES"
                   " ('simple', 'question number 1', 'resent', 10),"
                   " ('simple', 'question number 2 [[sim:drop]]', 'resent', 0)",
                NULL, 0);
    int st = run_drain(&s, "--run resent --threads 1 --max-in-flight 1");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'resent' AND state = 'done'"), 2);
    long long sent = sim_stat(&s, "requests");
    long long rows = q(c, "SELECT count(*) FROM tierq.calls WHERE status <> 'cancelled'");
    CHECKF(sent == rows, "the simulator received %lld requests, the ledger has %lld rows", sent, rows);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE status = 'unknown' AND reason = 'resent_by_transport'"
                   " AND usage_estimated AND cost_usd > 0"),
              1);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* Rows from before the bounds of sql/006 that break them (written when the constraints were not
 * there) sit next to healthy ones: `run --drain` finishes every healthy job and ends, though the
 * hostile rows can never be claimed. */
static void test_drain_finishes_healthy_jobs_next_to_hostile_rows(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    CHECK_INT(testdb_exec(c, "ALTER TABLE tierq.jobs DROP CONSTRAINT jobs_attempts_range, DROP CONSTRAINT jobs_cost_range,"
                             " DROP CONSTRAINT jobs_tokens_range",
                          NULL, 0),
              0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, attempts, max_attempts, priority) VALUES"
                   " ('simple', 'hostile 1', 'hostile', 2147483647, 100, 100);"
                   "INSERT INTO tierq.jobs (kind, prompt, run_name, cost_usd, priority) VALUES"
                   " ('simple', 'hostile 2', 'hostile', 99999999, 100);"
                   "INSERT INTO tierq.jobs (kind, prompt, run_name, tokens_in, priority) VALUES"
                   " ('simple', 'hostile 3', 'hostile', 9223372036854775807, 100);"
                   "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'question number ' || g, 'hostile'"
                   " FROM generate_series(1, 20) g",
                NULL, 0);
    CHECK_INT(testdb_exec(c, "ALTER TABLE tierq.jobs"
                             " ADD CONSTRAINT jobs_attempts_range CHECK (attempts BETWEEN 0 AND 1000) NOT VALID,"
                             " ADD CONSTRAINT jobs_cost_range CHECK (cost_usd BETWEEN 0 AND 10000000"
                             "   AND baseline_cost_usd BETWEEN 0 AND 10000000) NOT VALID,"
                             " ADD CONSTRAINT jobs_tokens_range CHECK (tokens_in BETWEEN 0 AND 1000000000000000"
                             "   AND tokens_cached_in BETWEEN 0 AND 1000000000000000"
                             "   AND tokens_out BETWEEN 0 AND 1000000000000000) NOT VALID",
                          NULL, 0),
              0);
    int st = run_drain(&s, "--run hostile");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'hostile' AND prompt LIKE 'question%' AND state = 'done'"),
              20);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'hostile' AND prompt LIKE 'hostile%' AND state = 'queued'"),
              3);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

int main(void)
{
    testdb_setup("tq_run", 1);
    write_answers();
    RUN(test_thousand_jobs_done_with_exact_cost_sums);
    RUN(test_retryable_faults_are_retried_and_end_done);
    RUN(test_permanent_faults_fail_with_readable_reason);
    RUN(test_timeout_is_retried);
    RUN(test_insufficient_quota_stops_the_provider_and_keeps_jobs);
    RUN(test_api_key_appears_nowhere);
    RUN(test_daemon_wakes_on_notify);
    RUN(test_hup_and_quit_hand_back);
    RUN(test_kill_9_loses_no_job);
    RUN(test_database_restart_mid_run);
    RUN(test_database_down_at_shutdown_spills_then_replays);
    RUN(test_kill_9_every_request_is_in_the_ledger);
    RUN(test_request_resent_by_curl_is_in_the_ledger);
    RUN(test_drain_finishes_healthy_jobs_next_to_hostile_rows);
    unlink(answers);
    return check_done();
}
