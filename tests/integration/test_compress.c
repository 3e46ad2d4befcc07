/* Context compression end to end: the real tierq against the simulator and a private PostgreSQL.
 * A long context is compressed once and reused by every job that shares it (one `compress` ledger
 * row listing them, its cost apportioned exactly); the free clean-up alone avoids a call when it is
 * enough; a compressor that fails leaves the jobs to be answered from the cleaned original; an
 * escalated job's next tier sees the original context; a short context is sent untouched; the stored
 * compression is reused across runs and round-trips exactly; a corrupt stored one is ignored with a
 * warning. */
#include "compresskinds.h"
#include "runhelp.h"

#include <sys/stat.h>

static char dir[256], jobs[300], answers[320];
#define out run_out

static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_compress.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/jobs/*.json '%s/'", dir, jobs, getenv("TIERQ_ROOT"),
             jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    /* shared: one compression per document whatever the question */
    snprintf(p, sizeof p, "%s/doc.json", jobs);
    write_file(p, DOC_KIND_JSON);
    /* tier 1 never good enough: every job escalates, and tier 2 gets the original context */
    snprintf(p, sizeof p, "%s/esc.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer the question from the context in a few words.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 1.0}, {\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-4o\","
                  " \"max_tokens\": 64, \"temperature\": 0, \"checks\": {\"min_chars\": 1, \"logprobs\": true},"
                  " \"cache\": {\"enabled\": false},"
                  " \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100}}");
    /* as doc, compressed by another model than tier 1's, so a fault can hit the compressor alone */
    snprintf(p, sizeof p, "%s/doc32.json", jobs);
    write_file(p, DOC32_KIND_JSON);
    /* a summary of a long text given as the prompt (compress.prompt), batched like summarize */
    snprintf(p, sizeof p, "%s/sum.json", jobs);
    write_file(p, "{\"system_prompt\": \"Summarize the text in one line.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0}, {\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-4o\","
                  " \"max_tokens\": 64, \"temperature\": 0, \"checks\": {\"min_chars\": 1}, \"cache\": {\"enabled\": false},"
                  " \"batch\": {\"enabled\": true, \"max_items\": 4},"
                  " \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100, \"prompt\": true}}");
    /* one tier, compressed by a model the test switches to truncation: a fact at the end is lost */
    snprintf(p, sizeof p, "%s/ask.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer the question from the context with its exact words.\","
                  " \"tiers\": [{\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-4o\","
                  " \"max_tokens\": 64, \"temperature\": 0, \"checks\": {\"min_chars\": 1}, \"cache\": {\"enabled\": false},"
                  " \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100, \"model\": \"qwen3-32b\","
                  " \"question_aware\": false, \"escalate_with_original\": false}}");
    /* an answer key with documents: the fact of document N is its last line */
    snprintf(answers, sizeof answers, "%s/answers.tsv", dir);
    FILE *f = fopen(answers, "w");
    if (f) {
        fprintf(f, "kind\tprompt\tcontext\texpected\n");
        for (int d = 1; d <= 6; d++) {
            fprintf(f, "ask\tWhat is the secret of document %d?\t", d);
            for (int i = 0; i < 150; i++)
                fprintf(f, "Line %d of document %d holds nothing of interest at all.\\n", i, d);
            fprintf(f, "The secret of document %d is zebra-%d.\tzebra-%d\n", d, d, d);
        }
        fclose(f);
    }
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}

static void reset(PGconn *c)
{
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.compressed; DELETE FROM tierq.cache;"
                   " DELETE FROM tierq.workers", NULL, 0);
}

static void test_one_compression_serves_every_job_sharing_the_context(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'Which license has package ' || g || '?', "
                   LONG_DOC ", 'one' FROM generate_series(1, 5) g", NULL, 0);
    int st = run_drain(&s, "--run one");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND status = 'ok' AND reason = 'compressed'"
                   " AND cardinality(job_ids) = 5 AND model = 'qwen3-8b'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'one' AND state = 'done' AND compression = 'compressed'"
                   " AND context_tokens_before > 2000 AND context_tokens_after BETWEEN 1 AND 200"
                   " AND compress_tokens_saved = context_tokens_before - context_tokens_after AND compress_saved_usd > 0"), 5);
    /* the compression's cost is in the jobs' cost, in shares that sum to the row exactly */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT (SELECT cost_usd FROM tierq.calls WHERE purpose = 'compress') AS row_cost,"
                   " (SELECT sum(j.cost_usd - a.cost) FROM tierq.jobs j JOIN (SELECT x AS id, sum(cost_usd) AS cost FROM tierq.calls,"
                   "   unnest(job_ids) x WHERE purpose = 'answer' GROUP BY x) a ON a.id = j.id) AS shares) z"
                   " WHERE row_cost = shares AND row_cost > 0"), 1);
    /* the answers went out with the short context: each answer request far under the document */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tokens_in < 300"), 5);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.compressed WHERE tokens_before > 2000 AND tokens_after < 200 AND cost_usd > 0"), 1);
    /* stored as a zstd frame (the text is long enough for one to pay) */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.compressed WHERE substr(text_z, 1, 4) = '\\x28b52ffd'::bytea"
                   " AND octet_length(text_z) < raw_len"), 1);
    check_sums(c);
    /* another run, other questions, same document: the stored compression is reused, no new call */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'What license does package ' || g || ' have?', "
                   LONG_DOC ", 'two' FROM generate_series(1, 3) g", NULL, 0);
    st = run_drain(&s, "--run two");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'two' AND state = 'done' AND compression = 'reused'"
                   " AND compress_tokens_saved > 2000"), 3);
    /* the stored text as it was made: the answers again went out with the short context */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = ANY (k.job_ids)"
                   " WHERE k.purpose = 'answer' AND j.run_name = 'two' AND k.tokens_in < 300"), 3);
    CHECK_INT(q(c, "SELECT uses FROM tierq.compressed"), 3);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* Markup, blank runs and a repeated page footer make a context long; cleaned, it is under the
 * threshold: no compression call, the cleaned text sent. A short context is untouched. */
static void test_clean_up_alone_and_short_contexts(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) VALUES"
                   " ('doc', 'What is it?', (SELECT string_agg('<div class=\"page\"><p>Page ' || i || '</p>'"
                   "   || '                                        </div>' || E'\\n' || 'This page is part of the very long and"
                   " boring manual footer.' || E'\\n\\n\\n', '') FROM generate_series(1, 60) i), 'clean'),"
                   " ('doc', 'And this?', 'A short context.', 'clean')",
                NULL, 0);
    int st = run_drain(&s, "--run clean");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress'"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt = 'What is it?' AND state = 'done' AND compression = 'cleaned'"
                   " AND context_tokens_before > 300 AND context_tokens_after <= 300"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt = 'And this?' AND state = 'done' AND compression = 'none'"
                   " AND context_tokens_before IS NULL AND compress_tokens_saved = 0"), 1);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* The compressor fails (server errors past the tries): the jobs are answered from the cleaned
 * original, state failed, the failed exchanges in the ledger and charged; nothing is stored. */
static void test_compressor_failure_falls_back_to_the_original(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    /* the marker fails every request to the compressor (qwen3-32b), none to tier 1 (qwen3-8b); the
     * two jobs have different questions and the compression is question-aware: two compressions */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc32', 'Which license has package ' || g || '?', "
                   "'[[sim:500:times=1000:model=qwen3-32b]] ' || " LONG_DOC ", 'fail' FROM generate_series(1, 2) g", NULL, 0);
    int st = run_drain(&s, "--run fail --max-tries 2");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND status = 'retry' AND http_status = 500"
                   " AND model = 'qwen3-32b' AND cardinality(job_ids) = 1"), 4);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'fail' AND state = 'done' AND compression = 'failed'"
                   " AND context_tokens_before = context_tokens_after AND compress_tokens_saved = 0"), 2);
    /* answered with the whole (cleaned) document */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tokens_in > 2000"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.compressed"), 0);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* The compressor answers, but with nothing usable: an empty text, or one longer than the document.
 * Either way the jobs are answered from the cleaned original (failed), the exchange is in the
 * ledger with why, and nothing is stored. */
static void test_unusable_compressor_output_falls_back(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) VALUES"
                   " ('doc32', 'Which license has package 1?', '[[sim:empty:times=1000:model=qwen3-32b]] ' || " LONG_DOC ", 'bad'),"
                   " ('doc32', 'Which license has package 2?', '[[sim:echo_long:times=1000:model=qwen3-32b]] ' || " LONG_DOC ", 'bad')",
                NULL, 0);
    int st = run_drain(&s, "--run bad");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND status = 'ok' AND reason = 'compress_empty'"
                   " AND error LIKE 'compress_empty: %'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND status = 'ok'"
                   " AND reason IN ('compress_not_shorter', 'compress_cut_off')"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'bad' AND state = 'done' AND compression = 'failed'"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tokens_in > 2000"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.compressed"), 0);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* escalate_with_original (default): tier 1 gets the compressed context, tier 2 the original. */
static void test_escalation_sees_the_original(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'esc', 'Which license has package 7?', "
                   LONG_DOC ", 'esc'", NULL, 0);
    int st = run_drain(&s, "--run esc");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'esc' AND state = 'done' AND tier = 2 AND compression = 'compressed'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tier = 1 AND tokens_in < 300"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tier = 2 AND tokens_in > 2000"), 1);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* A stored compression whose bytes are corrupt is not used: a warning, a new compression call. */
static void test_corrupt_stored_compression_is_ignored(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'Q1', " LONG_DOC ", 'c1'", NULL, 0);
    CHECK_INT(run_drain(&s, "--run c1"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.compressed"), 1);
    testdb_exec(c, "UPDATE tierq.compressed SET text_z = '\\x28b52ffd2005290000deadbeefdeadbeef'::bytea", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'Q2', " LONG_DOC ", 'c2'", NULL, 0);
    int st = run_drain(&s, "--run c2");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECKF(strstr(out, "cannot be used") != NULL, "no warning: %s", out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress'"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'c2' AND state = 'done' AND compression = 'compressed'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.compressed"), 1);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* The compressor drops the fact (truncation keeps only the head); the model says the document does
 * not state it; that answer is not believed: the same tier is asked again with the original, and
 * the job ends with the fact. */
static void test_not_stated_is_asked_again_with_the_original(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    CHECK_INT(sim_tune(&s, "qwen3-32b", "{\"compress\": {\"mode\": \"truncate\"}}"), 200);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "CREATE TEMP TABLE st (kind text, prompt text, context text, expected text)", NULL, 0);
    /* COPY through the client: the server runs as another user and may not read the file */
    FILE *f = fopen(answers, "r");
    PGresult *r = PQexec(c, "COPY st FROM STDIN WITH (FORMAT text, HEADER true)");
    CHECK(PQresultStatus(r) == PGRES_COPY_IN);
    PQclear(r);
    char line[16384];
    while (f && fgets(line, sizeof line, f))
        PQputCopyData(c, line, (int)strlen(line));
    if (f)
        fclose(f);
    PQputCopyEnd(c, NULL);
    PQclear(PQgetResult(c));
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, expected, run_name) SELECT kind, prompt, context, expected, 'ask'"
                   " FROM st", NULL, 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'ask'"), 6);
    int st = run_drain(&s, "--run ask");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND status = 'ok' AND reason = 'compressed'"), 6);
    /* the first answers (from the truncated document) that said it is not there — all but the model's
     * wrong draws (seed 1: one of six) — were asked again, with the whole document */
    long long reasked = q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND reason = 'not_in_compressed_context'"
                             " AND tokens_in < 300");
    CHECKF(reasked >= 4, "%lld of 6 asked again", reasked);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tokens_in > 1000"), reasked);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE run_name = 'ask' AND state = 'done' AND result = expected"
                   " AND EXISTS (SELECT 1 FROM tierq.calls k WHERE j.id = ANY (k.job_ids) AND k.reason = 'not_in_compressed_context')"),
              reasked);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* compress.prompt: a long prompt without a context is compressed like a context (no question told),
 * and the batched request carries the short text; a short prompt is untouched. */
static void test_long_prompt_is_compressed(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'sum', 'Text number ' || g || E':\\n' ||"
                   " (SELECT string_agg('Sentence ' || i || ' of text ' || g || ' says something rather long about the package.',"
                   " E'\\n') FROM generate_series(1, 120) i), 'sum' FROM generate_series(1, 3) g", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('sum', 'A short text.', 'sum')", NULL, 0);
    int st = run_drain(&s, "--run sum");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND status = 'ok' AND reason = 'compressed'"
                   " AND cardinality(job_ids) = 1 AND tokens_in > 1000"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'sum' AND state = 'done' AND compression = 'compressed'"
                   " AND context_tokens_before > 1000 AND context_tokens_after < 200 AND compress_tokens_saved > 800"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt = 'A short text.' AND state = 'done' AND compression = 'none'"), 1);
    /* no answer request carried a whole text */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'answer' AND tokens_in > 1000"), 0);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* Two identical jobs (one response-cache key) with a long context: the first leads, the second
 * waits for its answer. The leader fails inside its compression call (a parameter its kind no longer
 * reads): the waiter goes out itself instead of waiting for ever, and the run ends. */
static void test_leader_failing_in_compression_releases_its_waiters(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    char p[400], cmd[1400], dir2[320];
    snprintf(p, sizeof p, "%s/toned.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer in a {tone} tone.\", \"params\": {\"tone\": {\"default\": \"plain\"}},"
                  " \"tiers\": [{\"model\": \"qwen3-8b\"}], \"baseline_model\": \"gpt-4o\", \"max_tokens\": 64,"
                  " \"temperature\": 0, \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100}}");
    CHECK_INT(testdb_run("migrate", out, sizeof out), 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, params, run_name) SELECT 'toned', 'Which license?', "
                   LONG_DOC ", '{\"tone\": \"dry\"}', 'toned' FROM generate_series(1, 2) g", NULL, 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'toned'"), 2);
    /* the kind's file changes under the queued jobs: it no longer reads tone */
    snprintf(dir2, sizeof dir2, "%s/jobs-untoned", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/*.json '%s/'", dir2, dir2, jobs, dir2);
    CHECK_INT(system(cmd), 0);
    snprintf(p, sizeof p, "%s/toned.json", dir2);
    write_file(p, "{\"system_prompt\": \"Answer plainly.\", \"tiers\": [{\"model\": \"qwen3-8b\"}], \"baseline_model\": \"gpt-4o\","
                  " \"max_tokens\": 64, \"temperature\": 0,"
                  " \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100}}");
    setenv("TIERQ_JOBS_DIR", dir2, 1);
    int st = run_drain(&s, "--run toned");
    setenv("TIERQ_JOBS_DIR", jobs, 1);
    CHECKF(st == 6, "exit %d (want 6: nothing succeeded): %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'toned' AND state = 'failed' AND reason = 'unknown_param'"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'toned' AND lease_owner IS NOT NULL"), 0);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_compress", 1);
    RUN(test_one_compression_serves_every_job_sharing_the_context);
    RUN(test_clean_up_alone_and_short_contexts);
    RUN(test_compressor_failure_falls_back_to_the_original);
    RUN(test_unusable_compressor_output_falls_back);
    RUN(test_escalation_sees_the_original);
    RUN(test_corrupt_stored_compression_is_ignored);
    RUN(test_not_stated_is_asked_again_with_the_original);
    RUN(test_long_prompt_is_compressed);
    RUN(test_leader_failing_in_compression_releases_its_waiters);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
