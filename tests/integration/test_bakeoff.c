/* `tierq reprocess` and `tierq bakeoff` end to end: the real tierq, a real PostgreSQL, the simulator.
 * Covers the copy of a run's dataset into a new run (what is copied, what is refused), params.model
 * pinning a job to one model (no escalation, no cache, refused at INSERT when unknown), and a
 * bake-off whose table equals what this test computes itself over tierq.calls and tierq.jobs, with
 * the recommendation the stated rule gives when one model is far better and when two tie. The kinds
 * live in a private jobs/ directory so that edits to the shipped catalog never move these figures. */
#include "reportjson.h"
#include "runhelp.h"

#include "err.h"
#include "json.h"

static char dir[256], jobs_dir[300], answers[300];
static const char *const LABELS[] = {"alpha", "beta", "gamma"};

static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_bakeoff.%d", (int)getpid());
    snprintf(jobs_dir, sizeof jobs_dir, "%s/jobs", dir);
    snprintf(answers, sizeof answers, "%s/answers.tsv", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/jobs/models.json' '%s/'", dir, jobs_dir,
             getenv("TIERQ_ROOT"), jobs_dir);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    /* the cheap tier's bar is never met: every unpinned job escalates, so a pin that holds shows */
    snprintf(p, sizeof p, "%s/bake.json", jobs_dir);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\",\n"
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 1.0}, {\"model\": \"gpt-4o\"}],\n"
                  " \"max_tokens\": 8, \"temperature\": 0,\n"
                  " \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"], \"logprobs\": true},\n"
                  " \"cache\": {\"enabled\": true, \"ttl_s\": 3600}}\n");
    /* batches: jobs pinned to different models must never share a request */
    snprintf(p, sizeof p, "%s/bunch.json", jobs_dir);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\",\n"
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.5}, {\"model\": \"gpt-4o\"}],\n"
                  " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"]},\n"
                  " \"batch\": {\"enabled\": true, \"max_items\": 8, \"max_input_tokens\": 6000, \"fill_ms\": 100,"
                  " \"across_runs\": true}}\n");
    snprintf(p, sizeof p, "%s/other.json", jobs_dir);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\", \"tiers\": [{\"model\": \"gpt-4o-mini\"}],"
                  " \"max_tokens\": 16}\n");
    FILE *f = fopen(answers, "w");
    fprintf(f, "kind\tprompt\texpected\n");
    for (int i = 1; i <= 60; i++)
        fprintf(f, "bake\tbake item %d\t%s\n", i, LABELS[i % 3]);
    for (int i = 1; i <= 24; i++)
        fprintf(f, "bunch\tbunch item %d\t%s\n", i, LABELS[i % 3]);
    fclose(f);
    setenv("TIERQ_JOBS_DIR", jobs_dir, 1);
}

/* `tierq ARGS` against the simulator s (NULL: none): exit status; stdout alone in out (stderr
 * discarded, or appended when with_err). */
static int tierq(const SimProc *s, const char *args, char *out, size_t cap, int with_err)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "TIERQ_DATABASE_URL='%s' TIERQ_BASE_URL='%s' '%s' %s %s", testdb_conninfo,
             s ? s->base_url : "http://127.0.0.1:9/v1", getenv("TIERQ_BIN"), args, with_err ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A query's single text value ("" on error or NULL). */
static const char *qtext(PGconn *c, const char *sql)
{
    static char bufs[8][256];
    static int next;
    char *o = bufs[next++ % 8];
    o[0] = '\0';
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        snprintf(o, sizeof bufs[0], "%s", PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        printf("# query failed: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return o;
}

static void seed_run_a(PGconn *c)
{
    testdb_exec(c, "DELETE FROM tierq.jobs WHERE run_name = 'A'", NULL, 0);
    char err[512];
    /* 6 bake jobs (one cancelled, one failed: still part of the dataset), 3 other, 1 in another run */
    int rc = testdb_exec(c,
                         "INSERT INTO tierq.jobs (kind, prompt, context, expected, priority, run_name, state, max_attempts,"
                         "                        max_budget_usd, params)"
                         " SELECT 'bake', 'bake item ' || g, 'ctx ' || g, (ARRAY['alpha','beta','gamma'])[g % 3 + 1],"
                         "   g, 'A', CASE g WHEN 5 THEN 'cancelled' WHEN 6 THEN 'failed' ELSE 'queued' END, 3,"
                         "   CASE WHEN g = 2 THEN 0.5 END, CASE WHEN g = 3 THEN '{\"max_tokens\": 4}'::jsonb ELSE '{}' END"
                         " FROM generate_series(1, 6) g;"
                         "INSERT INTO tierq.jobs (kind, prompt, run_name, state) SELECT 'other', 'o ' || g, 'A', 'done'"
                         " FROM generate_series(1, 3) g;"
                         "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('bake', 'elsewhere', 'Z')",
                         err, sizeof err);
    CHECKF(rc == 0, "seed: %s", err);
}

/* The dataset columns of a run, for comparing two runs as multisets. */
#define DATASET(run)                                                                                    \
    "SELECT kind, prompt, system_prompt, context, params - 'model', expected, priority, max_attempts,"  \
    " max_budget_usd FROM tierq.jobs WHERE run_name = '" run "'"

static void test_reprocess_copies_the_dataset_of_a_run(void)
{
    PGconn *c = testdb_connect();
    seed_run_a(c);
    char out[8192];
    int st = tierq(NULL, "reprocess --from-run A --run B", out, sizeof out, 1);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECKF(strstr(out, "enqueued 5 jobs of kind bake from run A into run B") &&
               strstr(out, "enqueued 3 jobs of kind other from run A into run B"),
           "%s", out);
    /* exactly A's jobs but the cancelled one, queued afresh, nothing of A's outcome */
    CHECK_INT(q(c, "SELECT count(*) FROM (" DATASET("B") " EXCEPT ALL (" DATASET("A") " AND state <> 'cancelled')) x"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM ((" DATASET("A") " AND state <> 'cancelled') EXCEPT ALL " DATASET("B") ") x"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'B'"), 8);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'B' AND state = 'queued' AND attempts = 0"
                   " AND result IS NULL AND cost_usd = 0"), 8);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'B' AND prompt = 'bake item 5'"), 0);
    /* an existing run is refused, and nothing is added to it */
    st = tierq(NULL, "reprocess --from-run A --run B", out, sizeof out, 1);
    CHECKF(st == 1 && strstr(out, "run B already has 8 jobs"), "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'B'"), 8);
    /* --append adds; --kinds narrows; a dry run enqueues nothing */
    st = tierq(NULL, "reprocess --from-run A --run B --append --kinds other --dry-run", out, sizeof out, 1);
    CHECKF(st == 0 && strstr(out, "would enqueue 3 jobs of kind other"), "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'B'"), 8);
    st = tierq(NULL, "reprocess --from-run A --run B --append --kinds other", out, sizeof out, 1);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'B' AND kind = 'other'"), 6);
    /* --model-map pins (baseline, a model), tiered unpins */
    st = tierq(NULL, "reprocess --from-run A --run C --model-map baseline --kinds bake", out, sizeof out, 1);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'C' AND params ->> 'model' = 'baseline'"), 5);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'C' AND params ->> 'max_tokens' = '4'"), 1);
    st = tierq(NULL, "reprocess --from-run C --run D --model-map tiered", out, sizeof out, 1);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'D' AND NOT params ? 'model'"), 5);
    /* refusals: unknown kind, unknown model, an empty source, the same run, missing arguments */
    st = tierq(NULL, "reprocess --from-run A --run E --kinds bake,nosuch", out, sizeof out, 1);
    CHECKF(st == 2 && strstr(out, "unknown kind nosuch"), "exit %d: %s", st, out);
    st = tierq(NULL, "reprocess --from-run A --run E --model-map gpt-9", out, sizeof out, 1);
    CHECKF(st == 2 && strstr(out, "gpt-9 is none of them"), "exit %d: %s", st, out);
    st = tierq(NULL, "reprocess --from-run nothing-here --run E", out, sizeof out, 1);
    CHECKF(st == 1 && strstr(out, "run nothing-here has no jobs"), "exit %d: %s", st, out);
    st = tierq(NULL, "reprocess --from-run A --run A --append", out, sizeof out, 1);
    CHECKF(st == 1 && strstr(out, "must differ"), "exit %d: %s", st, out);
    st = tierq(NULL, "reprocess --run E", out, sizeof out, 1);
    CHECKF(st == 2 && strstr(out, "--from-run and --run are required"), "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'E'"), 0);
    PQfinish(c);
}

static void test_pinned_job_is_answered_by_its_model_alone(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    char err[512];
    /* an unknown model is refused at INSERT, naming the rule */
    int rc = testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('bake', 'x', '{\"model\": \"gpt-9\"}')",
                         err, sizeof err);
    CHECKF(rc != 0 && strstr(err, "must name a model of jobs/models.json"), "%s", err);
    rc = testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('bake', 'x', '{\"model\": 7}')", err, sizeof err);
    CHECK(rc != 0);
    /* unpinned, the kind escalates every job (bar 1.0) and fills the cache */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'bake', 'bake item ' || g, 'free'"
                   " FROM generate_series(1, 10) g", NULL, 0);
    int st = run_drain(&s, "--run free");
    CHECKF(st == 0, "exit %d: %s", st, run_out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'free' AND escalations = 1 AND model = 'gpt-4o'"), 10);
    long long cached = q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'bake'");
    CHECKF(cached == 10, "%lld cache entries", cached);
    /* pinned to the cheap model: the same prompts, one answer call each on that model, no hit, nothing stored */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, params) SELECT 'bake', 'bake item ' || g, 'pin',"
                   " '{\"model\": \"qwen3-8b\"}' FROM generate_series(1, 12) g", NULL, 0);
    st = run_drain(&s, "--run pin");
    CHECKF(st == 0, "exit %d: %s", st, run_out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'pin' AND state = 'done' AND model = 'qwen3-8b'"
                   " AND tier = 1 AND escalations = 0 AND NOT cache_hit AND quality IS NOT NULL"), 12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'pin'"), 12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'pin' AND purpose = 'answer' AND model = 'qwen3-8b'"
                   " AND reason = 'final_tier' AND score IS NOT NULL"), 12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'bake'"), cached);
    /* "baseline" pins to the kind's baseline model (gpt-4o) */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, params) SELECT 'bake', 'bake item ' || g, 'pinbase',"
                   " '{\"model\": \"baseline\"}' FROM generate_series(1, 3) g", NULL, 0);
    st = run_drain(&s, "--run pinbase");
    CHECKF(st == 0, "exit %d: %s", st, run_out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'pinbase' AND model = 'gpt-4o'"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'pinbase' AND model = 'gpt-4o' AND NOT cache_hit"), 3);
    /* batching: pins to two models in one batching kind (across runs) never share a request */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, params) SELECT 'bunch', 'bunch item ' || g, 'mix',"
                   " jsonb_build_object('model', CASE WHEN g % 2 = 0 THEN 'qwen3-8b' ELSE 'gpt-4o-mini' END)"
                   " FROM generate_series(1, 24) g", NULL, 0);
    st = run_drain(&s, "--run mix");
    CHECKF(st == 0, "exit %d: %s", st, run_out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'mix' AND state = 'done'"
                   " AND model = params ->> 'model'"), 24);
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'mix' AND cardinality(job_ids) > 1") > 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k WHERE run_name = 'mix' AND EXISTS (SELECT 1 FROM tierq.jobs j"
                   " WHERE j.id = ANY (k.job_ids) AND j.params ->> 'model' <> k.model)"), 0);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}


/* One model's row of the JSON table against the ledger and the jobs, computed here. */
static void check_row(PGconn *c, const JsonDoc *d, int row, const char *model, const char *run, long jobs)
{
    char sql[1024];
    CHECK_STR(jv(d, row, "model"), model);
    CHECK_INT(atol(jv(d, row, "jobs")), jobs);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE run_name = '%s' AND state = 'done'", run);
    CHECK_INT(atol(jv(d, row, "done")), q(c, sql));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE run_name = '%s' AND state IN ('failed', 'dead')", run);
    CHECK_INT(atol(jv(d, row, "failed")), q(c, sql));
    /* dollars: the table's figure is the ledger's sum, to the last digit; and the jobs' too */
    snprintf(sql, sizeof sql, "SELECT (%s::numeric = sum(cost_usd))::int FROM tierq.calls WHERE run_name = '%s'",
             jv(d, row, "cost_usd"), run);
    CHECKF(q(c, sql) == 1, "%s: cost %s", run, jv(d, row, "cost_usd"));
    snprintf(sql, sizeof sql, "SELECT (%s::numeric = sum(cost_usd))::int FROM tierq.jobs WHERE run_name = '%s'",
             jv(d, row, "cost_usd"), run);
    CHECK_INT(q(c, sql), 1);
    snprintf(sql, sizeof sql, "SELECT (%s::numeric = round(sum(cost_usd) * 1000 / %ld, 9))::int FROM tierq.calls WHERE run_name = '%s'",
             jv(d, row, "cost_per_1k_jobs_usd"), jobs, run);
    CHECK_INT(q(c, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tierq.jobs WHERE run_name = '%s' AND state = 'done'"
             " AND tierq.normalize_answer(result) = tierq.normalize_answer(expected)", run);
    CHECK_INT(atol(jv(d, row, "correct")), q(c, sql));
    snprintf(sql, sizeof sql,
             "SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM tierq.calls WHERE run_name = '%s'"
             " AND purpose = 'answer' AND status = 'ok'", run);
    CHECK_INT(atol(jv(d, row, "latency_p95_ms")), q(c, sql));
    /* only the model's own answers, none from the cache, no escalation */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.calls WHERE run_name = '%s' AND model <> '%s'", run, model);
    CHECK_INT(q(c, sql), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE run_name = '%s' AND (cache_hit OR escalations > 0)", run);
    CHECK_INT(q(c, sql), 0);
}

static int parse_table(const char *text, JsonDoc *d)
{
    TqErr err = {0};
    if (json_parse(d, text, strlen(text), 0, &err)) {
        CHECKF(0, "not JSON (%s): %s", err.msg, text);
        return -1;
    }
    return json_get(d, 0, "models");
}

static void seed_bake_run(PGconn *c, const char *run, int n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO tierq.jobs (kind, prompt, expected, run_name, state)"
             " SELECT 'bake', 'bake item ' || g, (ARRAY['alpha','beta','gamma'])[g %% 3 + 1], '%s', 'done'"
             " FROM generate_series(1, %d) g", run, n);
    testdb_exec(c, sql, NULL, 0);
}

static void test_bakeoff_table_matches_the_ledger(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    CHECK_INT(sim_tune(&s, "qwen3-8b", "{\"skill\": 0.02}"), 200);
    CHECK_INT(sim_tune(&s, "gpt-4o", "{\"skill\": 1.0}"), 200);
    PGconn *c = testdb_connect();
    seed_bake_run(c, "gold", 40);
    static char out[65536];
    int st = tierq(&s, "bakeoff --from-run gold --kind bake --models qwen3-8b,gpt-4o --sample 25 --format json", out,
                   sizeof out, 0);
    CHECKF(st == 0, "exit %d: %s", st, out);
    JsonDoc d;
    int models = parse_table(out, &d);
    CHECK(models >= 0 && json_size(&d, models) == 2);
    if (models >= 0 && json_size(&d, models) == 2) {
        check_row(c, &d, json_at(&d, models, 0), "qwen3-8b", "bakeoff-gold-bake-qwen3-8b", 25);
        check_row(c, &d, json_at(&d, models, 1), "gpt-4o", "bakeoff-gold-bake-gpt-4o", 25);
        CHECK_STR(jv(&d, 0, "metric"), "accuracy");
        /* gpt-4o is right every time; qwen3-8b much less: far outside the margin */
        CHECK_INT(atol(jv(&d, json_at(&d, models, 1), "correct")), 25);
        CHECK(atol(jv(&d, json_at(&d, models, 0), "correct")) < 20);
        int rec = json_get(&d, 0, "recommendation");
        CHECK_STR(jv(&d, rec, "model"), "gpt-4o");
        CHECK(strstr(jv(&d, rec, "change"), "set tiers[0].model to gpt-4o") != NULL);
    }
    json_doc_free(&d);
    /* both runs hold the same 25 jobs: those of lowest md5(id) in the source run */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT prompt, expected FROM tierq.jobs WHERE run_name = 'bakeoff-gold-bake-qwen3-8b'"
                   " EXCEPT SELECT prompt, expected FROM tierq.jobs WHERE run_name = 'bakeoff-gold-bake-gpt-4o') x"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM ((SELECT prompt FROM tierq.jobs WHERE run_name = 'gold' ORDER BY md5(id::text), id LIMIT 25)"
                   " EXCEPT SELECT prompt FROM tierq.jobs WHERE run_name = 'bakeoff-gold-bake-gpt-4o') x"), 0);
    /* a rerun is refused (the runs have jobs) and says how to re-print; --report-only re-prints */
    st = tierq(&s, "bakeoff --from-run gold --kind bake --models qwen3-8b,gpt-4o --sample 25", out, sizeof out, 1);
    CHECKF(st == 1 && strstr(out, "already has 25 jobs") && strstr(out, "--report-only"), "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name LIKE 'bakeoff-gold-bake-%'"), 50);
    st = tierq(&s, "bakeoff --from-run gold --kind bake --models qwen3-8b,gpt-4o --report-only", out, sizeof out, 0);
    CHECKF(st == 0 && strstr(out, "recommendation: set tiers[0].model to gpt-4o in") && strstr(out, "+++ ") &&
               strstr(out, "accuracy") && strstr(out, "100.0% (25/25)"),
           "exit %d: %s", st, out);
    PQfinish(c);
    sim_stop(&s);
}

static void test_bakeoff_recommends_the_cheaper_of_a_tie(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    CHECK_INT(sim_tune(&s, "gpt-4o-mini", "{\"skill\": 1.0}"), 200);
    CHECK_INT(sim_tune(&s, "gpt-4o", "{\"skill\": 1.0}"), 200);
    PGconn *c = testdb_connect();
    seed_bake_run(c, "tie", 12);
    static char out[65536];
    /* listed dearest first: the rule, not the order, picks */
    int st = tierq(&s, "bakeoff --from-run tie --kind bake --models baseline,gpt-4o-mini --run-prefix duel", out,
                   sizeof out, 0);
    CHECKF(st == 0, "exit %d: %s", st, out);
    char line[512];
    CHECKF(strstr(line_of(out, "gpt-4o-mini ", line, sizeof line), "100.0% (12/12)"), "%s", out);
    CHECKF(strstr(line_of(out, "gpt-4o ", line, sizeof line), "100.0% (12/12)"), "%s", out);
    CHECKF(strstr(out, "recommendation: set tiers[0].model to gpt-4o-mini in"), "%s", out);
    /* the diff: gpt-4o-mini first (the bar kept), gpt-4o stays as the tier above it */
    CHECKF(strstr(out, "\"model\": \"gpt-4o-mini\", \"accept\": 1.00") && strstr(out, "{\"model\": \"gpt-4o\"}"), "%s", out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'duel-gpt-4o' AND model = 'gpt-4o'"), 12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'duel-gpt-4o-mini' AND model = 'gpt-4o-mini'"), 12);
    /* the table's costs are the ledger's, and the cheaper is the one recommended */
    CHECK(strtod(qtext(c, "SELECT sum(cost_usd) FROM tierq.calls WHERE run_name = 'duel-gpt-4o-mini'"), NULL) <
          strtod(qtext(c, "SELECT sum(cost_usd) FROM tierq.calls WHERE run_name = 'duel-gpt-4o'"), NULL));
    CHECKF(strstr(line_of(out, "gpt-4o-mini ", line, sizeof line),
                  qtext(c, "SELECT round(sum(cost_usd), 6) FROM tierq.calls WHERE run_name = 'duel-gpt-4o-mini'")),
           "%s", out);
    /* --no-run enqueues only; the table then says none is recommended while jobs wait */
    st = tierq(&s, "bakeoff --from-run tie --kind bake --models qwen3-8b,gpt-4o --run-prefix later --no-run", out,
               sizeof out, 0);
    CHECKF(st == 0 && strstr(out, "enqueued 12 jobs of kind bake into run later-qwen3-8b"), "exit %d: %s", st, out);
    st = tierq(&s, "bakeoff --from-run tie --kind bake --models qwen3-8b,gpt-4o --run-prefix later --report-only", out,
               sizeof out, 0);
    CHECKF(st == 0 && strstr(out, "recommendation: none (jobs are still queued or running)"), "exit %d: %s", st, out);
    PQfinish(c);
    sim_stop(&s);
}

static void test_bakeoff_refuses_bad_arguments(void)
{
    static const struct {
        const char *args;
        int status;
        const char *says;
    } cases[] = {
        {"bakeoff --from-run tie --kind bake --models gpt-4o", 2, "two or more models"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,gpt-9", 2, "unknown model gpt-9"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,baseline", 2, "model gpt-4o is given twice"},
        {"bakeoff --from-run tie --kind nosuch --models gpt-4o,qwen3-8b", 2, "unknown kind nosuch"},
        {"bakeoff --kind bake --models gpt-4o,qwen3-8b", 2, "--from-run, --kind and --models are required"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,qwen3-8b --sample 0", 2, "--sample takes"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,qwen3-8b --margin -1", 2, "--margin takes"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,qwen3-8b --no-run --report-only", 2, "do not go together"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,qwen3-8b --sample", 2, "--sample needs a value"},
        {"bakeoff --from-run tie --kind bake --models gpt-4o,qwen3-8b --bogus", 2, "unknown option --bogus"},
        {"bakeoff --from-run nowhere --kind bake --models gpt-4o,qwen3-8b --no-run", 1, "run nowhere has no jobs"},
        {"bakeoff --from-run nowhere --kind bake --models gpt-4o,qwen3-8b --report-only", 1, "no bake-off run has jobs"},
    };
    PGconn *c = testdb_connect();
    long long before = q(c, "SELECT count(*) FROM tierq.jobs");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[8192];
        int st = tierq(NULL, cases[i].args, out, sizeof out, 1);
        CHECKF(st == cases[i].status && strstr(out, cases[i].says), "%s: exit %d: %s", cases[i].args, st, out);
    }
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs"), before);
    PQfinish(c);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_bakeoff", 1);
    RUN(test_reprocess_copies_the_dataset_of_a_run);
    RUN(test_pinned_job_is_answered_by_its_model_alone);
    RUN(test_bakeoff_table_matches_the_ledger);
    RUN(test_bakeoff_recommends_the_cheaper_of_a_tie);
    RUN(test_bakeoff_refuses_bad_arguments);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
