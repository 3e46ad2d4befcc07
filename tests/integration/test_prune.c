/* `tierq prune` against a real PostgreSQL and the real binary: it deletes exactly the finished jobs
 * older than the given age in the given states, and the ledger rows that serve no job left (a
 * batched call shared with a kept job stays); it never touches queued or running jobs, also while a
 * `tierq run` daemon is working through the queue beside it; `tierq report` totals are the same
 * before and after; bad arguments are refused with a message; --dry-run deletes nothing. */
#include "reportjson.h"
#include "runhelp.h"

#include "err.h"
#include "json.h"

#include <signal.h>

static char out[65536];

/* Jobs 1..12 (ids fixed so the ledger can name them). "old" = finished 10 days ago.
 *   1 done old r1      2 done old r1       3 failed old r1     4 dead old r1
 *   5 cancelled old (no finished_at, created 10 days ago)      6 done 1 hour ago r1
 *   7 queued, created 10 days ago          8 running, claimed 10 days ago (a stale lease)
 *   9 done old r2 (cache hit)              10 done old, no run, compressed
 *   11 done 1 hour ago, compressed          12 done old r1 */
static const char *const SEED_JOBS =
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, state, result, model, tier, cost_usd, baseline_cost_usd,"
    "                        tokens_in, tokens_out, cache_hit, cache_saved_usd, compression, context_tokens_before,"
    "                        context_tokens_after, compress_tokens_saved, compress_saved_usd, created_at, started_at,"
    "                        finished_at, attempts, lease_owner, lease_until)"
    " SELECT id, kind, 'p' || id, run, state, CASE WHEN state = 'done' THEN 'a' END,"
    "   CASE WHEN state = 'done' THEN 'qwen3-8b' END, CASE WHEN state = 'done' THEN 1 END, cost, base, 100, 10, hit,"
    "   saved, cmp, CASE WHEN cmp = 'compressed' THEN 900 END, CASE WHEN cmp = 'compressed' THEN 300 END,"
    "   CASE WHEN cmp = 'compressed' THEN 600 ELSE 0 END, CASE WHEN cmp = 'compressed' THEN 0.0000123 ELSE 0 END,"
    "   now() - interval '11 days', CASE WHEN fin IS NOT NULL THEN fin - interval '2 seconds' END, fin,"
    "   CASE WHEN state = 'running' THEN 1 ELSE 0 END, CASE WHEN state = 'running' THEN 'w-old' END,"
    "   CASE WHEN state = 'running' THEN now() - interval '10 days' END"
    " FROM (VALUES"
    "  (1,  'classify',  'r1', 'done',      0.000010400000::numeric, 0.0004::numeric, false, 0::numeric, 'none', now() - interval '10 days'),"
    "  (2,  'classify',  'r1', 'done',      0.000020400000, 0.0004, false, 0,      'none',       now() - interval '10 days'),"
    "  (3,  'classify',  'r1', 'failed',    0.000005,       0,      false, 0,      'none',       now() - interval '10 days'),"
    "  (4,  'classify',  'r1', 'dead',      0.000007,       0,      false, 0,      'none',       now() - interval '10 days'),"
    "  (5,  'classify',  'r1', 'cancelled', 0,              0,      false, 0,      'none',       NULL),"
    "  (6,  'classify',  'r1', 'done',      0.000030,       0.0004, false, 0,      'none',       now() - interval '1 hour'),"
    "  (7,  'classify',  'r1', 'queued',    0,              0,      false, 0,      'none',       NULL),"
    "  (8,  'classify',  'r1', 'running',   0,              0,      false, 0,      'none',       NULL),"
    "  (9,  'summarize', 'r2', 'done',      0,              0.01,   true,  0.0021, 'none',       now() - interval '10 days'),"
    "  (10, 'summarize', NULL, 'done',      0.0011,         0.01,   false, 0,      'compressed', now() - interval '10 days'),"
    "  (11, 'summarize', NULL, 'done',      0.0012,         0.01,   false, 0,      'compressed', now() - interval '1 hour'),"
    "  (12, 'classify',  'r1', 'done',      0.000001,       0.0004, false, 0,      'none',       now() - interval '10 days')"
    " ) v(id, kind, run, state, cost, base, hit, saved, cmp, fin)";

/* Ledger rows, by key:
 *   a {1,2}  batch of two old done jobs: goes with them     b {3}  the failed job's call
 *   c {4}    the dead job's                                  d {2,6} batch shared with a kept job: stays
 *   e {10,11} compression shared by an old and a recent job: stays, its cost split 0.0001/0.0001
 *   f {10}   answer of 10                                    g {12} a retry of 12 (an error, not ok)
 *   h {12}   an intent never completed (sent): not a call in any report, deleted with its job */
static const char *const SEED_CALLS =
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, purpose, kind, model, tokens_in, tokens_cached_in, tokens_out,"
    "                         cost_usd, latency_ms, status, created_at)"
    " SELECT k, run, jobs::bigint[], purpose, kind, 'qwen3-8b', tin, 3, 7, cost, 120, status, at"
    " FROM (VALUES"
    "  ('a', 'r1', '{1,2}',   'answer',   'classify',  200, 0.000020800000::numeric, 'ok',    now() - interval '10 days'),"
    "  ('b', 'r1', '{3}',     'answer',   'classify',  100, 0.000005,                'ok',    now() - interval '10 days'),"
    "  ('c', 'r1', '{4}',     'answer',   'classify',  100, 0.000007,                'ok',    now() - interval '10 days'),"
    "  ('d', 'r1', '{2,6}',   'answer',   'classify',  200, 0.000040,                'ok',    now() - interval '1 hour'),"
    "  ('e', NULL, '{10,11}', 'compress', 'summarize', 900, 0.0002,                  'ok',    now() - interval '10 days'),"
    "  ('f', NULL, '{10}',    'answer',   'summarize', 300, 0.001,                   'ok',    now() - interval '10 days'),"
    "  ('g', 'r1', '{12}',    'answer',   'classify',  50,  0.000001,                'retry', now() - interval '10 days'),"
    "  ('h', 'r1', '{12}',    'answer',   'classify',  50,  0,                       'sent',  now() - interval '10 days')"
    " ) v(k, run, jobs, purpose, kind, tin, cost, status, at)";

static PGconn *seeded(void)
{
    PGconn *c = testdb_connect();
    char err[512];
    if (testdb_exec(c,
                    "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.daily_totals;"
                    " DELETE FROM tierq.daily_call_totals",
                    err, sizeof err) ||
        testdb_exec(c, SEED_JOBS, err, sizeof err) || testdb_exec(c, SEED_CALLS, err, sizeof err) ||
        /* the seed chose its ids: later INSERTs take theirs after them */
        testdb_exec(c, "SELECT setval(pg_get_serial_sequence('tierq.jobs', 'id'), 1000)", err, sizeof err)) {
        printf("# seeding: %s\n", err);
        exit(1);
    }
    return c;
}

static const char *ids_of(PGconn *c, const char *sql)
{
    static char text[1024];
    PGresult *r = PQexec(c, sql);
    snprintf(text, sizeof text, "%s",
             PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0)
                                                                                                  : "<none>");
    PQclear(r);
    return text;
}

#define JOB_IDS "SELECT string_agg(id::text, ',' ORDER BY id) FROM tierq.jobs"
#define CALL_KEYS "SELECT string_agg(call_key, ',' ORDER BY call_key) FROM tierq.calls"

static void test_prune_removes_only_old_finished_jobs_in_the_states_given(void)
{
    PGconn *c = seeded();
    int st = testdb_run("prune --older-than 2d --states done,failed --batch 2", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* done and failed older than 2 days went (1, 2, 3, 9, 10, 12); dead, cancelled, recent, queued and
     * running stayed */
    CHECK_STR(ids_of(c, JOB_IDS), "4,5,6,7,8,11");
    /* a (both jobs gone), b, f, g, h went; c serves the dead job, d the recent job 6, e job 11 */
    CHECK_STR(ids_of(c, CALL_KEYS), "c,d,e");
    CHECKF(strstr(out, "deleted 6 jobs") && strstr(out, "and 5 ledger rows"), "%s", out);
    /* the summary holds what went: 6 jobs; 4 of the 5 ledger rows (the intent h is no call) */
    CHECK_INT(q(c, "SELECT sum(jobs) FROM tierq.daily_totals"), 6);
    CHECK_INT(q(c, "SELECT sum(calls) FROM tierq.daily_call_totals"), 4);
    CHECK_INT(q(c, "SELECT sum(errors) FROM tierq.daily_call_totals"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.daily_totals WHERE day <> (now() - interval '10 days')::date"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.daily_totals WHERE state NOT IN ('done', 'failed')"), 0);

    /* every finished state now: the dead and the cancelled job (created 11 days ago, no finished_at) go */
    st = testdb_run("prune --older-than 2d --json", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_STR(ids_of(c, JOB_IDS), "6,7,8,11");
    CHECK_STR(ids_of(c, CALL_KEYS), "d,e");
    CHECKF(strstr(out, "\"dry_run\": false") && strstr(out, "\"jobs\": 2, \"calls\": 1"), "%s", out);
    /* nothing left that old: a third prune deletes nothing and says so, exit 0 */
    st = testdb_run("prune --older-than 2d", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "deleted 0 jobs"), "exit %d: %s", st, out);
    PQfinish(c);
}

static void test_a_batched_call_stays_until_its_last_job_goes(void)
{
    PGconn *c = seeded();
    int st = testdb_run("prune --older-than 2d", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* d serves pruned job 2 and kept job 6; e serves pruned 10 and kept 11 */
    CHECK_STR(ids_of(c, CALL_KEYS), "d,e");
    CHECK_STR(ids_of(c, "SELECT job_ids::text FROM tierq.calls WHERE call_key = 'd'"), "{2,6}");
    /* once the recent jobs are old enough, their shared calls go too */
    st = testdb_run("prune --older-than 30m", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_STR(ids_of(c, CALL_KEYS), "<none>");
    CHECK_STR(ids_of(c, JOB_IDS), "7,8");
    /* the compression call's cost was carried away in two shares, one per job: 0.0001 + 0.0001 */
    CHECK_STR(ids_of(c, "SELECT round(sum(compress_cost_usd), 12)::text FROM tierq.daily_totals"), "0.000200000000");
    PQfinish(c);
}

/* The report figures that must survive a prune, as one line of text: totals (but the pruned
 * footnote), per kind jobs and money, per model calls, tokens, money and errors. */
static void report_figures(const char *args, char *sig, size_t cap)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "report --format json %s", args);
    int st = testdb_run(cmd, out, sizeof out);
    CHECKF(st == 0, "report exit %d: %s", st, out);
    JsonDoc d = {0};
    TqErr err = {0};
    sig[0] = '\0';
    if (st != 0 || json_parse(&d, out, strlen(out), 0, &err)) {
        snprintf(sig, cap, "<no report: %s>", err.msg);
        return;
    }
    size_t len = 0;
    int t = jobj(&d, 0, "totals");
    static const char *const keys[] = {"jobs", "calls", "tokens_in", "tokens_cached_in", "tokens_out", "cost_usd",
                                       "baseline_cost_usd", "saved_usd", "saved_pct"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        len += (size_t)snprintf(sig + len, cap - len, "%s=%s ", keys[i], jv(&d, t, keys[i]));
    static const char *const objs[] = {"jobs_by_state", "cache", "compression"};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++) {
        size_t n = 0;
        int o = jobj(&d, t, objs[i]);
        const char *raw = o >= 0 ? json_raw(&d, o, &n) : "";
        len += (size_t)snprintf(sig + len, cap - len, "%s=%.*s ", objs[i], (int)n, raw);
    }
    int kinds = jobj(&d, 0, "kinds");
    for (int k = 0; kinds >= 0 && k < json_size(&d, kinds); k++) {
        int e = json_at(&d, kinds, k);
        size_t n = 0;
        int cz = jobj(&d, e, "compression"), ch = jobj(&d, e, "cache");
        const char *raw = cz >= 0 ? json_raw(&d, cz, &n) : "";
        size_t hn = 0;
        const char *hraw = ch >= 0 ? json_raw(&d, ch, &hn) : "";
        len += (size_t)snprintf(sig + len, cap - len, "| %s jobs=%s done=%s failed=%s cost=%s base=%s saved=%s %.*s %.*s ",
                                jv(&d, e, "kind"), jv(&d, e, "jobs"), jv(&d, e, "done"), jv(&d, e, "failed"),
                                jv(&d, e, "cost_usd"), jv(&d, e, "baseline_cost_usd"), jv(&d, e, "saved_pct"),
                                (int)n, raw, (int)hn, hraw);
    }
    int models = jobj(&d, 0, "models");
    for (int m = 0; models >= 0 && m < json_size(&d, models); m++) {
        int e = json_at(&d, models, m);
        len += (size_t)snprintf(sig + len, cap - len, "| %s calls=%s in=%s out=%s cost=%s errors=%s ",
                                jv(&d, e, "model"), jv(&d, e, "calls"), jv(&d, e, "tokens_in"), jv(&d, e, "tokens_out"),
                                jv(&d, e, "cost_usd"), jv(&d, e, "errors"));
    }
    (void)len;
    json_doc_free(&d);
}

static void test_report_totals_are_the_same_after_a_prune(void)
{
    PGconn *c = seeded();
    static const char *const selections[] = {"", "--run r1", "--run r2", "--since 1d", "--since 30d"};
    enum { NSEL = sizeof selections / sizeof selections[0] };
    static char before[NSEL][8192], after[NSEL][8192];
    for (int i = 0; i < NSEL; i++)
        report_figures(selections[i], before[i], sizeof before[i]);
    CHECKF(strstr(before[0], "jobs=12 ") && strstr(before[0], "cost_usd=0.002374 ") && strstr(before[0], "calls=7 "),
           "%s", before[0]);
    int st = testdb_run("prune --older-than 2d --batch 3", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "deleted 8 jobs"), "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs"), 4);
    for (int i = 0; i < NSEL; i++) {
        report_figures(selections[i], after[i], sizeof after[i]);
        CHECKF(strcmp(before[i], after[i]) == 0, "report %s changed by the prune:\nbefore %s\nafter  %s",
               selections[i], before[i], after[i]);
    }
    /* the text report says that pruned days are in it (the cancelled job's day is the day it was
     * created; the intent h is no call), and a window of 1 day includes none */
    st = testdb_run("report", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "(includes 2 pruned days, ") && strstr(out, ": 8 jobs and 5 calls from"),
           "exit %d: %s", st, out);
    st = testdb_run("report --since 1d", out, sizeof out);
    CHECKF(st == 0 && !strstr(out, "pruned day"), "exit %d: %s", st, out);
    st = testdb_run("report --json", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "\"pruned\": {\"days\": 2, \"first_day\": \"") && strstr(out, "\"jobs\": 8, \"calls\": 5}"),
           "exit %d: %s", st, out);
    PQfinish(c);
}

static void test_bad_arguments_are_refused_with_a_message(void)
{
    PGconn *c = seeded();
    static const struct {
        const char *args, *message;
    } bad[] = {
        {"prune", "--older-than is required"},
        {"prune --older-than 0s", "bad --older-than duration \"0s\""},
        {"prune --older-than -3d", "bad --older-than duration \"-3d\""},
        {"prune --older-than soon", "bad --older-than duration \"soon\""},
        {"prune --older-than 2d --states queued", "queued jobs are never pruned"},
        {"prune --older-than 2d --states done,running", "running jobs are never pruned"},
        {"prune --older-than 2d --states done,finished", "\"finished\" is not a finished state"},
        {"prune --older-than 2d --states ''", "--states names no state"},
        {"prune --older-than 2d --batch 0", "--batch takes a whole number from 1 to 100000"},
        {"prune --older-than 2d --batch 100001", "--batch takes a whole number from 1 to 100000"},
        {"prune --older-than 2d --batch 5x", "--batch takes a whole number"},
        {"prune --older-than 2d --format yaml", "--format takes text or json"},
        {"prune --older-than 2d --everything", "unknown option --everything"},
        {"prune --older-than", "--older-than needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = testdb_run(bad[i].args, out, sizeof out);
        CHECKF(st == 2 && strstr(out, bad[i].message), "%s: exit %d: %s", bad[i].args, st, out);
    }
    /* the SQL function refuses the same, in its own words, for callers that skip the command line */
    static const struct {
        const char *sql, *message;
    } sql[] = {
        {"SELECT * FROM tierq.prune_batch('-1 day')", "older_than must be a positive interval"},
        {"SELECT * FROM tierq.prune_batch('0')", "older_than must be a positive interval"},
        {"SELECT * FROM tierq.prune_batch('1 day', '{done,queued}')", "state queued is not a finished state"},
        {"SELECT * FROM tierq.prune_batch('1 day', '{}')", "states must name at least one"},
        {"SELECT * FROM tierq.prune_batch('1 day', '{done}', 0)", "batch_limit must be from 1 to 100000"},
        {"SELECT * FROM tierq.prune_batch('1 day', '{done}', 100001)", "batch_limit must be from 1 to 100000"},
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        char err[512];
        int rc = testdb_exec(c, sql[i].sql, err, sizeof err);
        CHECKF(rc != 0 && strstr(err, sql[i].message), "%s: %s", sql[i].sql, err);
    }
    /* none of it deleted anything */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs"), 12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls"), 8);
    /* help works anywhere on the line, also beside a bad option */
    int st = testdb_run("prune --bogus --help", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "usage: tierq prune --older-than D"), "exit %d: %s", st, out);
    PQfinish(c);
}

static void test_dry_run_deletes_nothing_and_says_what_would_go(void)
{
    PGconn *c = seeded();
    int st = testdb_run("prune --older-than 2d --states done,failed --dry-run", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECKF(strstr(out, "would delete 6 jobs") && strstr(out, "and 5 ledger rows") && strstr(out, "nothing deleted"),
           "%s", out);
    st = testdb_run("prune --older-than 2d --dry-run --format json", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "\"dry_run\": true") && strstr(out, "\"jobs\": 8, \"calls\": 6, \"cost_usd\": 0.001144}"),
           "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs"), 12);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls"), 8);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.daily_totals"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.daily_call_totals"), 0);
    /* and what it announced is what a prune then deletes */
    st = testdb_run("prune --older-than 2d --json", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "\"jobs\": 8, \"calls\": 6,"), "exit %d: %s", st, out);
    PQfinish(c);
}

static char answers[256];

/* A `tierq run` daemon works through 400 jobs against the simulator while a prune deletes 20,000
 * old finished jobs in batches of 200 beside it: every one of the daemon's jobs ends done, none is
 * lost, and the daemon's own ledger rows stay. */
static void test_prune_beside_an_active_run_loses_none_of_its_jobs(void)
{
    PGconn *c = seeded();
    snprintf(answers, sizeof answers, "/tmp/tq_prune_answers.%d.tsv", (int)getpid());
    FILE *f = fopen(answers, "w");
    if (f) {
        fprintf(f, "kind\tprompt\texpected\n");
        for (int i = 1; i <= 400; i++)
            fprintf(f, "simple\tquestion number %d\tanswer %d\n", i, i % 7);
        fclose(f);
    }
    char err[512];
    CHECK_INT(testdb_exec(c,
                          "INSERT INTO tierq.jobs (kind, prompt, run_name, state, result, cost_usd, created_at, finished_at)"
                          " SELECT 'simple', 'old ' || g, 'old', 'done', 'a', 0.000001, now() - interval '40 days',"
                          "        now() - interval '30 days' - g * interval '1 second'"
                          " FROM generate_series(1, 20000) g",
                          err, sizeof err),
              0);
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 40"), 0);
    int pid = start_daemon(&s, "--max-in-flight 4 --poll-ms 100 --lease-s 30");
    CHECK(pid > 0);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 1, 10000), 1);
    CHECK_INT(testdb_exec(c,
                          "INSERT INTO tierq.jobs (kind, prompt, run_name)"
                          " SELECT 'simple', 'question number ' || g, 'live' FROM generate_series(1, 400) g",
                          err, sizeof err),
              0);
    /* the run is under way: some of its jobs are done, others still queued or running */
    CHECK(wait_for(c, "SELECT least(count(*), 1) FROM tierq.jobs WHERE run_name = 'live' AND state = 'done'", 1, 15000) == 1);
    long long pending = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'live' AND state IN ('queued', 'running')");
    CHECKF(pending > 0, "the run finished before the prune started: %lld pending", pending);
    int st = testdb_run("prune --older-than 1d --batch 200", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "deleted 20008 jobs"), "exit %d: %s", st, out);
    long long still = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'live' AND state IN ('queued', 'running')");
    printf("# live jobs pending when the prune started: %lld, after it: %lld\n", pending, still);
    /* every job of the run is still there and ends done */
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'live' AND state = 'done'", 400, 60000), 400);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'live'"), 400);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'old'"), 0);
    /* the old queued and running rows of the seed were not touched either */
    CHECK_STR(ids_of(c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM tierq.jobs WHERE run_name IS DISTINCT FROM 'live'"),
              "6,7,8,11");
    /* the daemon's ledger: every live job served by an ok answer call still stored */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j.run_name = 'live' AND NOT EXISTS (SELECT 1 FROM"
                   " tierq.calls k WHERE k.job_ids @> ARRAY[j.id] AND k.status = 'ok')"),
              0);
    if (pid > 0)
        kill(pid, SIGTERM);
    CHECK_INT(wait_for(c, "SELECT count(*) FROM tierq.workers", 0, 15000), 0);
    sim_stop(&s);
    unlink(answers);
    PQfinish(c);
}

int main(void)
{
    testdb_setup("tq_prune", 1);
    RUN(test_prune_removes_only_old_finished_jobs_in_the_states_given);
    RUN(test_a_batched_call_stays_until_its_last_job_goes);
    RUN(test_report_totals_are_the_same_after_a_prune);
    RUN(test_bad_arguments_are_refused_with_a_message);
    RUN(test_dry_run_deletes_nothing_and_says_what_would_go);
    RUN(test_prune_beside_an_active_run_loses_none_of_its_jobs);
    return check_done();
}
