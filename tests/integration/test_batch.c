/* Batching end to end: the real tierq, PostgreSQL and the simulator. Jobs of a kind that batches go
 * out several to a request with a byte-identical system prompt; answers come back keyed by id; every
 * job gets its own answer (the same one it gets when sent alone), faulty items are re-sent alone, an
 * unparsable batch is re-sent in halves, and money splits exactly. */
#include "runhelp.h"

static char dir[256], jobs[300], answers[300];
#define out run_out


/* Two kinds with the same models and checks: "bat" batches 8 at a time, "solo" never batches. */
static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_batch.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    snprintf(answers, sizeof answers, "%s/answers.tsv", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/jobs/models.json' '%s/'", dir, jobs, getenv("TIERQ_ROOT"), jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    /* a long shared system prompt (~400 tokens), so the provider's prefix cache shows */
    char sys[4096] = "You label short items. Reply with one of: {labels}.";
    for (int i = 0; i < 30; i++)
        strcat(sys, " Read the item carefully, think about which label fits best, and answer with the label only.");
    char kind[8192], p[400];
    static const char *const tail[] = {", \"batch\": {\"enabled\": true, \"max_items\": 8, \"max_input_tokens\": 8000}", "",
                                       ", \"batch\": {\"enabled\": true, \"max_items\": 8, \"fill_ms\": 2000}"};
    static const char *const name[] = {"bat", "solo", "trickle"};
    for (int k = 0; k < 3; k++) {
        snprintf(kind, sizeof kind,
                 "{\"system_prompt\": \"%s\", \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0}, {\"model\": \"gpt-4o\"}],"
                 " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"]}%s}",
                 sys, tail[k]);
        snprintf(p, sizeof p, "%s/%s.json", jobs, name[k]);
        write_file(p, kind);
    }
    FILE *f = fopen(answers, "w");
    fprintf(f, "kind\tprompt\texpected\n");
    static const char *labels[] = {"alpha", "beta", "gamma"};
    for (int i = 1; i <= 64; i++)
        fprintf(f, "bat\titem number %d\t%s\n", i, labels[i % 3]);
    fclose(f);
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}




/* Enqueue the same prompts as kind bat (run `batched`) and kind solo (run `alone`), run both. */
static int run_both(PGconn *c, const SimProc *s, const char *marker_sql)
{
    char sql[1024];
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    snprintf(sql, sizeof sql, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'bat', %s, 'batched' FROM generate_series(1, 64) g", marker_sql);
    testdb_exec(c, sql, NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'solo', 'item number ' || g, 'alone' FROM generate_series(1, 64) g", NULL, 0);
    int st = run_drain(s, "--run batched --threads 1");
    char batched_out[sizeof out];
    memcpy(batched_out, out, sizeof out);
    if (st == 0)
        st = run_drain(s, "--run alone --threads 1");
    memcpy(out, batched_out, sizeof out); /* callers look at the batched run's output */
    return st;
}

/* Every batched job has exactly the answer the same prompt got alone (markers stripped). */
static long long mismatches(PGconn *c)
{
    return q(c, "SELECT count(*) FROM tierq.jobs b JOIN tierq.jobs a ON a.run_name = 'alone'"
                " AND a.prompt = regexp_replace(b.prompt, '\\[\\[sim:[^]]*\\]\\]', '', 'g')"
                " WHERE b.run_name = 'batched' AND (b.state <> 'done' OR b.result IS DISTINCT FROM a.result)");
}

static void test_clean_batches_answer_like_single_calls(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    int st = run_both(c, &s, "'item number ' || g");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'batched' AND state = 'done'"), 64);
    CHECK_INT(mismatches(c), 0);
    /* 8 requests of 8 items, each ledger row naming its 8 jobs and split exactly among them */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'batched' AND cardinality(job_ids) = 8 AND status = 'ok'"), 8);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'batched'"), 8);
    /* the shared prefix is billed at the cached rate from the second batch on */
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'batched' AND tokens_cached_in > 0") >= 6);
    /* fewer input tokens and lower cost per job than sending each alone */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT sum(tokens_in) FILTER (WHERE run_name = 'batched') AS b,"
                   " sum(tokens_in) FILTER (WHERE run_name = 'alone') AS a,"
                   " sum(cost_usd) FILTER (WHERE run_name = 'batched') AS bc, sum(cost_usd) FILTER (WHERE run_name = 'alone') AS ac"
                   " FROM tierq.jobs) x WHERE b < 0.6 * a AND bc < ac"), 1);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_faulty_items_are_resent_alone(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    /* one faulty item in each batch of eight */
    int st = run_both(c, &s,
                      "CASE g WHEN 3 THEN '[[sim:batch_missing]]' WHEN 11 THEN '[[sim:batch_dup]]'"
                      " WHEN 19 THEN '[[sim:batch_unknown]]' WHEN 27 THEN '[[sim:batch_malformed]]'"
                      " WHEN 35 THEN '[[sim:batch_truncated]]' WHEN 43 THEN '[[sim:batch_invalid]]'"
                      " WHEN 51 THEN '[[sim:batch_swap]]' WHEN 59 THEN '[[sim:batch_merge]]' ELSE '' END"
                      " || 'item number ' || g");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'batched' AND state = 'done'"), 64);
    CHECK_INT(mismatches(c), 0);
    /* the missing, duplicated, malformed, swapped and merged items were asked again alone */
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'batched' AND cardinality(job_ids) = 1") >= 7);
    /* the unparsable batches were split in halves */
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'batched' AND reason = 'batch_unparsable'") >= 2);
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'batched' AND cardinality(job_ids) = 4") >= 2);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_batch_size_halves_after_malformed_batches(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    /* two batches of eight, each with one item that comes back missing: 8 -> 4 -> 2 */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'bat',"
                   " CASE WHEN g % 8 = 1 THEN '[[sim:batch_missing]]' ELSE '' END || 'item number ' || g, 'shrink'"
                   " FROM generate_series(1, 16) g", NULL, 0);
    int st = run_drain(&s, "--run shrink --threads 1");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECKF(strstr(out, "\"bat/qwen3-8b\": 2") != NULL, "run said: %s", out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'shrink' AND state = 'done'"), 16);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'shrink' AND cardinality(job_ids) = 1"), 2);
    PQfinish(c);
    sim_stop(&s);
}

static void test_a_trickle_fills_a_batch_within_its_window(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    int pid = start_daemon(&s, "--poll-ms 100");
    CHECK(pid > 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 1, 5000), 1);
    /* four jobs, one INSERT (and one claim) at a time, inside the kind's 2 s fill window */
    for (int i = 1; i <= 4; i++) {
        char sql[200];
        snprintf(sql, sizeof sql, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('trickle', 'item number %d', 'trickle')", i);
        testdb_exec(c, sql, NULL, 0);
        usleep(150000);
    }
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'trickle' AND state = 'done'", 4, 10000), 4);
    /* they went out together, as one batch */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'trickle' AND cardinality(job_ids) = 4"), 1);
    if (pid > 0)
        kill(pid, SIGTERM);
    wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 5000);
    PQfinish(c);
    sim_stop(&s);
}

static void test_status_shows_the_batch_size(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    /* a daemon (no --drain): it heartbeats its live state, then stops cleanly on SIGTERM */
    int pid = start_daemon(&s, "--poll-ms 100");
    CHECK(pid > 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers WHERE info -> 'batch_size' ? 'bat/qwen3-8b'", 1, 5000), 1);
    char st[8192];
    CHECK_INT(testdb_run("status", st, sizeof st), 0);
    CHECKF(strstr(st, "batch size: ") && strstr(st, "bat/qwen3-8b 8"), "status said: %s", st);
    if (pid > 0)
        kill(pid, SIGTERM);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 5000), 0); /* unregistered on a clean shutdown */
    PQfinish(c);
    sim_stop(&s);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_batch", 1);
    RUN(test_clean_batches_answer_like_single_calls);
    RUN(test_faulty_items_are_resent_alone);
    RUN(test_batch_size_halves_after_malformed_batches);
    RUN(test_a_trickle_fills_a_batch_within_its_window);
    RUN(test_status_shows_the_batch_size);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
