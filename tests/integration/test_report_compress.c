/* `tierq report` on context compression, end to end: two real runs of `tierq run --drain` against
 * the simulator and a private PostgreSQL (a kind that compresses, one whose compressor fails, one
 * that does not compress), then the report's compression figures, text and JSON, per kind and in
 * the totals, for every run filter, must equal what SQL sums from the rows the runs wrote: the
 * spend from the 'compress' ledger rows (selected by their own run_name, not as the report selects
 * them), the contexts, tokens and dollars from tierq.jobs. */
#include "reportjson.h"
#include "compresskinds.h"
#include "runhelp.h"

static char dir[256], jobs[300];
#define out run_out

static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_report_compress.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/jobs/*.json '%s/'", dir, jobs, getenv("TIERQ_ROOT"),
             jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    /* the kinds of test_compress.c: doc compresses once per document whatever the question; doc32's
     * compressor is another model than its tier 1, so a fault can hit the compressor alone */
    snprintf(p, sizeof p, "%s/doc.json", jobs);
    write_file(p, DOC_KIND_JSON);
    snprintf(p, sizeof p, "%s/doc32.json", jobs);
    write_file(p, DOC32_KIND_JSON);
    /* long contexts too, but no compression: no line in the text, zeros in JSON */
    snprintf(p, sizeof p, "%s/plain.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer the question from the context in a few words.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0}, {\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-4o\","
                  " \"max_tokens\": 64, \"temperature\": 0, \"checks\": {\"min_chars\": 1}, \"cache\": {\"enabled\": false}}");
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}

/* A second document of about 3,000 tokens, in lines (LONG_DOC: compresskinds.h). */
#define LONG_DOC2 "(SELECT string_agg('Row ' || i || ': the library called lib' || i || ' ships under MIT-' || (i % 4 + 1) || '.', E'\\n') FROM generate_series(1, 200) i)"
/* Long with markup, blank runs and a repeated footer; short enough once cleaned. */
#define CLEANABLE "(SELECT string_agg('<div class=\"page\"><p>Page ' || i || '</p>' || '                                        </div>' || E'\\n' || 'This page is part of the very long and boring manual footer.' || E'\\n\\n\\n', '') FROM generate_series(1, 60) i)"

/* Run one: four doc jobs share a document (one compression call), one is cleaned, one is short;
 * doc32's compressor fails (its retries are ledger rows); two plain jobs. Run two: three doc jobs
 * reuse the stored compression, two share a new document (a second call). Done once per binary. */
static void two_runs(PGconn *c)
{
    static int done;
    if (done)
        return;
    done = 1;
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'Which license has package ' || g || '?', "
                   LONG_DOC ", 'one' FROM generate_series(1, 4) g;"
                   "INSERT INTO tierq.jobs (kind, prompt, context, run_name) VALUES ('doc', 'What is it?', " CLEANABLE ", 'one'),"
                   " ('doc', 'And this?', 'A short context.', 'one');"
                   "INSERT INTO tierq.jobs (kind, prompt, context, run_name) VALUES ('doc32', 'Which license has package 3?',"
                   " '[[sim:500:times=1000:model=qwen3-32b]] ' || " LONG_DOC ", 'one');"
                   "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'plain', 'Which license has package ' || g || '?', "
                   LONG_DOC ", 'one' FROM generate_series(1, 2) g",
                NULL, 0);
    int st = run_drain(&s, "--run one --max-tries 2");
    CHECKF(st == 0, "exit %d: %s", st, out);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'What license does package ' || g || ' have?', "
                   LONG_DOC ", 'two' FROM generate_series(1, 3) g;"
                   "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'doc', 'Which license has lib' || g || '?', "
                   LONG_DOC2 ", 'two' FROM generate_series(1, 2) g",
                NULL, 0);
    st = run_drain(&s, "--run two");
    CHECKF(st == 0, "exit %d: %s", st, out);
    sim_stop(&s);
    /* the runs did what the figures below rely on, so no check passes on zeros */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE state = 'done'"), 14);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND kind = 'doc' AND status = 'ok' AND cost_usd > 0"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND kind = 'doc32' AND status = 'retry'"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE kind = 'doc' AND compression = 'compressed'"), 6);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE kind = 'doc' AND compression = 'reused'"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE kind = 'doc' AND compression = 'cleaned'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE kind = 'doc32' AND compression = 'failed'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE kind = 'plain' AND compression = 'none' AND compress_tokens_saved = 0"), 2);
    CHECK_INT(q(c, "SELECT (sum(compress_tokens_saved) > 10000 AND sum(compress_saved_usd) > 0)::int FROM tierq.jobs WHERE kind = 'doc'"), 1);
    check_sums(c);
}

/* The figures SQL sums for kind (NULL: every kind) and run (NULL: every run), in the order of the
 * report's compression keys: jobs_compressed jobs_reused jobs_cleaned jobs_failed
 * context_tokens_before context_tokens_after compression_ratio cost_usd tokens_saved saved_usd
 * net_saved_usd. The cost is the 'compress' ledger rows of the run (calls.run_name). */
static const char *sql_figures(PGconn *c, const char *kind, const char *run)
{
    static char buf[512];
    const char *p[] = {kind, run};
    PGresult *r = PQexecParams(
        c,
        "WITH j AS (SELECT * FROM tierq.jobs WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR run_name = $2)),"
        " k AS (SELECT coalesce(sum(cost_usd), 0) AS cost FROM tierq.calls"
        "       WHERE purpose = 'compress' AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR run_name = $2)),"
        " s AS (SELECT count(*) FILTER (WHERE compression IN ('compressed', 'reused')) AS n,"
        "   count(*) FILTER (WHERE compression = 'reused') AS reused, count(*) FILTER (WHERE compression = 'cleaned') AS cleaned,"
        "   count(*) FILTER (WHERE compression = 'failed') AS failed,"
        "   coalesce(sum(context_tokens_before) FILTER (WHERE compression IN ('compressed', 'reused')), 0) AS tb,"
        "   coalesce(sum(context_tokens_after) FILTER (WHERE compression IN ('compressed', 'reused')), 0) AS ta,"
        "   coalesce(sum(compress_tokens_saved), 0) AS ts, coalesce(sum(compress_saved_usd), 0) AS su FROM j)"
        " SELECT concat_ws(' ', n, reused, cleaned, failed, tb, ta, coalesce(round(tb::numeric / nullif(ta, 0), 2)::text, 'null'),"
        "   round(cost, 6), ts, round(su, 6), round(su - cost, 6)) FROM s, k",
        2, NULL, p, NULL, NULL, 0);
    snprintf(buf, sizeof buf, "%s", PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r));
    PQclear(r);
    return buf;
}

/* The same figures from a compression object of the JSON report. */
static const char *json_figures(const JsonDoc *d, int parent)
{
    static char buf[512];
    static const char *const keys[] = {"jobs_compressed", "jobs_reused", "jobs_cleaned", "jobs_failed",
                                       "context_tokens_before", "context_tokens_after", "compression_ratio", "cost_usd",
                                       "tokens_saved", "saved_usd", "net_saved_usd"};
    int z = jobj(d, parent, "compression");
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", jv(d, z, keys[i]));
    }
    return buf;
}

/* `tierq report --json` with extra arguments, parsed into d; 0 on success. */
static int report_json(const char *args, JsonDoc *d)
{
    static char text[1 << 18];
    char a[256];
    snprintf(a, sizeof a, "report --json %s", args);
    int st = testdb_run(a, text, sizeof text);
    CHECKF(st == 0, "tierq %s: exit %d: %s", a, st, text);
    TqErr err = {0};
    int rc = st == 0 ? json_parse(d, text, strlen(text), 0, &err) : -1;
    CHECKF(rc == 0, "not JSON (%s): %s", err.msg, text);
    return rc;
}

static void test_json_figures_equal_the_ledger_and_the_jobs(void)
{
    PGconn *c = testdb_connect();
    two_runs(c);
    static const char *const runs[] = {NULL, "one", "two"};
    static const char *const kinds[] = {"doc", "doc32", "plain"};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        char args[64];
        snprintf(args, sizeof args, "%s%s", runs[r] ? "--run " : "", runs[r] ? runs[r] : "");
        JsonDoc d;
        if (report_json(args, &d) != 0)
            continue;
        char want[512];
        snprintf(want, sizeof want, "%s", sql_figures(c, NULL, runs[r]));
        CHECKF(strcmp(json_figures(&d, jobj(&d, 0, "totals")), want) == 0, "run %s totals: %s, want %s",
               runs[r] ? runs[r] : "(all)", json_figures(&d, jobj(&d, 0, "totals")), want);
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            int obj = jfind(&d, jobj(&d, 0, "kinds"), "kind", kinds[k]);
            if (runs[r] && strcmp(runs[r], "two") == 0 && k > 0) {
                CHECK_INT(obj, -1); /* run two has doc jobs only */
                continue;
            }
            snprintf(want, sizeof want, "%s", sql_figures(c, kinds[k], runs[r]));
            CHECKF(strcmp(json_figures(&d, obj), want) == 0, "run %s kind %s: %s, want %s", runs[r] ? runs[r] : "(all)",
                   kinds[k], json_figures(&d, obj), want);
        }
        json_doc_free(&d);
    }
    /* spelled out once: the figures are not zeros, the reused run paid no compression, the
     * non-compressing kind keeps the shape with zeros */
    JsonDoc d;
    if (report_json("--run two", &d) == 0) {
        int z = jobj(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "doc"), "compression");
        CHECK_STR(jv(&d, z, "jobs_compressed"), "5");
        CHECK_STR(jv(&d, z, "jobs_reused"), "3");
        CHECKF(strcmp(jv(&d, z, "cost_usd"), "0.000000") != 0, "run two paid for one compression: %s", jv(&d, z, "cost_usd"));
        json_doc_free(&d);
    }
    if (report_json("", &d) == 0) {
        int z = jobj(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "plain"), "compression");
        CHECK_STR(json_figures(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "plain")),
                  "0 0 0 0 0 0 null 0.000000 0 0.000000 0.000000");
        CHECK(json_type(&d, json_get(&d, z, "compression_ratio")) == JSON_PRIMITIVE);
        z = jobj(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "doc"), "compression");
        CHECK_STR(jv(&d, z, "jobs_compressed"), "9");
        CHECK_STR(jv(&d, z, "jobs_cleaned"), "1");
        CHECKF(atof(jv(&d, z, "net_saved_usd")) > 0, "net: %s", jv(&d, z, "net_saved_usd"));
        json_doc_free(&d);
    }
    PQfinish(c);
}

/* One "per kind: context compression" line as the report formats it, from SQL figures. */
static const char *text_line(const char *kind, const char *figures)
{
    static char buf[1024];
    char f[11][48];
    memset(f, 0, sizeof f);
    if (sscanf(figures, "%47s %47s %47s %47s %47s %47s %47s %47s %47s %47s %47s", f[0], f[1], f[2], f[3], f[4], f[5], f[6],
               f[7], f[8], f[9], f[10]) != 11)
        return "<bad figures>";
    char compressed[128];
    snprintf(compressed, sizeof compressed, "%s (%s reused)", f[0], f[1]);
    snprintf(buf, sizeof buf, "%-16s %16s %7s %6s %13s %12s %7s %12s %12s %12s %12s", kind, compressed, f[2], f[3], f[4],
             f[5], strcmp(f[6], "null") == 0 ? "-" : f[6], f[7], f[8], f[9], f[10]);
    return buf;
}

static void test_text_figures_equal_the_ledger_and_the_jobs(void)
{
    PGconn *c = testdb_connect();
    two_runs(c);
    static char text[1 << 18];
    int st = testdb_run("report", text, sizeof text);
    CHECKF(st == 0, "exit %d: %s", st, text);
    const char *pz = strstr(text, "\nper kind: context compression");
    const char *pt = strstr(text, "\nper kind and tier");
    CHECKF(pz && pt && pz < pt, "compression section missing or misplaced:\n%s", text);
    char line[512], want[512], fig[512];
    if (pz && pt && pz < pt) {
        char *section = strndup(pz, (size_t)(pt - pz));
        snprintf(fig, sizeof fig, "%s", sql_figures(c, "doc", NULL));
        CHECK_STR(line_of(section, "doc ", line, sizeof line), text_line("doc", fig));
        snprintf(fig, sizeof fig, "%s", sql_figures(c, "doc32", NULL));
        CHECK_STR(line_of(section, "doc32 ", line, sizeof line), text_line("doc32", fig));
        CHECK_STR(line_of(section, "plain ", line, sizeof line), ""); /* no compression: no line */
        free(section);
    }
    /* the totals section */
    char f[11][48];
    snprintf(fig, sizeof fig, "%s", sql_figures(c, NULL, NULL));
    CHECK_INT(sscanf(fig, "%47s %47s %47s %47s %47s %47s %47s %47s %47s %47s %47s", f[0], f[1], f[2], f[3], f[4], f[5], f[6],
                     f[7], f[8], f[9], f[10]),
              11);
    snprintf(want, sizeof want, "compressed         %s (%s reused), %s cleaned, %s failed", f[0], f[1], f[2], f[3]);
    CHECK_STR(line_of(text, "compressed ", line, sizeof line), want);
    snprintf(want, sizeof want, "context_tokens     %s before, %s after (ratio %s)", f[4], f[5], f[6]);
    CHECK_STR(line_of(text, "context_tokens ", line, sizeof line), want);
    snprintf(want, sizeof want, "compress_cost_usd  %s (the compression calls; part of cost_usd)", f[7]);
    CHECK_STR(line_of(text, "compress_cost_usd ", line, sizeof line), want);
    snprintf(want, sizeof want, "compress_saved_usd %s (%s input tokens the shorter contexts did not send)", f[9], f[8]);
    CHECK_STR(line_of(text, "compress_saved_usd ", line, sizeof line), want);
    snprintf(want, sizeof want, "compress_net_usd   %s (saved - cost)", f[10]);
    CHECK_STR(line_of(text, "compress_net_usd ", line, sizeof line), want);
    /* a selection without compression says so in one line each */
    st = testdb_run("report --run no-such-run", text, sizeof text);
    CHECK_INT(st, 0);
    CHECK_STR(line_of(text, "compression ", line, sizeof line), "compression        none in this selection");
    CHECKF(strstr(text, "\n  (none: a kind compresses long contexts") != NULL, "report said:\n%s", text);
    /* the other commands that read these tables still work */
    CHECK_INT(testdb_run("status", text, sizeof text), 0);
    CHECK_INT(testdb_run("cache stats --json", text, sizeof text), 0);
    PQfinish(c);
}

/* --since cutting through a claim: one of the four jobs that shared run one's compression finished
 * two days ago. The call counts for the three jobs inside the window (3/4 of its cost), the job
 * outside counts nowhere, and the net follows. */
static void test_since_counts_a_compression_for_its_jobs_inside(void)
{
    PGconn *c = testdb_connect();
    two_runs(c);
    testdb_exec(c, "BEGIN", NULL, 0);
    testdb_exec(c, "UPDATE tierq.jobs SET finished_at = now() - interval '2 days' WHERE id = (SELECT min(id) FROM tierq.jobs"
                   " WHERE run_name = 'one' AND kind = 'doc' AND compression = 'compressed')",
                NULL, 0);
    /* by hand: the run-one call at 3/4, the run-two call whole; the jobs of the window */
    char want[128] = "";
    PGresult *r = PQexec(c, "SELECT round(sum(CASE WHEN run_name = 'one' THEN cost_usd * 3 / 4 ELSE cost_usd END), 6)"
                            " FROM tierq.calls WHERE purpose = 'compress' AND kind = 'doc'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        snprintf(want, sizeof want, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE purpose = 'compress' AND kind = 'doc' AND run_name = 'one'"
                   " AND cardinality(job_ids) = 4"),
              1);
    /* the report runs in its own process: commit the move for it, undo it after */
    testdb_exec(c, "COMMIT", NULL, 0);
    JsonDoc d;
    if (report_json("--since 1d", &d) == 0) {
        int z = jobj(&d, jfind(&d, jobj(&d, 0, "kinds"), "kind", "doc"), "compression");
        CHECK_STR(jv(&d, z, "jobs_compressed"), "8");
        CHECK_STR(jv(&d, z, "cost_usd"), want);
        char saved[128];
        snprintf(saved, sizeof saved, "%s", jv(&d, z, "saved_usd"));
        PGresult *x = PQexecParams(c,
                                   "SELECT round(sum(compress_saved_usd), 6) = $1::numeric,"
                                   "  round(sum(compress_saved_usd) - (SELECT sum(CASE WHEN run_name = 'one' THEN cost_usd * 3 / 4"
                                   "    ELSE cost_usd END) FROM tierq.calls WHERE purpose = 'compress' AND kind = 'doc'), 6)"
                                   " FROM tierq.jobs WHERE kind = 'doc' AND finished_at >= now() - interval '1 day'",
                                   1, NULL, (const char *[]){saved}, NULL, NULL, 0);
        CHECKF(PQresultStatus(x) == PGRES_TUPLES_OK && PQgetvalue(x, 0, 0)[0] == 't', "saved_usd %s", saved);
        if (PQresultStatus(x) == PGRES_TUPLES_OK)
            CHECK_STR(jv(&d, z, "net_saved_usd"), PQgetvalue(x, 0, 1));
        PQclear(x);
        json_doc_free(&d);
    }
    testdb_exec(c, "UPDATE tierq.jobs SET finished_at = now() WHERE finished_at < now() - interval '1 day'", NULL, 0);
    PQfinish(c);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_report_compress", 1);
    RUN(test_json_figures_equal_the_ledger_and_the_jobs);
    RUN(test_text_figures_equal_the_ledger_and_the_jobs);
    RUN(test_since_counts_a_compression_for_its_jobs_inside);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
