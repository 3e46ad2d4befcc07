/* Job parameters and honest outcomes end to end: the real tierq, a real PostgreSQL, the simulator.
 *
 * - The README's own SQL, run as written: classify jobs with their own labels get one of them.
 * - A parameter the kind stopped reading fails the job at claim with a readable reason.
 * - A model that returns no logprobs for a kind whose checks rely on them: nothing passes on a
 *   missing signal, the ledger and the report say so, the log warns once.
 * - max_tokens capped to the model's limit is recorded; the truncated answer that follows is not
 *   stored as a result.
 * - A 400 for one poisonous item of a batch fails that job only, and leaves the batch size alone. */
#include "runhelp.h"

#include <signal.h>

#include <sys/stat.h>

static char dir[256], jobs[300];
#define out run_out

static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_params.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/jobs/*.json '%s/'", dir, jobs,
             getenv("TIERQ_ROOT"), jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    /* qwen3-8b with an output limit of 4 tokens, as the provider's model card would say */
    snprintf(cmd, sizeof cmd,
             "sed -i 's/\"models\": {/\"models\": {\"tiny-out\": {\"provider\": \"qwen\", \"api_model\": \"qwen3-8b\","
             " \"input_usd_per_mtok\": 0.01, \"cached_input_usd_per_mtok\": 0.005, \"output_usd_per_mtok\": 0.01,"
             " \"max_output_tokens\": 4},/' '%s/models.json'",
             jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    snprintf(p, sizeof p, "%s/nolp.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\", \"tiers\": [{\"model\": \"deepseek-reasoner\", \"accept\": 0.3},"
                  " {\"model\": \"gpt-4o\"}], \"max_tokens\": 64, \"checks\": {\"min_chars\": 1, \"logprobs\": true}}");
    snprintf(p, sizeof p, "%s/capped.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\", \"tiers\": [{\"model\": \"tiny-out\"}], \"max_tokens\": 64}");
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}

static void test_readme_classify_example_gets_its_own_labels(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    /* the user's own table, as the README assumes */
    testdb_exec(c, "DROP TABLE IF EXISTS support_tickets;"
                   " CREATE TABLE support_tickets (body text, created_at timestamptz DEFAULT now());"
                   " INSERT INTO support_tickets (body) VALUES"
                   " ('I was charged twice this month, please fix my billing'),"
                   " ('The export button crashes the app: a bug since the last update'),"
                   " ('Could you add a dark mode? Nothing other than that'),"
                   " ('My invoice shows the wrong billing address'),"
                   " ('Login fails with error 500, surely a bug'),"
                   " ('Old ticket from last week, about billing')",
                NULL, 0);
    testdb_exec(c, "UPDATE support_tickets SET created_at = now() - interval '8 days' WHERE body LIKE 'Old ticket%'", NULL, 0);
    char *sql = readme_sql_after("## How it is used");
    CHECKF(strstr(sql, "'{\"labels\": [\"billing\", \"bug\", \"other\"]}'") != NULL, "README example changed: %s", sql);
    char err[1024] = "";
    CHECKF(testdb_exec(c, sql, err, sizeof err) == 0, "the README's INSERT failed: %s", err);
    free(sql);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'tickets-2026-11-27'"), 5);
    int st = run_drain(&s, "--run tickets-2026-11-27");
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* every ticket got the one label its text names, from the job's own set ... */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j JOIN support_tickets t ON t.body = j.prompt"
                   " WHERE j.run_name = 'tickets-2026-11-27' AND j.state = 'done'"
                   " AND j.result IN ('billing', 'bug', 'other') AND position(j.result IN t.body) > 0"),
              5);
    /* ... on the cheap tier (the simulator draws a right answer's confidence around 0.90 +- 0.07
     * against classify's bar of 0.80, so one of five may still be sent up) */
    long long tier1 = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'tickets-2026-11-27' AND tier = 1"
                           " AND model = 'qwen3-8b' AND reason = 'accepted'");
    CHECKF(tier1 >= 4, "only %lld of 5 on tier 1", tier1);
    /* jobs with the same labels went out together, and the labels were in the request the model saw:
     * the simulator answered from them (the kind's 58 Debian sections would never give "billing") */
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'tickets-2026-11-27' AND cardinality(job_ids) > 1") > 0);
    /* the README's query for reading results works as written */
    sql = readme_sql_after("Read results with SQL");
    PGresult *r = PQexec(c, sql);
    CHECKF(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 5, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    free(sql);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DROP TABLE support_tickets", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_param_the_kind_stopped_reading_fails_at_claim(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, run_name) VALUES"
                   " ('translate', 'Bonjour', '{\"target_language\": \"German\"}', 'drift'),"
                   " ('translate', 'Salut', '{}', 'drift')",
                NULL, 0);
    /* the kind is edited afterwards: it no longer takes a target language */
    char p[400];
    snprintf(p, sizeof p, "%s/translate.json", jobs);
    write_file(p, "{\"system_prompt\": \"Translate the user's text into English.\","
                  " \"tiers\": [{\"model\": \"deepseek-v4-flash\", \"accept\": 0.5}, {\"model\": \"gpt-4o\"}]}");
    int st = run_drain(&s, "--run drift");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'drift' AND state = 'failed' AND reason = 'unknown_param'"
                   " AND error LIKE 'params.target_language is not a parameter of kind translate (it reads max_tokens, temperature, cache, model)%'"),
              1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'drift' AND state = 'done' AND prompt = 'Salut'"), 1);
    /* nothing was sent for the failed job */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = ANY (k.job_ids)"
                   " WHERE j.reason = 'unknown_param'"),
              0);
    /* and a new INSERT with it is refused at once */
    char err[1024] = "";
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('translate', 'x', '{\"target_language\": \"German\"}')",
                      err, sizeof err) != 0);
    CHECKF(strstr(err, "params.target_language is not a parameter of kind translate") != NULL, "got: %s", err);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s/jobs/translate.json' '%s/'", getenv("TIERQ_ROOT"), jobs);
    CHECK_INT(system(cmd), 0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_missing_logprobs_never_pass(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'nolp', 'question ' || g, 'nolp'"
                   " FROM generate_series(1, 12) g",
                NULL, 0);
    setenv("TIERQ_LOG", "info", 1);
    int st = run_drain(&s, "--run nolp");
    unsetenv("TIERQ_LOG");
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* deepseek-reasoner sends no logprobs: its answers are not vouched for, every job escalates */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'nolp' AND state = 'done' AND tier = 2"
                   " AND model = 'gpt-4o'"),
              12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'nolp' AND tier = 1 AND reason = 'escalated'"
                   " AND score = 0 AND missing_signals = 'logprobs'"),
              12);
    /* gpt-4o returns them: its answers were scored with them */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'nolp' AND tier = 2 AND missing_signals IS NOT NULL"), 0);
    /* said once per model in the log, not once per answer */
    int warnings = 0;
    for (const char *p = strstr(out, "answers come without logprobs"); p; p = strstr(p + 1, "answers come without logprobs"))
        warnings++;
    CHECKF(warnings == 1, "%d warnings in: %s", warnings, out);
    /* and counted by tierq report */
    char text[8192];
    CHECK_INT(testdb_run("report --run nolp", text, sizeof text), 0);
    const char *sig = strstr(text, "answers scored without their signals");
    char kind[32] = "", model[32] = "", missing[32] = "";
    long long answers = 0, without = 0;
    const char *row = sig ? strstr(sig, "\n  nolp ") : NULL;
    CHECKF(row && sscanf(row, " %31s %31s %lld %lld %31s", kind, model, &answers, &without, missing) == 5 &&
               strcmp(model, "deepseek-reasoner") == 0 && answers == 12 && without == 12 && strcmp(missing, "logprobs") == 0,
           "report: %s", text);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_max_tokens_capped_and_truncation_fails(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, run_name) VALUES"
                   " ('capped', 'tell me everything about the history of the package manager', '{\"max_tokens\": 500}', 'cap')",
                NULL, 0);
    int st = run_drain(&s, "--run cap");
    CHECKF(st == 6, "exit %d (want 6): %s", st, out);
    /* the model allows 4 output tokens: 4 were asked for, and the ledger says it was capped */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'cap' AND max_tokens = 4 AND max_tokens_capped"), 1);
    /* the cut answer is not a result: failed, reason truncated, the cause in words */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'cap' AND state = 'failed' AND reason = 'truncated'"
                   " AND result IS NULL AND error LIKE '%cut off at the output limit%' AND cost_usd > 0"),
              1);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

static void test_bad_item_in_batch_fails_alone(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, run_name) SELECT 'classify',"
                   " CASE WHEN g = 3 THEN 'poison [[sim:400:times=0]]' ELSE 'item ' || g || ' is a bug' END,"
                   " '{\"labels\": [\"bug\", \"other\"]}', 'poison' FROM generate_series(1, 8) g",
                NULL, 0);
    int st = run_drain(&s, "--run poison");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'poison' AND state = 'done' AND result = 'bug'"), 7);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'poison' AND state = 'failed' AND reason = 'bad_request'"
                   " AND prompt LIKE 'poison%'"),
              1);
    /* the batch went out, met the 400, and every item went alone: one request per job after it */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'poison' AND cardinality(job_ids) = 8 AND http_status = 400"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'poison' AND cardinality(job_ids) = 1"), 8);
    /* a 400 is not a garbled answer: the classify batch size is still its maximum (16) */
    CHECKF(strstr(out, "\"classify/qwen3-8b\": 16") != NULL, "summary: %s", out);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* Two runs' jobs of the same kind and params are claimed together, yet never share a request. */
static void test_batches_never_mix_runs(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, run_name) SELECT 'classify', 'ticket ' || g || ' is a bug',"
                   " '{\"labels\": [\"bug\", \"other\"]}', CASE WHEN g % 2 = 0 THEN 'tenant-a' ELSE 'tenant-b' END"
                   " FROM generate_series(1, 16) g",
                NULL, 0);
    int st = run_drain(&s, "");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'done' AND result = 'bug'"), 16);
    /* batches were made (8 per run) and every batched call served one run only */
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE cardinality(job_ids) > 1") >= 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k WHERE cardinality(k.job_ids) > 1 AND"
                   " (SELECT count(DISTINCT run_name) FROM tierq.jobs j WHERE j.id = ANY (k.job_ids)) > 1"),
              0);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* A batch against a provider that answers 429 every time: max_tries requests, then the jobs wait in
 * the queue together; never a cascade of halves ignoring retry-after. */
static void test_transient_batch_failure_is_not_split(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, run_name) SELECT 'classify',"
                   " CASE WHEN g = 1 THEN 'always busy [[sim:429:times=0]]' ELSE 'item ' || g || ' is a bug' END,"
                   " '{\"labels\": [\"bug\", \"other\"]}', 'busy' FROM generate_series(1, 16) g",
                NULL, 0);
    int st = run_drain(&s, "--run busy --max-tries 2 --requeue-s 300");
    CHECKF(st == 6, "exit %d (want 6: nothing succeeded yet): %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'busy'"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'busy' AND state = 'queued' AND reason = 'rate_limited'"
                   " AND run_after > now() + interval '100 seconds'"),
              16);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* A job whose input is longer than the cheap tier's context starts on the first tier that holds it;
 * one longer than every tier's fails at once with a readable reason and no request is sent. */
static void test_context_too_long_fails_before_any_request(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    /* simple: qwen3-8b (32,768 tokens), deepseek-v4-flash (131,072), gpt-4o (128,000); an ASCII
     * context is estimated at 4 bytes a token */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) VALUES"
                   " ('simple', 'Summarise the context in one word.', repeat('word ', 40000), 'sizes'),"
                   " ('simple', 'Summarise the context in one word.', repeat('word ', 800000), 'sizes'),"
                   " ('simple', 'What is 2 + 2?', NULL, 'sizes')",
                NULL, 0);
    int st = run_drain(&s, "--run sizes");
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* ~50,000 tokens: past qwen3-8b, so it starts on deepseek-v4-flash */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'sizes' AND octet_length(context) = 200000"
                   " AND state = 'done'"),
              1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = ANY (k.job_ids)"
                   " WHERE octet_length(j.context) = 200000 AND k.model = 'qwen3-8b'"),
              0);
    CHECK(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = ANY (k.job_ids)"
               " WHERE octet_length(j.context) = 200000 AND k.model = 'deepseek-v4-flash' AND k.tier = 2") >= 1); /* tiers are 1-based in SQL */
    /* ~1,000,000 tokens: no tier holds it */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'sizes' AND octet_length(context) = 4000000"
                   " AND state = 'failed' AND reason = 'context_too_long'"
                   " AND error LIKE 'context_too_long: the input is about 10000__ tokens%no tier of kind simple%'"),
              1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = ANY (k.job_ids)"
                   " WHERE j.reason = 'context_too_long'"),
              0);
    /* the short job is untouched by all this: the cheap tier answers it */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = ANY (k.job_ids)"
                   " WHERE j.prompt = 'What is 2 + 2?' AND k.tier = 1 AND k.model = 'qwen3-8b'"),
              1);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* SIGTERM while escalations are in flight: the answers already paid for keep their ledger rows, each
 * request cut off gets an estimated row of its own, and the jobs go back to the queue with their
 * cost so far and without spending an attempt. */
static void test_sigterm_keeps_paid_rows_of_calls_cut_short(void)
{
    SimProc s;
    /* nolp: deepseek-reasoner answers at once without logprobs, so every job escalates to gpt-4o,
     * which a marker makes take 5 s */
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1 --slow-ms 5000"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'nolp',"
                   " 'question ' || g || ' [[sim:slow:model=gpt-4o:times=0]]', 'cut' FROM generate_series(1, 10) g",
                NULL, 0);
    int pid = start_daemon(&s, "--lease-s 600 --grace-s 1");
    CHECK(pid > 0);
    /* every job has paid for its first answer and waits on the second tier */
    usleep(1500000);
    if (pid > 0)
        kill(pid, SIGTERM);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 15000), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'cut' AND tier = 1 AND status = 'ok'"), 10);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'cut' AND tier = 2 AND status = 'unknown'"
                   " AND reason = 'aborted_at_shutdown' AND usage_estimated AND cost_usd > 0 AND tokens_out = 64"),
              10);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'cut' AND state = 'queued' AND attempts = 0"
                   " AND reason = 'handed_back' AND cost_usd > 0"),
              10);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

/* kill -9 while escalations are in flight: the tier-1 answers already paid for were written when
 * they came back, not when their calls would have ended. */
static void test_kill_9_keeps_paid_rows_of_calls_in_flight(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1 --slow-ms 5000"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'nolp',"
                   " 'question ' || g || ' [[sim:slow:model=gpt-4o:times=0]]', 'kill' FROM generate_series(1, 10) g",
                NULL, 0);
    int pid = start_daemon(&s, "--lease-s 600");
    CHECK(pid > 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'kill' AND tier = 1 AND status = 'ok'", 10, 4000),
              10);
    if (pid > 0)
        kill(pid, SIGKILL);
    usleep(200000);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'kill' AND state = 'running' AND cost_usd > 0"), 10);
    check_sums(c);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.workers", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_params", 1);
    RUN(test_readme_classify_example_gets_its_own_labels);
    RUN(test_param_the_kind_stopped_reading_fails_at_claim);
    RUN(test_missing_logprobs_never_pass);
    RUN(test_max_tokens_capped_and_truncation_fails);
    RUN(test_bad_item_in_batch_fails_alone);
    RUN(test_batches_never_mix_runs);
    RUN(test_transient_batch_failure_is_not_split);
    RUN(test_context_too_long_fails_before_any_request);
    RUN(test_sigterm_keeps_paid_rows_of_calls_cut_short);
    RUN(test_kill_9_keeps_paid_rows_of_calls_in_flight);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
