/* `tierq report` against a real PostgreSQL: known jobs and calls rows go in, and the dollars,
 * savings, latencies, error counts and accuracy a user reads must come out, as text and as JSON,
 * for every filter. Expected figures were worked out by hand from the rows below (exact decimals). */
#include "reportjson.h"
#include "testdb.h"

#include "err.h"
#include "json.h"
#include "report.h"

/* Two runs, two kinds, every job state. Done jobs carry the tier and model that answered; run r2 was
 * a baseline run (tier 1 = gpt-4o), so classify's tier 1 was served by two models. Costs are chosen so that rounding each job before summing
 * would give a different answer (0.0000104 + 0.0000204 + ... = 0.0001108 -> 0.000111, not 0.000110).
 * "old" rows finished / were made two days ago; the old queued job was created three days ago.
 * Calls: 1, 2, 4 and 6 are batches with a solo estimate; 3 is a batch that came back as a retry (no
 * estimate) and was re-sent as 2, so jobs 4 and 5 are served twice; 5 is a judge call over two jobs
 * (not an answer call: neither in the mean batch size nor a batched call; its tokens count per
 * job). Batching savings are chosen so that rounding per call would differ (0.0000196 + 0.0000046:
 * 0.000024 summed, 0.000025 rounded first). Job ids in calls are labels only (no foreign key). */
static const char *const SEED =
    "INSERT INTO tierq.jobs (kind, prompt, run_name, state, expected, result, cost_usd, baseline_cost_usd,"
    "                        started_at, finished_at, tier, model)"
    " SELECT kind, 'prompt', run, state, expected, result, cost, base,"
    "        CASE WHEN lat IS NOT NULL THEN fin - lat * interval '1 millisecond' END, fin, tier, model"
    " FROM (VALUES"
    "  ('classify',  'r1', 'done',      'Billing'::text,    '\"billing.\"'::text, 0.000010400000::numeric, 0.0004::numeric, 100,  now() - interval '5 minutes', 1, 'qwen3-8b'),"
    "  ('classify',  'r1', 'done',      'bug',              'Bug',               0.000020400000, 0.0004, 200,  now() - interval '5 minutes', 1,    'qwen3-8b'),"
    "  ('classify',  'r1', 'done',      'other',            'billing',           0.000030,       0.0004, 300,  now() - interval '5 minutes', 2,    'deepseek-v4-flash'),"
    "  ('classify',  'r1', 'done',      NULL,               'bug',               0.000040,       0.0004, 400,  now() - interval '5 minutes', 1,    'qwen3-8b'),"
    "  ('classify',  'r1', 'failed',    'bug',              NULL,                0.000005,       0,      NULL, now() - interval '5 minutes', NULL, NULL),"
    "  ('classify',  'r1', 'dead',      NULL,               NULL,                0.000005,       0,      NULL, now() - interval '5 minutes', NULL, NULL),"
    "  ('classify',  'r1', 'cancelled', NULL,               NULL,                0,              0,      NULL, now() - interval '5 minutes', NULL, NULL),"
    "  ('summarize', 'r1', 'done',      'Hello,   World!',  'hello world',       0.001,          0.01,   1000, now() - interval '5 minutes', 1,    'qwen3-32b'),"
    "  ('summarize', 'r1', 'done',      NULL,               'x',                 0.002,          0.02,   5000, now() - interval '2 days',    3,    'gpt-4o'),"
    "  ('classify',  'r2', 'done',      'yes',              'no',                0.5,            1.0,    50,   now() - interval '5 minutes', 1,    'gpt-4o')"
    " ) v(kind, run, state, expected, result, cost, base, lat, fin, tier, model);"
    "INSERT INTO tierq.jobs (kind, prompt, run_name, state, created_at)"
    " VALUES ('classify', 'waiting', 'r1', 'queued', now() - interval '3 days');"
    "INSERT INTO tierq.jobs (kind, prompt, run_name, state, attempts, lease_owner, lease_until, started_at)"
    " VALUES ('classify', 'in flight', 'r1', 'running', 1, 'w1', now() + interval '1 minute', now())";

static const char *const SEED_CALLS =
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, purpose, kind, model, tokens_in, tokens_cached_in,"
    "                         tokens_out, cost_usd, latency_ms, status, created_at, solo_tokens_in, solo_cost_usd)"
    " SELECT 'k' || n, run, jobs::bigint[], purpose, kind, model, tin, cin, tout, cost, lat, status, at, solo_tin, solo_cost"
    " FROM (VALUES"
    "  (1, 'r1', 'classify',  'qwen3-8b',          100,  10, 5,   0.000010400000::numeric, 100,  'ok',     now() - interval '5 minutes', '{1,2,3}',    'answer', 240::bigint, 0.0000300::numeric),"
    "  (2, 'r1', 'classify',  'qwen3-8b',          200,  0,  5,   0.000020400000,          300,  'ok',     now() - interval '5 minutes', '{4,5}',      'answer', 260,         0.0000250),"
    "  (3, 'r1', 'classify',  'qwen3-8b',          50,   0,  0,   0.000005,                1000, 'retry',  now() - interval '5 minutes', '{4,5}',      'answer', NULL,        NULL),"
    "  (4, 'r1', 'summarize', 'gpt-4o',            1000, 0,  100, 0.001,                   2000, 'ok',     now() - interval '5 minutes', '{8,11,12,13}', 'answer', 1600,      0.0016),"
    "  (5, 'r1', 'summarize', 'gpt-4o',            10,   0,  0,   0,                       NULL, 'failed', now() - interval '5 minutes', '{8,11}',     'judge',  NULL,        NULL),"
    "  (6, 'r1', 'summarize', 'gpt-4o',            2000, 0,  200, 0.002,                   4000, 'ok',     now() - interval '2 days',    '{9,14}',     'answer', 2500,        0.0021234567),"
    "  (7, 'r2', 'classify',  'deepseek-reasoner', 500,  0,  50,  0.5,                     700,  'ok',     now() - interval '5 minutes', '{10}',       'answer', NULL,        NULL),"
    "  (8, 'r1', 'classify',  'gpt-4o-mini',       5,    0,  0,   0,                       NULL, 'quota',  now() - interval '5 minutes', '{6}',        'answer', NULL,        NULL)"
    " ) v(n, run, kind, model, tin, cin, tout, cost, lat, status, at, jobs, purpose, solo_tin, solo_cost)";

static PGconn *report_db(void)
{
    static int seeded;
    if (!seeded) {
        testdb_setup("tq_report", 1);
        PGconn *c = testdb_connect();
        char err[1024];
        if (testdb_exec(c, SEED, err, sizeof err) != 0 || testdb_exec(c, SEED_CALLS, err, sizeof err) != 0) {
            printf("# seeding failed: %s\n", err);
            exit(1);
        }
        PQfinish(c);
        seeded = 1;
    }
    return testdb_connect();
}

/* Run the report into memory. *text is malloc'd (possibly empty) and always set. */
static int report_to_string(PGconn *c, ReportFormat format, const char *run, long since_s, char **text, TqErr *err)
{
    size_t len = 0;
    *text = NULL;
    FILE *f = open_memstream(text, &len);
    if (!f) {
        printf("# open_memstream failed\n");
        exit(1);
    }
    ReportOptions opt = {.format = format, .run_name = run, .since_s = since_s};
    int rc = report_run(c, &opt, f, err);
    fclose(f);
    return rc;
}

static const char *const TOP_KEYS[] = {"filters", "totals", "models", "missing_signals", "failures", "confidence", "shadow", "kinds"};
static const char *const FILTER_KEYS[] = {"run", "since_s"};
static const char *const TOTAL_KEYS[] = {"jobs", "jobs_by_state", "calls", "tokens_in", "tokens_cached_in",
                                         "tokens_out", "cost_usd", "baseline_cost_usd", "saved_usd", "saved_pct", "spend_usd",
                                         "shadow_cost_usd", "cache", "compression", "pruned"};
static const char *const STATE_KEYS[] = {"queued", "running", "done", "failed", "dead", "cancelled"};
static const char *const MODEL_KEYS[] = {"model", "calls", "tokens_in", "tokens_cached_in", "tokens_out",
                                              "cost_usd", "latency_p50_ms", "latency_p95_ms", "errors"};
static const char *const KIND_KEYS[] = {"kind", "jobs", "done", "failed", "cost_usd", "baseline_cost_usd",
                                        "saved_pct", "latency_p50_ms", "latency_p95_ms", "accuracy", "evaluated",
                                        "tiers", "batching", "cache", "compression"};
static const char *const PRUNED_KEYS[] = {"days", "first_day", "last_day", "jobs", "calls"};
static const char *const CACHE_KEYS[] = {"hits", "hit_rate", "saved_usd"};
static const char *const COMPRESSION_KEYS[] = {"jobs_compressed", "jobs_reused", "jobs_cleaned", "jobs_failed",
                                               "context_tokens_before", "context_tokens_after", "compression_ratio",
                                               "cost_usd", "tokens_saved", "saved_usd", "net_saved_usd"};
static const char *const TIER_KEYS[] = {"tier", "model", "jobs", "share_pct", "accuracy", "evaluated", "fallback"};
static const char *const BATCHING_KEYS[] = {"mean_batch_size", "batched_calls", "input_tokens_per_job",
                                            "tokens_saved", "saved_usd"};
#define NKEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Parse and check the shape of every object; returns 0 with doc filled. */
static int parse_report(const char *text, JsonDoc *d)
{
    TqErr err = {0};
    int rc = json_parse(d, text, strlen(text), 0, &err);
    CHECKF(rc == 0, "report is not JSON (%s): %s", err.msg, text);
    if (rc)
        return rc;
    check_keys(d, 0, TOP_KEYS, NKEYS(TOP_KEYS), "report");
    check_keys(d, jobj(d, 0, "filters"), FILTER_KEYS, NKEYS(FILTER_KEYS), "filters");
    int totals = jobj(d, 0, "totals");
    check_keys(d, totals, TOTAL_KEYS, NKEYS(TOTAL_KEYS), "totals");
    check_keys(d, jobj(d, totals, "jobs_by_state"), STATE_KEYS, NKEYS(STATE_KEYS), "jobs_by_state");
    check_keys(d, jobj(d, totals, "cache"), CACHE_KEYS, NKEYS(CACHE_KEYS), "totals cache");
    check_keys(d, jobj(d, totals, "compression"), COMPRESSION_KEYS, NKEYS(COMPRESSION_KEYS), "totals compression");
    check_keys(d, jobj(d, totals, "pruned"), PRUNED_KEYS, NKEYS(PRUNED_KEYS), "totals pruned");
    int models = jobj(d, 0, "models"), kinds = jobj(d, 0, "kinds");
    CHECK(models >= 0 && json_type(d, models) == JSON_ARRAY);
    CHECK(kinds >= 0 && json_type(d, kinds) == JSON_ARRAY);
    for (int k = 0; models >= 0 && k < json_size(d, models); k++)
        check_keys(d, json_at(d, models, k), MODEL_KEYS, NKEYS(MODEL_KEYS), "model entry");
    for (int k = 0; kinds >= 0 && k < json_size(d, kinds); k++) {
        int kind = json_at(d, kinds, k);
        check_keys(d, kind, KIND_KEYS, NKEYS(KIND_KEYS), "kind entry");
        int tiers = jobj(d, kind, "tiers");
        CHECK(tiers >= 0 && json_type(d, tiers) == JSON_ARRAY);
        for (int t = 0; tiers >= 0 && t < json_size(d, tiers); t++)
            check_keys(d, json_at(d, tiers, t), TIER_KEYS, NKEYS(TIER_KEYS), "tier entry");
        check_keys(d, jobj(d, kind, "batching"), BATCHING_KEYS, NKEYS(BATCHING_KEYS), "batching");
        check_keys(d, jobj(d, kind, "cache"), CACHE_KEYS, NKEYS(CACHE_KEYS), "kind cache");
        check_keys(d, jobj(d, kind, "compression"), COMPRESSION_KEYS, NKEYS(COMPRESSION_KEYS), "kind compression");
    }
    return 0;
}

/* The tiers of a kind entry, one "tier model jobs share_pct accuracy evaluated" per entry joined by
 * "; " (raw JSON text of each value), so a whole breakdown is checked in one comparison. */
static const char *tiers_of(const JsonDoc *d, int kind)
{
    static char out[1024];
    out[0] = '\0';
    int tiers = jobj(d, kind, "tiers");
    if (tiers < 0)
        return "<missing>";
    for (int t = 0; t < json_size(d, tiers); t++) {
        int el = json_at(d, tiers, t);
        size_t len = strlen(out);
        snprintf(out + len, sizeof out - len, "%s%s %s %s %s %s %s", t ? "; " : "", jv(d, el, "tier"),
                 jv(d, el, "model"), jv(d, el, "jobs"), jv(d, el, "share_pct"), jv(d, el, "accuracy"),
                 jv(d, el, "evaluated"));
    }
    return out;
}

/* The batching object of a kind entry as "mean_batch_size batched_calls input_tokens_per_job
 * tokens_saved saved_usd" (raw JSON text of each value). */
static const char *batching_of(const JsonDoc *d, int kind)
{
    static char out[256];
    int b = jobj(d, kind, "batching");
    if (b < 0)
        return "<missing>";
    snprintf(out, sizeof out, "%s %s %s %s %s", jv(d, b, "mean_batch_size"), jv(d, b, "batched_calls"),
             jv(d, b, "input_tokens_per_job"), jv(d, b, "tokens_saved"), jv(d, b, "saved_usd"));
    return out;
}

/* The "per kind: batching" line of kind in a text report, as the report formats it. */
static const char *batching_line(const char *kind, const char *mean, const char *batched, const char *per_job,
                                 const char *tokens_saved, const char *saved_usd)
{
    static char out[256];
    snprintf(out, sizeof out, "%-16s %10s %8s %14s %13s %14s", kind, mean, batched, per_job, tokens_saved, saved_usd);
    return out;
}

static void test_normalize_answer_function(void)
{
    PGconn *c = report_db();
    CHECK_INT(testdb_scalar(c, "SELECT count(*) FROM tierq.schema_migrations WHERE name = '002_report'"), 1);
    struct {
        const char *in, *want;
    } cases[] = {
        {" \"Billing.\" ", "billing"},     {"Hello,   World!", "hello world"}, {"'bug'", "bug"},
        {"(Yes)", "yes"},                  {"\xe2\x80\x9cParis\xe2\x80\x9d", "paris"},
        {"3.14", "3.14"},                  {"e-mail", "e-mail"},          {"a - b", "a b"},
        {"tab\there\nnewline", "tab here newline"},                     {"...", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p[] = {cases[i].in};
        PGresult *r = PQexecParams(c, "SELECT tierq.normalize_answer($1)", 1, NULL, p, NULL, NULL, 0);
        const char *got = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "<error>";
        CHECKF(strcmp(got, cases[i].want) == 0, "normalize_answer(\"%s\") = \"%s\", want \"%s\"", cases[i].in, got,
               cases[i].want);
        PQclear(r);
    }
    /* punctuation inside a word matters: 3.14 is not 314 */
    CHECK_INT(testdb_scalar(c, "SELECT (tierq.normalize_answer('3.14') = tierq.normalize_answer('314'))::int"), 0);
    CHECK_INT(testdb_scalar(c, "SELECT (tierq.normalize_answer(NULL) IS NULL)::int"), 1);
    PQfinish(c);
}


static void test_text_report_all_runs(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_TEXT, NULL, 0, &t, &err), 0);
    char line[512];
    CHECK_STR(line_of(t, "tierq report", line, sizeof line), "tierq report: all runs, all time");
    CHECK_STR(line_of(t, "jobs ", line, sizeof line),
              "jobs               12 (queued 1, running 1, done 7, failed 1, dead 1, cancelled 1)");
    CHECK_STR(line_of(t, "calls ", line, sizeof line), "calls              8");
    CHECK_STR(line_of(t, "tokens ", line, sizeof line), "tokens             3865 in, 10 cached in, 360 out");
    CHECK_STR(line_of(t, "cost_usd ", line, sizeof line), "cost_usd           0.503111");
    CHECK_STR(line_of(t, "baseline_cost_usd ", line, sizeof line), "baseline_cost_usd  1.031600");
    CHECK_STR(line_of(t, "saved_usd ", line, sizeof line), "saved_usd          0.528489");
    CHECK_STR(line_of(t, "saved ", line, sizeof line), "saved 51.2% against the all-baseline cost");
    /* sections in order */
    const char *tot = strstr(t, "\ntotals\n"), *pm = strstr(t, "\nper model\n"), *pk = strstr(t, "\nper kind\n");
    CHECKF(tot && pm && pk && tot < pm && pm < pk, "sections missing or out of order:\n%s", t);
    /* one row per model and kind, with the figures a reader checks */
    char want[512];
    snprintf(want, sizeof want, "%-20s %8s %12s %12s %12s %14s %9s %9s %7s", "qwen3-8b", "3", "350", "10", "10",
             "0.000036", "300", "930", "1");
    CHECK_STR(line_of(t, "qwen3-8b ", line, sizeof line), want);
    snprintf(want, sizeof want, "%-20s %8s %12s %12s %12s %14s %9s %9s %7s", "gpt-4o-mini", "1", "5", "0", "0",
             "0.000000", "-", "-", "1");
    CHECK_STR(line_of(t, "gpt-4o-mini ", line, sizeof line), want);
    snprintf(want, sizeof want, "%-16s %7s %7s %7s %14s %14s %8s %9s %9s  %s", "classify", "10", "5", "2",
             "0.500111", "1.001600", "50.1%", "200", "380", "50.0% (2/4)");
    CHECK_STR(line_of(t, "classify ", line, sizeof line), want);
    snprintf(want, sizeof want, "%-16s %7s %7s %7s %14s %14s %8s %9s %9s  %s", "summarize", "2", "2", "0",
             "0.003000", "0.030000", "90.0%", "3000", "4800", "100.0% (1/1)");
    CHECK_STR(line_of(t, "summarize ", line, sizeof line), want);
    /* per kind and tier: after per kind, one line per kind, tier and model */
    const char *pt = strstr(t, "\nper kind and tier");
    CHECKF(pt && pt > pk, "per kind and tier section missing or misplaced:\n%s", t);
    if (pt) {
        struct {
            const char *kind, *tier, *model, *jobs, *share, *accuracy;
        } rows[] = {
            {"classify", "1", "gpt-4o", "1", "20.0%", "0.0% (0/1)"},
            {"classify", "1", "qwen3-8b", "3", "60.0%", "100.0% (2/2)"},
            {"classify", "2", "deepseek-v4-flash", "1", "20.0%", "0.0% (0/1)"},
            {"summarize", "1", "qwen3-32b", "1", "50.0%", "100.0% (1/1)"},
            {"summarize", "3", "gpt-4o", "1", "50.0%", "-"},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "%-16s %4s  %-20s", rows[i].kind, rows[i].tier, rows[i].model);
            snprintf(want, sizeof want, "%s %7s %7s  %s", prefix, rows[i].jobs, rows[i].share, rows[i].accuracy);
            CHECK_STR(line_of(pt, prefix, line, sizeof line), want);
        }
    }
    /* batching per kind: last section, one line per kind with calls. classify: answer batches of
     * 3, 2, 2 (the retried batch), 1, 1 -> 9/5 = 1.80; 855 tokens in over jobs 1-6 and 10 -> 122.14;
     * saved 140 + 60 tokens and 0.0000196 + 0.0000046 usd. summarize: answer batches of 4 and 2 (the
     * judge call is no answer call: 8/3 = 2.67 with it) -> 3.00; 3010 tokens over 6 jobs -> 501.67. */
    const char *pb = strstr(t, "\nper kind: batching (saved against sending each job alone)\n");
    CHECKF(pb && pt && pb > pt, "batching section missing or misplaced:\n%s", t);
    if (pb) {
        snprintf(want, sizeof want, "%-16s %10s %8s %14s %13s %14s", "kind", "mean_batch", "batched", "tokens_in/job",
                 "tokens_saved", "saved_usd");
        CHECK_STR(line_of(pb, "kind ", line, sizeof line), want);
        CHECK_STR(line_of(pb, "classify ", line, sizeof line),
                  batching_line("classify", "1.80", "3", "122.14", "200", "0.000024"));
        CHECK_STR(line_of(pb, "summarize ", line, sizeof line),
                  batching_line("summarize", "3.00", "2", "501.67", "1100", "0.000723"));
    }
    free(t);
    PQfinish(c);
}

static void test_json_all_runs(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, NULL, 0, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        int f = jobj(&d, 0, "filters"), tot = jobj(&d, 0, "totals"), st = jobj(&d, tot, "jobs_by_state");
        CHECK_STR(jv(&d, f, "run"), "null");
        CHECK_STR(jv(&d, f, "since_s"), "null");
        CHECK_STR(jv(&d, tot, "jobs"), "12");
        CHECK_STR(jv(&d, st, "queued"), "1");
        CHECK_STR(jv(&d, st, "running"), "1");
        CHECK_STR(jv(&d, st, "done"), "7");
        CHECK_STR(jv(&d, st, "failed"), "1");
        CHECK_STR(jv(&d, st, "dead"), "1");
        CHECK_STR(jv(&d, st, "cancelled"), "1");
        CHECK_STR(jv(&d, tot, "calls"), "8");
        CHECK_STR(jv(&d, tot, "tokens_in"), "3865");
        CHECK_STR(jv(&d, tot, "tokens_cached_in"), "10");
        CHECK_STR(jv(&d, tot, "tokens_out"), "360");
        CHECK_STR(jv(&d, tot, "cost_usd"), "0.503111");
        CHECK_STR(jv(&d, tot, "baseline_cost_usd"), "1.031600");
        CHECK_STR(jv(&d, tot, "saved_usd"), "0.528489");
        CHECK_STR(jv(&d, tot, "saved_pct"), "51.23");
        /* no hits in this seed: 0 of 7 done jobs */
        CHECK_STR(jv(&d, jobj(&d, tot, "cache"), "hits"), "0");
        CHECK_STR(jv(&d, jobj(&d, tot, "cache"), "hit_rate"), "0.000000");
        CHECK_STR(jv(&d, jobj(&d, tot, "cache"), "saved_usd"), "0.000000");

        int models = jobj(&d, 0, "models");
        CHECK_INT(json_size(&d, models), 4);
        /* listed by name */
        CHECK_STR(jv(&d, json_at(&d, models, 0), "model"), "deepseek-reasoner");
        CHECK_STR(jv(&d, json_at(&d, models, 3), "model"), "qwen3-8b");
        int q = jfind(&d, models, "model", "qwen3-8b");
        CHECK_STR(jv(&d, q, "calls"), "3");
        CHECK_STR(jv(&d, q, "tokens_in"), "350");
        CHECK_STR(jv(&d, q, "tokens_cached_in"), "10");
        CHECK_STR(jv(&d, q, "tokens_out"), "10");
        CHECK_STR(jv(&d, q, "cost_usd"), "0.000036");
        CHECK_STR(jv(&d, q, "latency_p50_ms"), "300");
        CHECK_STR(jv(&d, q, "latency_p95_ms"), "930");
        CHECK_STR(jv(&d, q, "errors"), "1");
        int g = jfind(&d, models, "model", "gpt-4o");
        CHECK_STR(jv(&d, g, "calls"), "3");
        CHECK_STR(jv(&d, g, "cost_usd"), "0.003000");
        CHECK_STR(jv(&d, g, "latency_p50_ms"), "3000");
        CHECK_STR(jv(&d, g, "latency_p95_ms"), "3900");
        CHECK_STR(jv(&d, g, "errors"), "1");
        int m = jfind(&d, models, "model", "gpt-4o-mini");
        CHECK_STR(jv(&d, m, "latency_p50_ms"), "null");
        CHECK_STR(jv(&d, m, "latency_p95_ms"), "null");
        CHECK_STR(jv(&d, m, "errors"), "1");
        int r = jfind(&d, models, "model", "deepseek-reasoner");
        CHECK_STR(jv(&d, r, "cost_usd"), "0.500000");
        CHECK_STR(jv(&d, r, "errors"), "0");

        int kinds = jobj(&d, 0, "kinds");
        CHECK_INT(json_size(&d, kinds), 2);
        int k = jfind(&d, kinds, "kind", "classify");
        CHECK_STR(jv(&d, k, "jobs"), "10");
        CHECK_STR(jv(&d, k, "done"), "5");
        CHECK_STR(jv(&d, k, "failed"), "2");
        CHECK_STR(jv(&d, k, "cost_usd"), "0.500111");
        CHECK_STR(jv(&d, k, "baseline_cost_usd"), "1.001600");
        CHECK_STR(jv(&d, k, "saved_pct"), "50.07");
        CHECK_STR(jv(&d, k, "latency_p50_ms"), "200");
        CHECK_STR(jv(&d, k, "latency_p95_ms"), "380");
        CHECK_STR(jv(&d, k, "accuracy"), "0.500000");
        CHECK_STR(jv(&d, k, "evaluated"), "4");
        /* by answering tier: the cheap tier was right on both evaluated jobs, the others wrong; tier 1
         * has two entries because run r2 answered it with the baseline model */
        CHECK_STR(tiers_of(&d, k), "1 gpt-4o 1 20.00 0.000000 1; 1 qwen3-8b 3 60.00 1.000000 2; "
                                   "2 deepseek-v4-flash 1 20.00 0.000000 1");
        CHECK(json_type(&d, json_get(&d, json_at(&d, jobj(&d, k, "tiers"), 0), "model")) == JSON_STRING);
        int s = jfind(&d, kinds, "kind", "summarize");
        CHECK_STR(jv(&d, s, "jobs"), "2");
        CHECK_STR(jv(&d, s, "failed"), "0");
        CHECK_STR(jv(&d, s, "saved_pct"), "90.00");
        CHECK_STR(jv(&d, s, "latency_p50_ms"), "3000");
        CHECK_STR(jv(&d, s, "latency_p95_ms"), "4800");
        CHECK_STR(jv(&d, s, "accuracy"), "1.000000");
        CHECK_STR(jv(&d, s, "evaluated"), "1");
        CHECK_STR(tiers_of(&d, s), "1 qwen3-32b 1 50.00 1.000000 1; 3 gpt-4o 1 50.00 null 0");
        /* batching: mean over answer calls, each call once (jobs-weighted would be 19/9 = 2.11 for
         * classify, and counting the judge call 8/3 = 2.67 for summarize; nor is it a batched call);
         * tokens per distinct job (855/7, not 855/9 counting jobs 4 and 5 twice); savings summed
         * exactly, then rounded */
        CHECK_STR(batching_of(&d, k), "1.80 3 122.14 200 0.000024");
        CHECK_STR(batching_of(&d, s), "3.00 2 501.67 1100 0.000723");
        CHECK(json_type(&d, json_get(&d, jobj(&d, k, "batching"), "saved_usd")) == JSON_PRIMITIVE);
        CHECK(json_type(&d, json_get(&d, jobj(&d, k, "batching"), "mean_batch_size")) == JSON_PRIMITIVE);
        json_doc_free(&d);
    }
    free(t);
    PQfinish(c);
}

static void test_json_run_filter(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, "r1", 0, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        int f = jobj(&d, 0, "filters"), tot = jobj(&d, 0, "totals");
        CHECK_STR(jv(&d, f, "run"), "r1");
        CHECK(json_type(&d, json_get(&d, f, "run")) == JSON_STRING);
        CHECK_STR(jv(&d, f, "since_s"), "null");
        CHECK_STR(jv(&d, tot, "jobs"), "11");
        CHECK_STR(jv(&d, tot, "calls"), "7");
        CHECK_STR(jv(&d, tot, "tokens_in"), "3365");
        CHECK_STR(jv(&d, tot, "cost_usd"), "0.003111");
        CHECK_STR(jv(&d, tot, "baseline_cost_usd"), "0.031600");
        CHECK_STR(jv(&d, tot, "saved_pct"), "90.16");
        int models = jobj(&d, 0, "models");
        CHECK_INT(json_size(&d, models), 3);
        CHECK_INT(jfind(&d, models, "model", "deepseek-reasoner"), -1); /* only run r2 used it */
        int k = jfind(&d, jobj(&d, 0, "kinds"), "kind", "classify");
        /* summed exactly, then rounded: 0.0001108 -> 0.000111 */
        CHECK_STR(jv(&d, k, "cost_usd"), "0.000111");
        CHECK_STR(jv(&d, k, "saved_pct"), "93.08");
        CHECK_STR(jv(&d, k, "accuracy"), "0.666667");
        CHECK_STR(jv(&d, k, "evaluated"), "3");
        CHECK_STR(jv(&d, k, "latency_p50_ms"), "250");
        CHECK_STR(jv(&d, k, "latency_p95_ms"), "385");
        CHECK_STR(tiers_of(&d, k), "1 qwen3-8b 3 75.00 1.000000 2; 2 deepseek-v4-flash 1 25.00 0.000000 1");
        /* without r2's single call: batches 3, 2, 2, 1 -> 2.00; 355 tokens over jobs 1-6 -> 59.17 */
        CHECK_STR(batching_of(&d, k), "2.00 3 59.17 200 0.000024");
        CHECK_STR(batching_of(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "summarize")), "3.00 2 501.67 1100 0.000723");
        json_doc_free(&d);
    }
    free(t);
    /* the other run: one job, answered wrongly */
    CHECK_INT(report_to_string(c, REPORT_JSON, "r2", 0, &t, &err), 0);
    if (parse_report(t, &d) == 0) {
        int tot = jobj(&d, 0, "totals");
        CHECK_STR(jv(&d, tot, "jobs"), "1");
        CHECK_STR(jv(&d, tot, "saved_pct"), "50.00");
        int k = jfind(&d, jobj(&d, 0, "kinds"), "kind", "classify");
        CHECK_STR(jv(&d, k, "accuracy"), "0.000000");
        CHECK_STR(jv(&d, k, "evaluated"), "1");
        CHECK_STR(tiers_of(&d, k), "1 gpt-4o 1 100.00 0.000000 1");
        /* one single call: nothing batched, nothing saved */
        CHECK_STR(batching_of(&d, k), "1.00 0 500.00 0 0.000000");
        json_doc_free(&d);
    }
    free(t);
    /* text, per run: only kinds with calls in the run get a batching line */
    char line[256];
    CHECK_INT(report_to_string(c, REPORT_TEXT, "r1", 0, &t, &err), 0);
    const char *pb = strstr(t, "\nper kind: batching");
    CHECKF(pb != NULL, "batching section missing:\n%s", t);
    if (pb) {
        CHECK_STR(line_of(pb, "classify ", line, sizeof line),
                  batching_line("classify", "2.00", "3", "59.17", "200", "0.000024"));
        CHECK_STR(line_of(pb, "summarize ", line, sizeof line),
                  batching_line("summarize", "3.00", "2", "501.67", "1100", "0.000723"));
    }
    free(t);
    CHECK_INT(report_to_string(c, REPORT_TEXT, "r2", 0, &t, &err), 0);
    pb = strstr(t, "\nper kind: batching");
    CHECKF(pb != NULL, "batching section missing:\n%s", t);
    if (pb) {
        CHECK_STR(line_of(pb, "classify ", line, sizeof line),
                  batching_line("classify", "1.00", "0", "500.00", "0", "0.000000"));
        CHECK_STR(line_of(pb, "summarize ", line, sizeof line), "");
    }
    free(t);
    PQfinish(c);
}

static void test_json_since_filter(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, NULL, 86400, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        int f = jobj(&d, 0, "filters"), tot = jobj(&d, 0, "totals");
        CHECK_STR(jv(&d, f, "run"), "null");
        CHECK_STR(jv(&d, f, "since_s"), "86400");
        /* the job finished two days ago and the queued job created three days ago drop out */
        CHECK_STR(jv(&d, tot, "jobs"), "10");
        CHECK_STR(jv(&d, jobj(&d, tot, "jobs_by_state"), "queued"), "0");
        CHECK_STR(jv(&d, jobj(&d, tot, "jobs_by_state"), "running"), "1");
        CHECK_STR(jv(&d, tot, "calls"), "7");
        CHECK_STR(jv(&d, tot, "cost_usd"), "0.501111");
        CHECK_STR(jv(&d, tot, "saved_pct"), "50.46");
        int g = jfind(&d, jobj(&d, 0, "models"), "model", "gpt-4o");
        CHECK_STR(jv(&d, g, "calls"), "2");
        CHECK_STR(jv(&d, g, "latency_p95_ms"), "2000");
        int s = jfind(&d, jobj(&d, 0, "kinds"), "kind", "summarize");
        CHECK_STR(jv(&d, s, "jobs"), "1");
        CHECK_STR(jv(&d, s, "latency_p50_ms"), "1000");
        CHECK_STR(tiers_of(&d, s), "1 qwen3-32b 1 100.00 1.000000 1"); /* the tier-3 job finished 2 days ago */
        /* the batch of two made two days ago drops out: one batch of 4, 1010 tokens over 4 jobs */
        CHECK_STR(batching_of(&d, s), "4.00 1 252.50 600 0.000600");
        CHECK_STR(batching_of(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "classify")), "1.80 3 122.14 200 0.000024");
        json_doc_free(&d);
    }
    free(t);
    /* both filters at once */
    CHECK_INT(report_to_string(c, REPORT_JSON, "r1", 86400, &t, &err), 0);
    if (parse_report(t, &d) == 0) {
        int tot = jobj(&d, 0, "totals");
        CHECK_STR(jv(&d, tot, "jobs"), "9");
        CHECK_STR(jv(&d, tot, "calls"), "6");
        CHECK_STR(jv(&d, tot, "tokens_out"), "110");
        CHECK_STR(jv(&d, tot, "cost_usd"), "0.001111");
        CHECK_STR(jv(&d, tot, "saved_usd"), "0.010489");
        CHECK_STR(jv(&d, tot, "saved_pct"), "90.42");
        int kinds = jobj(&d, 0, "kinds");
        CHECK_STR(batching_of(&d, jfind(&d, kinds, "kind", "classify")), "2.00 3 59.17 200 0.000024");
        CHECK_STR(batching_of(&d, jfind(&d, kinds, "kind", "summarize")), "4.00 1 252.50 600 0.000600");
        json_doc_free(&d);
    }
    free(t);
    /* text shows the filters it applied */
    CHECK_INT(report_to_string(c, REPORT_TEXT, "r1", 86400, &t, &err), 0);
    char line[256];
    CHECK_STR(line_of(t, "tierq report", line, sizeof line), "tierq report: run r1, last 86400s");
    CHECK_STR(line_of(t, "saved ", line, sizeof line), "saved 90.4% against the all-baseline cost");
    free(t);
    PQfinish(c);
}

static void test_empty_selection(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, "no-such-run", 0, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        int tot = jobj(&d, 0, "totals");
        CHECK_STR(jv(&d, tot, "jobs"), "0");
        CHECK_STR(jv(&d, jobj(&d, tot, "jobs_by_state"), "done"), "0");
        CHECK_STR(jv(&d, tot, "calls"), "0");
        CHECK_STR(jv(&d, tot, "tokens_in"), "0");
        CHECK_STR(jv(&d, tot, "cost_usd"), "0.000000");
        CHECK_STR(jv(&d, tot, "saved_pct"), "null");
        CHECK_STR(jv(&d, jobj(&d, tot, "cache"), "hit_rate"), "null");
        int z = jobj(&d, tot, "compression");
        CHECK_STR(jv(&d, z, "jobs_compressed"), "0");
        CHECK_STR(jv(&d, z, "compression_ratio"), "null");
        CHECK_STR(jv(&d, z, "cost_usd"), "0.000000");
        CHECK_STR(jv(&d, z, "net_saved_usd"), "0.000000");
        CHECK_INT(json_size(&d, jobj(&d, 0, "models")), 0);
        CHECK_INT(json_size(&d, jobj(&d, 0, "kinds")), 0);
        json_doc_free(&d);
    }
    free(t);
    CHECK_INT(report_to_string(c, REPORT_TEXT, "no-such-run", 0, &t, &err), 0);
    CHECKF(strstr(t, "saved: no baseline cost recorded") && strstr(t, "(no calls)") && strstr(t, "(no jobs)") &&
               strstr(t, "(no answered jobs)"),
           "empty report said:\n%s", t);
    const char *pb = strstr(t, "\nper kind: batching");
    CHECKF(pb && strstr(pb, "\n  (no calls)\n"), "empty batching section said:\n%s", pb ? pb : t);
    char line[256];
    CHECK_STR(line_of(t, "compression ", line, sizeof line), "compression        none in this selection");
    const char *pz = strstr(t, "\nper kind: context compression");
    CHECKF(pz && strstr(pz, "\n  (none: a kind compresses long contexts"), "empty compression section said:\n%s",
           pz ? pz : t);
    free(t);
    PQfinish(c);
}

/* A kind with jobs but no calls in the selection, and one with calls but no jobs (rows added inside
 * the caller's transaction, which the report reads, then rolled back). */
static void test_batching_kinds_without_calls_or_jobs(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    char msg[512];
    testdb_exec(c, "BEGIN", NULL, 0);
    CHECKF(testdb_exec(c,
                       "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('classify', 'p', 'lopsided');"
                       "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tokens_in, status)"
                       " VALUES ('lopsided-1', 'lopsided', '{99}', 'summarize', 'gpt-4o', 7, 'ok')",
                       msg, sizeof msg) == 0,
           "insert: %s", msg);
    CHECK_INT(report_to_string(c, REPORT_JSON, "lopsided", 0, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        int kinds = jobj(&d, 0, "kinds");
        CHECK_INT(json_size(&d, kinds), 1);
        CHECK_STR(batching_of(&d, jfind(&d, kinds, "kind", "classify")), "null 0 null 0 0.000000");
        json_doc_free(&d);
    }
    free(t);
    CHECK_INT(report_to_string(c, REPORT_TEXT, "lopsided", 0, &t, &err), 0);
    const char *pb = strstr(t, "\nper kind: batching");
    CHECKF(pb != NULL, "batching section missing:\n%s", t);
    if (pb) {
        char line[256];
        CHECK_STR(line_of(pb, "classify ", line, sizeof line), "");
        CHECK_STR(line_of(pb, "summarize ", line, sizeof line),
                  batching_line("summarize", "1.00", "0", "7.00", "0", "0.000000"));
    }
    free(t);
    testdb_exec(c, "ROLLBACK", NULL, 0);
    PQfinish(c);
}

static void test_run_name_is_escaped_in_json(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, "q\"uote\\d\n", 0, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        char *run = json_strdup(&d, json_get(&d, jobj(&d, 0, "filters"), "run"));
        CHECK_STR(run, "q\"uote\\d\n");
        free(run);
        json_doc_free(&d);
    }
    free(t);
    PQfinish(c);
}

static void test_failures_write_nothing(void)
{
    PGconn *c = report_db();
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, NULL, -1, &t, &err), TQ_EINVAL);
    CHECK_INT((long long)strlen(t), 0);
    free(t);
    /* inside the caller's transaction the report uses it and leaves it open */
    testdb_exec(c, "BEGIN", NULL, 0);
    CHECK_INT(report_to_string(c, REPORT_TEXT, NULL, 0, &t, &err), 0);
    CHECK(strstr(t, "0.503111") != NULL);
    CHECK(PQtransactionStatus(c) == PQTRANS_INTRANS);
    free(t);
    /* a failed statement (here: the caller's transaction is already aborted) is TQ_EDB, no output */
    testdb_exec(c, "SELECT 1/0", NULL, 0);
    CHECK_INT(report_to_string(c, REPORT_JSON, NULL, 0, &t, &err), TQ_EDB);
    CHECKF(strstr(err.msg, "report jobs") != NULL, "error: %s", err.msg);
    CHECK_INT((long long)strlen(t), 0);
    free(t);
    testdb_exec(c, "ROLLBACK", NULL, 0);
    /* outside a transaction the report leaves none behind */
    CHECK_INT(report_to_string(c, REPORT_JSON, NULL, 0, &t, &err), 0);
    CHECK(PQtransactionStatus(c) == PQTRANS_IDLE);
    free(t);
    PQfinish(c);
}

/* The router's confidence against what happened: accepted answers bucketed by the score they were
 * accepted with, each bucket's accuracy next to it — here a tier whose 0.8-0.9 answers are right 80%
 * of the time and whose 0.3-0.4 answers 25%. */
static void test_confidence_table(void)
{
    PGconn *c = report_db();
    testdb_exec(c,
                "INSERT INTO tierq.jobs (kind, prompt, run_name, state, expected, result, quality, tier, model, finished_at)"
                " SELECT 'classify', 'p', 'conf', 'done', 'bug', CASE WHEN g <= 8 THEN 'Bug' ELSE 'billing' END,"
                "   0.85, 1, 'qwen3-8b', now() FROM generate_series(1, 10) g;"
                "INSERT INTO tierq.jobs (kind, prompt, run_name, state, expected, result, quality, tier, model, finished_at)"
                " SELECT 'classify', 'p', 'conf', 'done', 'bug', CASE WHEN g = 1 THEN 'bug' ELSE 'other' END,"
                "   0.35, 1, 'qwen3-8b', now() FROM generate_series(1, 4) g",
                NULL, 0);
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_TEXT, "conf", 0, &t, &err), 0);
    const char *sec = t ? strstr(t, "\nrouter confidence against what happened") : NULL;
    CHECKF(sec != NULL, "confidence section missing:\n%s", t ? t : "");
    char want[256], line[512];
    snprintf(want, sizeof want, "%-16s %4s  %-11s %7s %10s  %s", "classify", "1", "0.3-0.4", "4", "0.350", "25.0% (1)");
    CHECK_STR(line_of(sec ? sec : "", "classify    ", line, sizeof line), want);
    snprintf(want, sizeof want, "%-16s %4s  %-11s %7s %10s  %s", "classify", "1", "0.8-0.9", "10", "0.850", "80.0% (8)");
    const char *second = sec ? strstr(sec, "0.8-0.9") : NULL;
    CHECKF(second != NULL, "0.8-0.9 bucket missing:\n%s", sec ? sec : "");
    if (second) {
        while (second > sec && second[-1] != '\n')
            second--;
        CHECK_STR(line_of(second, "classify", line, sizeof line), want);
    }
    free(t);
    CHECK_INT(report_to_string(c, REPORT_JSON, "conf", 0, &t, &err), 0);
    CHECKF(t && strstr(t, "{\"kind\": \"classify\", \"tier\": 1, \"score_from\": 0.8, \"score_to\": 0.9, \"answers\": 10,"
                          " \"mean_score\": 0.850, \"correct\": 8, \"accuracy\": 0.800}"),
           "json: %s", t ? t : "");
    free(t);
    testdb_exec(c, "DELETE FROM tierq.jobs WHERE run_name = 'conf'", NULL, 0);
    PQfinish(c);
}

/* Jobs answered from the response cache (sql/011: done, cache_hit, cost 0, cache_saved_usd what the
 * answer cost when produced), added in the caller's transaction and rolled back. classify: 2 jobs a
 * model answered (latencies 1000 and 3000 ms) and 3 hits (1 ms from claim to finish), savings chosen
 * so that rounding each first would differ (0.0100001 + 0.0100002 + 0.0100004 = 0.030001, not
 * 0.030000); summarize: 1 job, no hit. */
static void test_cache_hits_in_report(void)
{
    PGconn *c = report_db();
    char msg[512];
    testdb_exec(c, "BEGIN", NULL, 0);
    CHECKF(testdb_exec(c,
                       "INSERT INTO tierq.jobs (kind, prompt, run_name, state, expected, result, quality, tier, model,"
                       "  cost_usd, baseline_cost_usd, cache_hit, cache_saved_usd, reason, started_at, finished_at)"
                       " SELECT kind, 'p', 'cached', 'done', 'x', 'x', 0.85, tier, model, cost, base, hit, saved,"
                       "   CASE WHEN hit THEN 'cache_hit' ELSE 'accepted' END, now() - lat * interval '1 millisecond', now()"
                       " FROM (VALUES"
                       "  ('classify',  2, 'deepseek-v4-flash', 0.01::numeric, 0.02::numeric, false, 0::numeric, 1000),"
                       "  ('classify',  2, 'deepseek-v4-flash', 0.01,          0.02,          false, 0,          3000),"
                       "  ('classify',  2, 'deepseek-v4-flash', 0,             0.02,          true,  0.0100001,  1),"
                       "  ('classify',  2, 'deepseek-v4-flash', 0,             0.02,          true,  0.0100002,  1),"
                       "  ('classify',  2, 'deepseek-v4-flash', 0,             0.02,          true,  0.0100004,  1),"
                       "  ('summarize', 1, 'qwen3-32b',         0.001,         0.01,          false, 0,          500)"
                       " ) v(kind, tier, model, cost, base, hit, saved, lat)",
                       msg, sizeof msg) == 0,
           "insert: %s", msg);
    /* what the report must show, summed by SQL */
    char saved[64] = "", kind_saved[64] = "";
    PGresult *r = PQexec(c, "SELECT round(sum(cache_saved_usd), 6), round(sum(cache_saved_usd) FILTER (WHERE kind = 'classify'), 6)"
                            " FROM tierq.jobs WHERE run_name = 'cached' AND state = 'done' AND cache_hit");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        snprintf(saved, sizeof saved, "%s", PQgetvalue(r, 0, 0));
        snprintf(kind_saved, sizeof kind_saved, "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    CHECK_STR(saved, "0.030001");
    CHECK_STR(kind_saved, "0.030001");
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(report_to_string(c, REPORT_JSON, "cached", 0, &t, &err), 0);
    JsonDoc d;
    if (parse_report(t, &d) == 0) {
        int tc = jobj(&d, jobj(&d, 0, "totals"), "cache");
        CHECK_STR(jv(&d, tc, "hits"), "3");
        CHECK_STR(jv(&d, tc, "hit_rate"), "0.500000");
        CHECK_STR(jv(&d, tc, "saved_usd"), saved);
        int kinds = jobj(&d, 0, "kinds");
        int k = jfind(&d, kinds, "kind", "classify");
        CHECK_STR(jv(&d, jobj(&d, k, "cache"), "hits"), "3");
        CHECK_STR(jv(&d, jobj(&d, k, "cache"), "hit_rate"), "0.600000");
        CHECK_STR(jv(&d, jobj(&d, k, "cache"), "saved_usd"), kind_saved);
        /* hits are done jobs at $0 with their baseline, and answers users got */
        CHECK_STR(jv(&d, k, "done"), "5");
        CHECK_STR(jv(&d, k, "cost_usd"), "0.020000");
        CHECK_STR(jv(&d, k, "baseline_cost_usd"), "0.100000");
        CHECK_STR(jv(&d, k, "accuracy"), "1.000000");
        CHECK_STR(jv(&d, k, "evaluated"), "5");
        /* ... but not in latency (with them: p50 1 ms) nor in the tier and confidence tables */
        CHECK_STR(jv(&d, k, "latency_p50_ms"), "2000");
        CHECK_STR(jv(&d, k, "latency_p95_ms"), "2900");
        CHECK_STR(tiers_of(&d, k), "2 deepseek-v4-flash 2 100.00 1.000000 2");
        CHECKF(strstr(t, "{\"kind\": \"classify\", \"tier\": 2, \"score_from\": 0.8, \"score_to\": 0.9, \"answers\": 2,") != NULL,
               "confidence: %s", t);
        int s = jfind(&d, kinds, "kind", "summarize");
        CHECK_STR(jv(&d, jobj(&d, s, "cache"), "hits"), "0");
        CHECK_STR(jv(&d, jobj(&d, s, "cache"), "hit_rate"), "0.000000");
        CHECK_STR(jv(&d, jobj(&d, s, "cache"), "saved_usd"), "0.000000");
        json_doc_free(&d);
    }
    free(t);
    CHECK_INT(report_to_string(c, REPORT_TEXT, "cached", 0, &t, &err), 0);
    char line[512], want[512];
    CHECK_STR(line_of(t, "cache_hits ", line, sizeof line), "cache_hits         50.0% (3/6)");
    snprintf(want, sizeof want, "cache_saved_usd    %s (what the hits' answers cost when they were produced; part of saved_usd)",
             saved);
    CHECK_STR(line_of(t, "cache_saved_usd ", line, sizeof line), want);
    CHECKF(strstr(t, "(cost, baseline, saved and accuracy include cache hits, at $0; latency leaves them out)") != NULL,
           "footnote missing:\n%s", t);
    const char *pc = strstr(t, "\nper kind: response cache");
    const char *pt = strstr(t, "\nper kind and tier");
    CHECKF(pc && pt && pc < pt, "cache section missing or misplaced:\n%s", t);
    if (pc) {
        snprintf(want, sizeof want, "%-16s %7s %7s  %-22s %14s", "classify", "5", "3", "60.0% (3/5)", kind_saved);
        CHECK_STR(line_of(pc, "classify ", line, sizeof line), want);
        snprintf(want, sizeof want, "%-16s %7s %7s  %-22s %14s", "summarize", "1", "0", "0.0% (0/1)", "0.000000");
        CHECK_STR(line_of(pc, "summarize ", line, sizeof line), want);
    }
    /* per kind: latency without the hits */
    const char *pk = strstr(t, "\nper kind\n");
    snprintf(want, sizeof want, "%-16s %7s %7s %7s %14s %14s %8s %9s %9s  %s", "classify", "5", "5", "0", "0.020000",
             "0.100000", "80.0%", "2000", "2900", "100.0% (5/5)");
    CHECK_STR(line_of(pk ? pk : "", "classify ", line, sizeof line), want);
    free(t);
    testdb_exec(c, "ROLLBACK", NULL, 0);
    PQfinish(c);
}

int main(void)
{
    RUN(test_normalize_answer_function);
    RUN(test_text_report_all_runs);
    RUN(test_json_all_runs);
    RUN(test_json_run_filter);
    RUN(test_json_since_filter);
    RUN(test_empty_selection);
    RUN(test_batching_kinds_without_calls_or_jobs);
    RUN(test_run_name_is_escaped_in_json);
    RUN(test_failures_write_nothing);
    RUN(test_confidence_table);
    RUN(test_cache_hits_in_report);
    return check_done();
}
