/* `tierq cache stats` and `tierq cache purge` against a real PostgreSQL: entries go in as the daemon
 * stores them (zstd frames from cache_pack_answer), done jobs with and without hits beside them, and
 * the figures a user reads must equal the SQL sums; a purge deletes exactly what its filters name and
 * refuses to run without one. */
#include "reportjson.h"
#include "runhelp.h"

#include "buf.h"
#include "cache.h"
#include "cacheadmin.h"
#include "err.h"
#include "json.h"

/* One entry: key from n (64 digits, valid hex), the answer packed as the daemon packs it, created
 * created_ago_s seconds ago, expiring in expires_in_s (negative: already expired). */
static void add_entry(PGconn *c, int n, const char *kind, const char *answer, long created_ago_s, long expires_in_s,
                      int hits)
{
    Buf z;
    buf_init(&z, 0);
    TqErr err = {0};
    if (cache_pack_answer(answer, strlen(answer), 3, &z, &err)) {
        printf("# cache_pack_answer: %s\n", err.msg);
        exit(1);
    }
    char key[80], raw[24], ago[24], exp[24], nh[24];
    snprintf(key, sizeof key, "%064d", n);
    snprintf(raw, sizeof raw, "%zu", strlen(answer));
    snprintf(ago, sizeof ago, "%ld", created_ago_s);
    snprintf(exp, sizeof exp, "%ld", expires_in_s);
    snprintf(nh, sizeof nh, "%d", hits);
    const char *p[] = {key, kind, z.data, raw, ago, exp, nh};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO tierq.cache (key, kind, answer_z, raw_len, model, tier, cost_usd,"
                               "  created_at, expires_at, hits)"
                               " VALUES ($1, $2, $3::bytea, $4::int, 'qwen3-8b', 1, 0.001,"
                               "  now() - $5::bigint * interval '1 second', now() + $6::bigint * interval '1 second',"
                               "  $7::bigint)",
                               7, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        printf("# insert entry: %s", PQresultErrorMessage(r));
        exit(1);
    }
    PQclear(r);
    buf_free(&z);
}

/* Entries: classify 4 (one expired, one created 3 days ago), summarize 3 (one expired), chat 1
 * (answered nothing in the selection). Jobs: classify 5 done in run r1, 2 of them hits (saving
 * 0.0000104 and 0.0000205: rounding each first would give 0.000031, summed exactly 0.000031 — and a
 * third hit in run r2); summarize 2 done, 1 hit, finished 2 days ago; one failed classify job marked
 * as a hit to show only done jobs count; translate 1 done, no entries. */
static const char *const SEED_JOBS =
    "INSERT INTO tierq.jobs (kind, prompt, run_name, state, result, tier, model, cost_usd, baseline_cost_usd,"
    "                        cache_hit, cache_saved_usd, started_at, finished_at)"
    " SELECT kind, 'p', run, state, 'a', 1, 'qwen3-8b', cost, base, hit, saved, fin, fin"
    " FROM (VALUES"
    "  ('classify',  'r1', 'done',   0.00002::numeric, 0.0004::numeric, false, 0::numeric,      now() - interval '5 minutes'),"
    "  ('classify',  'r1', 'done',   0.00002,          0.0004,          false, 0,               now() - interval '5 minutes'),"
    "  ('classify',  'r1', 'done',   0.00002,          0.0004,          false, 0,               now() - interval '5 minutes'),"
    "  ('classify',  'r1', 'done',   0,                0.0004,          true,  0.0000104,       now() - interval '5 minutes'),"
    "  ('classify',  'r1', 'done',   0,                0.0004,          true,  0.0000205,       now() - interval '5 minutes'),"
    "  ('classify',  'r2', 'done',   0,                0.0004,          true,  0.001,           now() - interval '5 minutes'),"
    "  ('classify',  'r1', 'failed', 0,                0,               true,  0.5,             now() - interval '5 minutes'),"
    "  ('summarize', 'r1', 'done',   0.001,            0.01,            false, 0,               now() - interval '2 days'),"
    "  ('summarize', 'r1', 'done',   0,                0.01,            true,  0.002,           now() - interval '2 days'),"
    "  ('translate', 'r1', 'done',   0.0001,           0.001,           false, 0,               now() - interval '5 minutes')"
    " ) v(kind, run, state, cost, base, hit, saved, fin)";

static void seed(PGconn *c)
{
    testdb_exec(c, "DELETE FROM tierq.cache; DELETE FROM tierq.jobs", NULL, 0);
    add_entry(c, 1, "classify", "billing", 60, 3600, 2);
    add_entry(c, 2, "classify", "a longer answer, a longer answer, a longer answer, a longer answer", 60, 3600, 0);
    add_entry(c, 3, "classify", "bug", 3 * 86400, -60, 1);
    add_entry(c, 4, "classify", "other", 3 * 86400, 3600, 0);
    add_entry(c, 5, "summarize", "a summary of the text, which repeats: the text, the text, the text", 60, 3600, 1);
    add_entry(c, 6, "summarize", "short", 60, -1, 0);
    add_entry(c, 7, "summarize", "another summary", 60, 3600, 0);
    add_entry(c, 8, "chat", "hello there", 60, 3600, 5);
    char err[512];
    if (testdb_exec(c, SEED_JOBS, err, sizeof err)) {
        printf("# seeding jobs: %s\n", err);
        exit(1);
    }
}

static PGconn *cache_db(void)
{
    static int made;
    if (!made) {
        testdb_setup("tq_cache_cli", 1);
        made = 1;
    }
    return testdb_connect();
}

/* First column of the first row as text (the query returns one row), into a rotating buffer. */
static const char *sql_text(PGconn *c, const char *sql)
{
    static char bufs[8][128];
    static int next;
    char *out = bufs[next++ % 8];
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(out, sizeof bufs[0], "%s", PQgetisnull(r, 0, 0) ? "null" : PQgetvalue(r, 0, 0));
    else
        snprintf(out, sizeof bufs[0], "<error: %s>", PQresultErrorMessage(r));
    PQclear(r);
    return out;
}

static int stats_to_string(PGconn *c, ReportFormat format, const char *run, long since_s, char **text)
{
    size_t len = 0;
    *text = NULL;
    FILE *f = open_memstream(text, &len);
    if (!f) {
        printf("# open_memstream failed\n");
        exit(1);
    }
    ReportOptions opt = {.format = format, .run_name = run, .since_s = since_s};
    TqErr err = {0};
    int rc = cacheadmin_stats(c, &opt, f, &err);
    if (rc)
        printf("# cache stats: %s\n", err.msg);
    fclose(f);
    return rc;
}

static const char *const TOP_KEYS[] = {"filters", "totals", "kinds"};
static const char *const FILTER_KEYS[] = {"run", "since_s"};
static const char *const TOTAL_KEYS[] = {"entries", "expired", "raw_bytes", "compressed_bytes", "compression_ratio",
                                         "hits", "done_jobs", "hit_jobs", "hit_rate", "saved_usd"};
static const char *const KIND_KEYS[] = {"kind", "entries", "expired", "raw_bytes", "compressed_bytes",
                                        "compression_ratio", "hits", "done_jobs", "hit_jobs", "hit_rate", "saved_usd"};
#define NKEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Parse, check the shape; returns the totals object or -1. */
static int parse_stats(const char *text, JsonDoc *d)
{
    TqErr err = {0};
    if (json_parse(d, text, strlen(text), 0, &err)) {
        CHECKF(0, "stats are not JSON (%s): %s", err.msg, text);
        return -1;
    }
    check_keys(d, 0, TOP_KEYS, NKEYS(TOP_KEYS), "stats");
    int t = json_get(d, 0, "totals"), k = json_get(d, 0, "kinds");
    check_keys(d, json_get(d, 0, "filters"), FILTER_KEYS, NKEYS(FILTER_KEYS), "filters");
    check_keys(d, t, TOTAL_KEYS, NKEYS(TOTAL_KEYS), "totals");
    CHECK(k >= 0 && json_type(d, k) == JSON_ARRAY);
    for (int i = 0; k >= 0 && i < json_size(d, k); i++)
        check_keys(d, json_at(d, k, i), KIND_KEYS, NKEYS(KIND_KEYS), "kind entry");
    return t;
}

static void test_stats_on_an_empty_cache(void)
{
    PGconn *c = cache_db();
    testdb_exec(c, "DELETE FROM tierq.cache; DELETE FROM tierq.jobs", NULL, 0);
    char *t = NULL;
    CHECK_INT(stats_to_string(c, REPORT_JSON, NULL, 0, &t), 0);
    JsonDoc d;
    int tot = parse_stats(t ? t : "", &d);
    if (tot >= 0) {
        CHECK_STR(jv(&d, json_get(&d, 0, "filters"), "run"), "null");
        CHECK_STR(jv(&d, json_get(&d, 0, "filters"), "since_s"), "null");
        CHECK_STR(jv(&d, tot, "entries"), "0");
        CHECK_STR(jv(&d, tot, "raw_bytes"), "0");
        CHECK_STR(jv(&d, tot, "compressed_bytes"), "0");
        CHECK_STR(jv(&d, tot, "compression_ratio"), "null");
        CHECK_STR(jv(&d, tot, "done_jobs"), "0");
        CHECK_STR(jv(&d, tot, "hit_rate"), "null");
        CHECK_STR(jv(&d, tot, "saved_usd"), "0.000000");
        CHECK_INT(json_size(&d, json_get(&d, 0, "kinds")), 0);
        json_doc_free(&d);
    }
    free(t);
    CHECK_INT(stats_to_string(c, REPORT_TEXT, NULL, 0, &t), 0);
    char line[256];
    CHECK_STR(line_of(t, "entries ", line, sizeof line), "entries            0 (0 expired, not yet deleted)");
    CHECKF(strstr(t, "(no entries and no done jobs)") != NULL, "stats said:\n%s", t);
    free(t);
    /* and through the binary, as a user runs it */
    char out[4096];
    CHECK_INT(testdb_run("cache stats", out, sizeof out), 0);
    CHECKF(strstr(out, "bytes              0 raw, 0 compressed (ratio -)") != NULL, "stats said:\n%s", out);
    PQfinish(c);
}

static void test_stats_figures_equal_sql_sums(void)
{
    PGconn *c = cache_db();
    seed(c);
    char *t = NULL;
    CHECK_INT(stats_to_string(c, REPORT_JSON, NULL, 0, &t), 0);
    JsonDoc d;
    int tot = parse_stats(t ? t : "", &d);
    if (tot >= 0) {
        CHECK_STR(jv(&d, tot, "entries"), "8");
        CHECK_STR(jv(&d, tot, "expired"), "2");
        CHECK_STR(jv(&d, tot, "raw_bytes"), sql_text(c, "SELECT sum(raw_len) FROM tierq.cache"));
        CHECK_STR(jv(&d, tot, "compressed_bytes"), sql_text(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache"));
        CHECK_STR(jv(&d, tot, "compression_ratio"),
                  sql_text(c, "SELECT round(sum(raw_len)::numeric / sum(octet_length(answer_z)), 2) FROM tierq.cache"));
        CHECK_STR(jv(&d, tot, "hits"), "9");
        CHECK_STR(jv(&d, tot, "done_jobs"), "9");
        CHECK_STR(jv(&d, tot, "hit_jobs"), "4");
        CHECK_STR(jv(&d, tot, "hit_rate"), "0.444444");
        CHECK_STR(jv(&d, tot, "saved_usd"), "0.003031"); /* the failed job's 0.5 is no saving */
        int kinds = json_get(&d, 0, "kinds");
        CHECK_INT(json_size(&d, kinds), 4);
        CHECK_STR(jv(&d, json_at(&d, kinds, 0), "kind"), "chat"); /* by name */
        int k = jfind(&d, kinds, "kind", "classify");
        CHECK_STR(jv(&d, k, "entries"), "4");
        CHECK_STR(jv(&d, k, "expired"), "1");
        CHECK_STR(jv(&d, k, "raw_bytes"), sql_text(c, "SELECT sum(raw_len) FROM tierq.cache WHERE kind = 'classify'"));
        CHECK_STR(jv(&d, k, "compressed_bytes"),
                  sql_text(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache WHERE kind = 'classify'"));
        CHECK_STR(jv(&d, k, "hits"), "3");
        CHECK_STR(jv(&d, k, "done_jobs"), "6");
        CHECK_STR(jv(&d, k, "hit_jobs"), "3");
        CHECK_STR(jv(&d, k, "hit_rate"), "0.500000");
        CHECK_STR(jv(&d, k, "saved_usd"), "0.001031");
        int ch = jfind(&d, kinds, "kind", "chat"); /* entries, no jobs */
        CHECK_STR(jv(&d, ch, "entries"), "1");
        CHECK_STR(jv(&d, ch, "hits"), "5");
        CHECK_STR(jv(&d, ch, "done_jobs"), "0");
        CHECK_STR(jv(&d, ch, "hit_rate"), "null");
        int tr = jfind(&d, kinds, "kind", "translate"); /* jobs, no entries */
        CHECK_STR(jv(&d, tr, "entries"), "0");
        CHECK_STR(jv(&d, tr, "compression_ratio"), "null");
        CHECK_STR(jv(&d, tr, "done_jobs"), "1");
        CHECK_STR(jv(&d, tr, "hit_rate"), "0.000000");
        json_doc_free(&d);
    }
    free(t);
    CHECK_INT(stats_to_string(c, REPORT_TEXT, NULL, 0, &t), 0);
    char line[256], want[256];
    CHECK_STR(line_of(t, "entries ", line, sizeof line), "entries            8 (2 expired, not yet deleted)");
    CHECK_STR(line_of(t, "cache hits ", line, sizeof line), "cache hits         44.4% (4/9)");
    CHECK_STR(line_of(t, "saved_usd ", line, sizeof line),
              "saved_usd          0.003031 (what the cached answers cost when they were produced)");
    const char *pk = strstr(t, "\nper kind\n");
    CHECKF(pk != NULL, "per kind missing:\n%s", t);
    snprintf(want, sizeof want, "%-16s %8s %8s %12s %12s %6s %8s %8s  %-22s %12s", "classify", "4", "1",
             sql_text(c, "SELECT sum(raw_len) FROM tierq.cache WHERE kind = 'classify'"),
             sql_text(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache WHERE kind = 'classify'"),
             sql_text(c, "SELECT round(sum(raw_len)::numeric / sum(octet_length(answer_z)), 2) FROM tierq.cache"
                         " WHERE kind = 'classify'"),
             "3", "6", "50.0% (3/6)", "0.001031");
    CHECK_STR(line_of(pk ? pk : "", "classify ", line, sizeof line), want);
    free(t);
    PQfinish(c);
}

/* --run and --since select jobs; entries are the cache as it is, whatever the filters. */
static void test_stats_filters_select_jobs_only(void)
{
    PGconn *c = cache_db();
    seed(c);
    char *t = NULL;
    CHECK_INT(stats_to_string(c, REPORT_JSON, "r1", 86400, &t), 0);
    JsonDoc d;
    int tot = parse_stats(t ? t : "", &d);
    if (tot >= 0) {
        CHECK_STR(jv(&d, json_get(&d, 0, "filters"), "run"), "r1");
        CHECK_STR(jv(&d, json_get(&d, 0, "filters"), "since_s"), "86400");
        CHECK_STR(jv(&d, tot, "entries"), "8");
        CHECK_STR(jv(&d, tot, "done_jobs"), "6"); /* classify r1 5, translate 1; summarize finished 2 days ago */
        CHECK_STR(jv(&d, tot, "hit_jobs"), "2");
        CHECK_STR(jv(&d, tot, "hit_rate"), "0.333333");
        CHECK_STR(jv(&d, tot, "saved_usd"), "0.000031");
        CHECK_STR(jv(&d, jfind(&d, json_get(&d, 0, "kinds"), "kind", "summarize"), "done_jobs"), "0");
        json_doc_free(&d);
    }
    free(t);
    /* the same selection from the command line */
    char out[8192];
    CHECK_INT(testdb_run("cache stats --format json --run r2", out, sizeof out), 0);
    CHECKF(strstr(out, "\"done_jobs\": 1, \"hit_jobs\": 1, \"hit_rate\": 1.000000, \"saved_usd\": 0.001000}") != NULL,
           "stats said:\n%s", out);
    CHECK_INT(testdb_run("cache stats --since 3x", out, sizeof out), 2);
    PQfinish(c);
}

static long long count_sql(PGconn *c, const char *sql)
{
    return testdb_scalar(c, sql);
}

static void test_purge_without_filter_is_refused(void)
{
    PGconn *c = cache_db();
    seed(c);
    char out[2048];
    CHECK_INT(testdb_run("cache purge", out, sizeof out), 2);
    CHECKF(strstr(out, "no filter given, nothing deleted") && strstr(out, "--all"), "purge said: %s", out);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 8);
    /* a filter that is no kind name, and --all with a filter: refused too, nothing deleted */
    CHECK_INT(testdb_run("cache purge --kind \"classify' OR true --\"", out, sizeof out), 2);
    CHECKF(strstr(out, "is not a kind name") != NULL, "purge said: %s", out);
    CHECK_INT(testdb_run("cache purge --all --expired", out, sizeof out), 2);
    CHECK_INT(testdb_run("cache purge --older-than 5", out, sizeof out), 2);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 8);
    /* the library refuses the same */
    CachePurgeResult res;
    TqErr err = {0};
    CHECK_INT(cacheadmin_purge(c, &(CachePurgeFilter){0}, 10, &res, &err), TQ_EINVAL);
    CHECK_INT(cacheadmin_purge(c, &(CachePurgeFilter){.kind = "Classify"}, 10, &res, &err), TQ_EINVAL);
    CHECK_INT(cacheadmin_purge(c, &(CachePurgeFilter){.all = true, .kind = "classify"}, 10, &res, &err), TQ_EINVAL);
    CHECK_INT(res.entries, 0);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 8);
    PQfinish(c);
}

static void test_purge_expired_deletes_only_expired(void)
{
    PGconn *c = cache_db();
    seed(c);
    char want[256], out[2048];
    snprintf(want, sizeof want, "cache purge: deleted 2 entries, %s bytes compressed (%s raw)",
             sql_text(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache WHERE expires_at <= now()"),
             sql_text(c, "SELECT sum(raw_len) FROM tierq.cache WHERE expires_at <= now()"));
    CHECK_INT(testdb_run("cache purge --expired", out, sizeof out), 0);
    CHECKF(strstr(out, want) != NULL, "purge said: %s (want %s)", out, want);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 6);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache WHERE expires_at <= now()"), 0);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache WHERE key IN (" /* the expired two */
                           "  lpad('3', 64, '0'), lpad('6', 64, '0'))"),
              0);
    /* done jobs keep their hits and savings */
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.jobs WHERE cache_hit"), 5);
    PQfinish(c);
}

static void test_purge_kind_deletes_only_that_kind(void)
{
    PGconn *c = cache_db();
    seed(c);
    char out[2048];
    CHECK_INT(testdb_run("cache purge --kind summarize", out, sizeof out), 0);
    CHECKF(strstr(out, "deleted 3 entries") != NULL, "purge said: %s", out);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'summarize'"), 0);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 5);
    /* a valid name with no entries deletes nothing, and says so */
    CHECK_INT(testdb_run("cache purge --kind no_such_kind", out, sizeof out), 0);
    CHECKF(strstr(out, "cache purge: deleted 0 entries, 0 bytes compressed (0 raw)") != NULL, "purge said: %s", out);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 5);
    /* filters combine: classify entries created more than a day ago (the expired one among them) */
    CHECK_INT(testdb_run("cache purge --kind classify --older-than 1d", out, sizeof out), 0);
    CHECKF(strstr(out, "deleted 2 entries") != NULL, "purge said: %s", out);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'classify'"), 2);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache WHERE created_at < now() - interval '1 day'"), 0);
    PQfinish(c);
}

/* Small batches: the purge loops until no matching key is left, and counts every batch. */
static void test_purge_loops_over_batches(void)
{
    PGconn *c = cache_db();
    seed(c);
    long long bytes = count_sql(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache");
    long long raw = count_sql(c, "SELECT sum(raw_len) FROM tierq.cache");
    CachePurgeResult res;
    TqErr err = {0};
    CHECK_INT(cacheadmin_purge(c, &(CachePurgeFilter){.older_than_s = 30}, 2, &res, &err), 0);
    CHECK_INT(res.entries, 8);
    CHECK_INT(res.bytes, bytes);
    CHECK_INT(res.raw_bytes, raw);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 0);
    seed(c);
    CHECK_INT(cacheadmin_purge(c, &(CachePurgeFilter){.kind = "classify"}, 1, &res, &err), 0);
    CHECK_INT(res.entries, 4);
    CHECK_INT(cacheadmin_purge(c, &(CachePurgeFilter){.kind = "summarize"}, 2, &res, &err), 0);
    CHECK_INT(res.entries, 3);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 1);
    /* --all empties it */
    char out[2048];
    CHECK_INT(testdb_run("cache purge --all", out, sizeof out), 0);
    CHECKF(strstr(out, "deleted 1 entries") != NULL, "purge said: %s", out);
    CHECK_INT(count_sql(c, "SELECT count(*) FROM tierq.cache"), 0);
    PQfinish(c);
}

/* The real path: a run answers jobs and stores their answers; a second run of the same prompts is
 * answered from the cache. Stats and report for the second run must show the hits SQL counts, and the
 * dollars saved must be what the first run paid for those answers. */
static void test_second_run_hits_in_stats_and_report(void)
{
    PGconn *c = cache_db();
    testdb_exec(c, "DELETE FROM tierq.cache; DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'cached question ' || g, 'first'"
                   " FROM generate_series(1, 12) g", NULL, 0);
    int st = run_drain(&s, "--run first");
    CHECKF(st == 0, "first run: exit %d: %s", st, run_out);
    long long stored = q(c, "SELECT count(*) FROM tierq.cache");
    CHECKF(stored > 0, "the first run stored no answer (%lld)", stored);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'simple', 'cached question ' || g, 'second'"
                   " FROM generate_series(1, 12) g", NULL, 0);
    st = run_drain(&s, "--run second");
    CHECKF(st == 0, "second run: exit %d: %s", st, run_out);
    sim_stop(&s);
    long long hits = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'second' AND cache_hit");
    CHECK_INT(hits, stored);
    /* each hit saved what the first run paid for that prompt's answer */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs b JOIN tierq.jobs a ON a.prompt = b.prompt AND a.run_name = 'first'"
                   " WHERE b.run_name = 'second' AND b.cache_hit AND (b.cache_saved_usd <> a.cost_usd OR b.cost_usd <> 0)"),
              0);
    char want[256], out[16384];
    snprintf(want, sizeof want, "\"hits\": %lld, \"done_jobs\": 12, \"hit_jobs\": %lld, \"hit_rate\": %s, \"saved_usd\": %s}",
             hits, hits,
             sql_text(c, "SELECT round(count(*) FILTER (WHERE cache_hit)::numeric / count(*), 6) FROM tierq.jobs"
                         " WHERE run_name = 'second' AND state = 'done'"),
             sql_text(c, "SELECT round(sum(cache_saved_usd), 6) FROM tierq.jobs WHERE run_name = 'second' AND state = 'done'"));
    CHECK_INT(testdb_run("cache stats --json --run second", out, sizeof out), 0);
    CHECKF(strstr(out, want) != NULL, "stats said:\n%s\nwant: %s", out, want);
    /* the report of the second run says the same, per kind */
    snprintf(want, sizeof want, "\"cache\": {\"hits\": %lld, \"hit_rate\": %s, \"saved_usd\": %s}", hits,
             sql_text(c, "SELECT round(count(*) FILTER (WHERE cache_hit)::numeric / count(*), 6) FROM tierq.jobs"
                         " WHERE run_name = 'second' AND state = 'done'"),
             sql_text(c, "SELECT round(sum(cache_saved_usd), 6) FROM tierq.jobs WHERE run_name = 'second' AND state = 'done'"));
    CHECK_INT(testdb_run("report --json --run second", out, sizeof out), 0);
    CHECKF(strstr(out, want) != NULL, "report said:\n%s\nwant: %s", out, want);
    PQfinish(c);
}

int main(void)
{
    RUN(test_stats_on_an_empty_cache);
    RUN(test_stats_figures_equal_sql_sums);
    RUN(test_stats_filters_select_jobs_only);
    RUN(test_purge_without_filter_is_refused);
    RUN(test_purge_expired_deletes_only_expired);
    RUN(test_purge_kind_deletes_only_that_kind);
    RUN(test_purge_loops_over_batches);
    RUN(test_second_run_hits_in_stats_and_report);
    return check_done();
}
