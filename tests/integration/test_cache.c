/* The response cache end to end: the real tierq against the simulator and a private PostgreSQL.
 * A repeated job is answered from tierq.cache at $0 with the model and tier that produced the answer;
 * anything in the key that changes (the kind's file, the job's system prompt, params or context) is a
 * miss; an expired entry is a miss and upkeep deletes it; answers that failed or were escalated away
 * are never stored; identical jobs in one claim make one call (single flight) with exact sums;
 * params.cache = false, --no-cache and --cache-only-read do what they say; a corrupt entry is a
 * miss with a warning, never served. The cache key holds each provider's base URL, so each test's
 * own simulator (its own port) starts with nothing cached. */
#include "runhelp.h"

#include <sys/stat.h>

static char dir[256], jobs[300], jobs2[300], answers[320];
#define out run_out

static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_cache.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    snprintf(jobs2, sizeof jobs2, "%s/jobs2", dir);
    snprintf(answers, sizeof answers, "%s/answers.tsv", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' '%s' && cp '%s'/jobs/*.json '%s/' && cp '%s'/jobs/*.json '%s/'",
             dir, jobs, jobs2, getenv("TIERQ_ROOT"), jobs, getenv("TIERQ_ROOT"), jobs2);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    const char *plain = "{\"system_prompt\": \"Answer with a single word or a short phrase, nothing else.\","
                        " \"tiers\": [{\"model\": \"qwen3-8b\"}], \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16,"
                        " \"temperature\": 0, \"checks\": {\"min_chars\": 1, \"max_chars\": 64}}";
    /* tier 1 never good enough (accept 1.0 with a logprob score below 1): every job escalates */
    const char *esc = "{\"system_prompt\": \"Answer with a single word or a short phrase, nothing else.\","
                      " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 1.0}, {\"model\": \"gpt-4o\"}],"
                      " \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16, \"temperature\": 0,"
                      " \"checks\": {\"min_chars\": 1, \"max_chars\": 64, \"logprobs\": true}}";
    const char *warm = "{\"system_prompt\": \"Answer with a single word or a short phrase, nothing else.\","
                       " \"tiers\": [{\"model\": \"qwen3-8b\"}], \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16,"
                       " \"temperature\": 0.7, \"checks\": {\"min_chars\": 1, \"max_chars\": 64},"
                       " \"cache\": {\"nondeterministic\": true}}";
    char p[400];
    snprintf(p, sizeof p, "%s/plain.json", jobs);
    write_file(p, plain);
    snprintf(p, sizeof p, "%s/esc.json", jobs);
    write_file(p, esc);
    snprintf(p, sizeof p, "%s/warm.json", jobs);
    write_file(p, warm);
    snprintf(p, sizeof p, "%s/long.json", jobs);
    write_file(p, "{\"system_prompt\": \"Write it out.\", \"tiers\": [{\"model\": \"qwen3-8b\"}],"
                  " \"baseline_model\": \"gpt-4o\", \"max_tokens\": 4000, \"temperature\": 0, \"checks\": {\"min_chars\": 1}}");
    /* jobs2: the same kinds, but plain's file differs by one byte of its description */
    snprintf(p, sizeof p, "%s/esc.json", jobs2);
    write_file(p, esc);
    snprintf(p, sizeof p, "%s/warm.json", jobs2);
    write_file(p, warm);
    char changed[1024];
    snprintf(changed, sizeof changed, "{\"description\": \"changed\", %s", plain + 1);
    snprintf(p, sizeof p, "%s/plain.json", jobs2);
    write_file(p, changed);
    FILE *f = fopen(answers, "w");
    if (f) {
        fprintf(f, "kind\tprompt\texpected\n");
        for (int i = 0; i < 40; i++)
            fprintf(f, "plain\tquestion %d\tanswer %d\n", i, i);
        /* a long answer (about 3 KB of repetitive prose): what zstd is for */
        fprintf(f, "long\twrite the release notes\t");
        for (int i = 0; i < 60; i++)
            fprintf(f, "Item %d: the package now builds with the new toolchain. ", i);
        fprintf(f, "\n");
        fclose(f);
    }
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}

static void reset(PGconn *c)
{
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls; DELETE FROM tierq.cache; DELETE FROM tierq.workers",
                NULL, 0);
}

/* A repeated job is served from the cache: $0, the producing model and tier, the saved cost, no
 * request; the entry counts the hit and its expiry slides. */
static void test_repeated_job_is_a_hit_at_zero_cost(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'esc', 'question ' || g, 'first'"
                   " FROM generate_series(1, 10) g", NULL, 0);
    int st = run_drain(&s, "--run first");
    CHECKF(st == 0, "exit %d: %s", st, out);
    long long sent = sim_stat(&s, "requests");
    /* escalated: the stored answer is tier 2's (gpt-4o), its cost is both tiers' */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'esc' AND model = 'gpt-4o' AND tier = 2 AND cost_usd > 0"
                   " AND raw_len > 0 AND hits = 0"), 10);
    /* what producing the answers took: the jobs' own cost and tokens */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT sum(cost_usd) c, sum(baseline_cost_usd) b, sum(tokens_in) i, sum(tokens_out) o"
                   " FROM tierq.cache) ca, (SELECT sum(cost_usd) c, sum(baseline_cost_usd) b, sum(tokens_in) i, sum(tokens_out) o"
                   " FROM tierq.jobs WHERE run_name = 'first') j WHERE ca.c = j.c AND ca.b = j.b AND ca.i = j.i AND ca.o = j.o"), 1);
    testdb_exec(c, "UPDATE tierq.cache SET expires_at = now() + interval '1 minute'", NULL, 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'esc', 'question ' || g, 'again'"
                   " FROM generate_series(1, 10) g", NULL, 0);
    st = run_drain(&s, "--run again");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECKF(sim_stat(&s, "requests") == sent, "the rerun sent %lld requests", sim_stat(&s, "requests") - sent);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs a JOIN tierq.jobs b ON a.prompt = b.prompt AND b.run_name = 'first'"
                   " WHERE a.run_name = 'again' AND a.state = 'done' AND a.cache_hit AND a.reason = 'cache_hit'"
                   " AND a.cost_usd = 0 AND a.tokens_in = 0 AND a.model = 'gpt-4o' AND a.tier = 2 AND a.result = b.result"
                   " AND a.cache_saved_usd = b.cost_usd AND a.baseline_cost_usd = b.baseline_cost_usd"
                   " AND a.quality IS NOT DISTINCT FROM b.quality"), 10);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE job_ids && (SELECT array_agg(id) FROM tierq.jobs WHERE run_name = 'again')"), 0);
    /* the sliding TTL: each hit moved its entry's expiry a week out (esc's default ttl_s) */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE hits = 1 AND last_hit_at IS NOT NULL"
                   " AND expires_at > now() + interval '6 days'"), 10);
    CHECKF(strstr(out, "run: cache: 10 jobs answered from the cache") != NULL, "output: %s", out);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* Each part of the key changed alone is a miss: the kind's file, the job's system prompt, its params,
 * its context. */
static void test_any_change_in_the_key_misses(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('plain', 'question 1', 'base')", NULL, 0);
    CHECK_INT(run_drain(&s, "--run base"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, system_prompt, params, context) VALUES"
                   " ('plain', 'question 1', 'variants', 'Answer in one word.', '{}', NULL),"
                   " ('plain', 'question 1', 'variants', NULL, '{\"max_tokens\": 12}', NULL),"
                   " ('plain', 'question 1', 'variants', NULL, '{}', 'some context'),"
                   " ('plain', 'question 1', 'variants', NULL, '{}', NULL)",
                NULL, 0);
    CHECK_INT(run_drain(&s, "--run variants"), 0);
    /* only the unchanged one is a hit; the three variants were answered and stored under keys of their own */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'variants' AND cache_hit"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'variants' AND cache_hit AND context IS NULL"
                   " AND system_prompt IS NULL AND params = '{}'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'variants' AND NOT cache_hit AND state = 'done'"
                   " AND cost_usd > 0"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 4);
    /* the kind's file changed by its description alone: a miss */
    setenv("TIERQ_JOBS_DIR", jobs2, 1);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('plain', 'question 1', 'newfile')", NULL, 0);
    int st = run_drain(&s, "--run newfile");
    setenv("TIERQ_JOBS_DIR", jobs, 1);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'newfile' AND NOT cache_hit AND cost_usd > 0"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 5);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* An expired entry is never served: the job is answered again and its new answer replaces the entry;
 * upkeep deletes the expired entries nobody asked for. */
static void test_expired_entry_misses_and_is_purged(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'plain', 'question ' || g, 'one'"
                   " FROM generate_series(1, 3) g", NULL, 0);
    CHECK_INT(run_drain(&s, "--run one"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 3);
    /* unused for longer than the kind's ttl_s (a week) */
    testdb_exec(c, "UPDATE tierq.cache SET expires_at = now() - interval '1 second', last_used_at = now() - interval '8 days',"
                   " hits = 7", NULL, 0);
    /* only question 1 is asked again: 2 and 3 are left to upkeep */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('plain', 'question 1', 'two')", NULL, 0);
    CHECK_INT(run_drain(&s, "--run two"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'two' AND NOT cache_hit AND state = 'done' AND cost_usd > 0"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE hits = 0 AND expires_at > now()"), 1);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* Failed jobs and answers under the bar are never stored: a permanent provider error, a job whose
 * budget stopped escalation (the best earlier answer kept), a temperature above 0 in a kind that did
 * not opt in. A kind with cache.nondeterministic stores them. */
static void test_failed_and_escalated_away_answers_are_not_cached(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    CHECK_INT(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, max_budget_usd, params) VALUES"
                   " ('plain', 'fault [[sim:400]]', 'nc', NULL, '{}'),"
                   " ('esc', 'question 5', 'nc', 0.000001, '{}'),"
                   " ('plain', 'question 6', 'nc', NULL, '{\"temperature\": 0.5}'),"
                   " ('warm', 'question 7', 'nc', NULL, '{}')",
                NULL, 0), 0);
    run_drain(&s, "--run nc");
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'nc' AND prompt LIKE 'fault%' AND state = 'failed'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'nc' AND prompt = 'question 5' AND state = 'done'"
                   " AND reason = 'budget' AND tier = 1"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'nc' AND prompt IN ('question 6', 'question 7') AND state = 'done'"), 2);
    /* only the opted-in warm kind's answer is stored */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'warm'"), 1);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* Ten identical jobs in one claim: one request, the first job pays, nine are hits at $0 that record
 * its cost as saved; the sum over jobs equals the sum over calls. */
static void test_single_flight_makes_one_call(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 50"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'plain', 'question 9', 'sf'"
                   " FROM generate_series(1, 10) g", NULL, 0);
    int st = run_drain(&s, "--run sf");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(sim_stat(&s, "requests"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'sf' AND state = 'done' AND NOT cache_hit AND cost_usd > 0"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'sf' AND state = 'done' AND cache_hit AND cost_usd = 0"
                   " AND cache_saved_usd = (SELECT cost_usd FROM tierq.calls)"
                   " AND result = (SELECT result FROM tierq.jobs WHERE run_name = 'sf' AND NOT cache_hit)"), 9);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    CHECKF(strstr(out, "(9 by an identical job in flight)") != NULL, "output: %s", out);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* params.cache = false skips lookup and store; --no-cache does the same for a whole run (and no
 * single flight: each job its own call); --cache-only-read serves hits and stores nothing. */
static void test_bypasses(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('plain', 'question 1', 'seed')", NULL, 0);
    CHECK_INT(run_drain(&s, "--run seed"), 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name, params) VALUES"
                   " ('plain', 'question 1', 'optout', '{\"cache\": false}'),"
                   " ('plain', 'question 2', 'optout', '{\"cache\": false}')",
                NULL, 0);
    CHECK_INT(run_drain(&s, "--run optout"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'optout' AND NOT cache_hit AND cost_usd > 0"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    long long before = sim_stat(&s, "requests");
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES"
                   " ('plain', 'question 1', 'nocache'), ('plain', 'question 3', 'nocache'), ('plain', 'question 3', 'nocache')",
                NULL, 0);
    CHECK_INT(run_drain(&s, "--run nocache --no-cache"), 0);
    CHECK_INT(sim_stat(&s, "requests") - before, 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'nocache' AND NOT cache_hit AND cost_usd > 0"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    CHECK_INT(q(c, "SELECT hits FROM tierq.cache"), 0);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('plain', 'question 1', 'ro'), ('plain', 'question 4', 'ro')",
                NULL, 0);
    CHECK_INT(run_drain(&s, "--run ro --cache-only-read"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'ro' AND cache_hit AND prompt = 'question 1'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'ro' AND NOT cache_hit AND prompt = 'question 4' AND cost_usd > 0"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 1);
    /* the two together make no sense: refused */
    CHECK_INT(run_drain(&s, "--run ro --cache-only-read --no-cache"), 2);
    /* a params.cache that is not a boolean is refused at INSERT */
    char err[512] = "";
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params) VALUES ('plain', 'x', '{\"cache\": \"no\"}')", err,
                      sizeof err) != 0);
    CHECKF(strstr(err, "params.cache of kind plain must be true or false") != NULL, "error: %s", err);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* An entry that cannot be a real answer of this kind is a miss with a warning, never served, never a
 * crash, and is replaced by the new answer: corrupt zstd bytes, a lying length, an empty answer,
 * bytes that are not UTF-8 (stored as a valid frame), a quality outside 0..1, a model or tier that
 * is not the kind's, implausible costs. */
static void test_corrupt_entry_is_a_miss_with_a_warning(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'plain', 'question ' || g, 'a'"
                   " FROM generate_series(1, 8) g", NULL, 0);
    CHECK_INT(run_drain(&s, "--run a"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache"), 8);
    static const char *const tamper[] = {
        "answer_z = '\\x28b52ffd2005290000deadbeefdeadbeef'::bytea",
        "raw_len = raw_len + 1",
        "answer_z = ''::bytea, raw_len = 0",
        /* a valid frame of 200 bytes 0xff */
        "answer_z = '\\x28b52ffd04584d000010ffff0100430a600172add48a'::bytea, raw_len = 200",
        "quality = 5",
        "model = 'gpt-4o'",
        "tier = 3",
        "baseline_cost_usd = 99999999",
    };
    for (int i = 0; i < 8; i++) {
        char sql[512];
        snprintf(sql, sizeof sql, "UPDATE tierq.cache SET %s WHERE key = (SELECT key FROM tierq.cache ORDER BY key OFFSET %d LIMIT 1)",
                 tamper[i], i);
        char err[512] = "";
        CHECKF(testdb_exec(c, sql, err, sizeof err) == 0, "%s: %s", sql, err);
    }
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'plain', 'question ' || g, 'b'"
                   " FROM generate_series(1, 8) g", NULL, 0);
    int st = run_drain(&s, "--run b");
    CHECKF(st == 0, "exit %d: %s", st, out);
    int warned = 0;
    for (const char *p = out; (p = strstr(p, "cannot be served")) != NULL; p++)
        warned++;
    CHECKF(warned == 8, "%d warnings: %s", warned, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs a JOIN tierq.jobs b ON a.prompt = b.prompt AND b.run_name = 'a'"
                   " WHERE a.run_name = 'b' AND a.state = 'done' AND NOT a.cache_hit AND a.cost_usd > 0 AND a.result = b.result"
                   " AND a.baseline_cost_usd < 1"), 8);
    /* replaced: every entry serves again */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'plain', 'question ' || g, 'c'"
                   " FROM generate_series(1, 8) g", NULL, 0);
    CHECK_INT(run_drain(&s, "--run c"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'c' AND cache_hit AND model = 'qwen3-8b' AND tier = 1"), 8);
    check_sums(c);
    PQfinish(c);
    sim_stop(&s);
}

/* Upkeep bounds the cache: a kind over its cache.max_entries loses its least recently used entries,
 * and the whole cache over models.json cache.max_mb loses the least recently used of any kind until
 * the compressed answers fit. A run does upkeep when it starts. */
static void test_upkeep_evicts_over_the_bounds(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    char p[400], cmd[1400];
    /* jobs3: plain keeps at most 3 entries; the cache as a whole at most 1 MB */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/jobs3' && cp '%s'/*.json '%s/jobs3/' && sed -i 's/\"max_mb\": [0-9]*/\"max_mb\": 1/'"
             " '%s/jobs3/models.json'", dir, jobs, dir, dir);
    CHECK_INT(system(cmd), 0);
    snprintf(p, sizeof p, "%s/jobs3/plain.json", dir);
    write_file(p, "{\"system_prompt\": \"Answer with a single word or a short phrase, nothing else.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\"}], \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16,"
                  " \"temperature\": 0, \"checks\": {\"min_chars\": 1, \"max_chars\": 64}, \"cache\": {\"max_entries\": 3}}");
    snprintf(p, sizeof p, "%s/jobs3", dir);
    setenv("TIERQ_JOBS_DIR", p, 1);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'plain', 'question ' || g, 'fill'"
                   " FROM generate_series(1, 6) g", NULL, 0);
    CHECK_INT(run_drain(&s, "--run fill"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'plain'"), 6);
    /* the three used last stay (whatever their expiry: the oldest used expire last here) */
    testdb_exec(c, "UPDATE tierq.cache c SET last_used_at = now() - make_interval(hours => 7 - j.g::int),"
                   " expires_at = now() + make_interval(days => 10 - j.g::int)"
                   " FROM (SELECT key, row_number() OVER (ORDER BY key) AS g FROM tierq.cache) j WHERE j.key = c.key", NULL, 0);
    /* 5 entries of another kind of 300 KB each (incompressible stand-ins), the oldest first */
    testdb_exec(c, "INSERT INTO tierq.cache (key, kind, answer_z, raw_len, model, tier, last_used_at, expires_at)"
                   " SELECT encode(sha256(g::text::bytea), 'hex'), 'esc',"
                   "  (SELECT string_agg(sha256((g * 100000 + i)::text::bytea), ''::bytea) FROM generate_series(1, 9600) i),"
                   "  307200, 'gpt-4o', 2, now() - make_interval(days => 6 - g), now() + make_interval(days => 30)"
                   " FROM generate_series(1, 5) g", NULL, 0);
    CHECK_INT(q(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache WHERE kind = 'esc'"), 5 * 307200);
    CHECK_INT(run_drain(&s, "--run nothing"), 0);
    setenv("TIERQ_JOBS_DIR", jobs, 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'plain'"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'plain' AND last_used_at > now() - interval '210 minutes'"), 3);
    /* 1 MB holds 3 of the big ones: the two with the earliest expiry went */
    CHECK(q(c, "SELECT sum(octet_length(answer_z)) FROM tierq.cache") <= 1 << 20);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'esc'"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'esc' AND last_used_at < now() - interval '84 hours'"), 0);
    PQfinish(c);
    sim_stop(&s);
}

/* A long answer is stored as a zstd frame, smaller than the answer, and served back byte for byte;
 * short ones are stored as they are (a frame would be larger). */
static void test_long_answer_is_stored_compressed(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('long', 'write the release notes', 'l1'),"
                   " ('plain', 'question 3', 'l1')", NULL, 0);
    CHECK_INT(run_drain(&s, "--run l1"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'long' AND raw_len > 2000"
                   " AND substr(answer_z, 1, 4) = '\\x28b52ffd'::bytea AND octet_length(answer_z) * 4 < raw_len"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.cache WHERE kind = 'plain' AND octet_length(answer_z) = raw_len"
                   " AND convert_from(answer_z, 'UTF8') = (SELECT result FROM tierq.jobs WHERE kind = 'plain')"), 1);
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('long', 'write the release notes', 'l2'),"
                   " ('plain', 'question 3', 'l2')", NULL, 0);
    CHECK_INT(run_drain(&s, "--run l2"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs a JOIN tierq.jobs b ON a.kind = b.kind AND b.run_name = 'l1'"
                   " WHERE a.run_name = 'l2' AND a.cache_hit AND a.result = b.result"), 2);
    PQfinish(c);
    sim_stop(&s);
}

/* The README's nightly example, run as written twice: the second night every unchanged row is a hit,
 * the job that opted out is not; the README's reading query shows it. */
static void test_readme_nightly_example(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    reset(c);
    testdb_exec(c, "DROP TABLE IF EXISTS package_descriptions;"
                   " CREATE TABLE package_descriptions (description text);"
                   " INSERT INTO package_descriptions SELECT 'Package: p' || g || '. A tool that does thing ' || g"
                   " FROM generate_series(1, 5) g", NULL, 0);
    char *sql = readme_sql_after("## Response cache");
    CHECKF(strstr(sql, "package_descriptions") && strstr(sql, "\"cache\": false"), "README example changed: %s", sql);
    char err[1024] = "";
    for (int night = 1; night <= 2; night++) {
        CHECKF(testdb_exec(c, sql, err, sizeof err) == 0, "the README's INSERTs failed: %s", err);
        int st = run_drain(&s, "");
        CHECKF(st == 0, "night %d: exit %d: %s", night, st, out);
    }
    free(sql);
    sql = readme_sql_after("How much the cache answered");
    PGresult *r = PQexec(c, sql);
    CHECKF(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 2, "%s: %s", sql, PQresultErrorMessage(r));
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 2) {
        CHECK_STR(PQgetvalue(r, 0, 0), "chat");
        CHECK_STR(PQgetvalue(r, 0, 1), "0");
        CHECK_STR(PQgetvalue(r, 0, 2), "2");
        CHECK_STR(PQgetvalue(r, 1, 0), "summarize");
        CHECK_STR(PQgetvalue(r, 1, 1), "5");
        CHECK_STR(PQgetvalue(r, 1, 2), "10");
        CHECK(atof(PQgetvalue(r, 1, 4)) > 0);
    }
    PQclear(r);
    free(sql);
    check_sums(c);
    testdb_exec(c, "DROP TABLE package_descriptions", NULL, 0);
    PQfinish(c);
    sim_stop(&s);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_cache", 1);
    RUN(test_repeated_job_is_a_hit_at_zero_cost);
    RUN(test_any_change_in_the_key_misses);
    RUN(test_expired_entry_misses_and_is_purged);
    RUN(test_failed_and_escalated_away_answers_are_not_cached);
    RUN(test_single_flight_makes_one_call);
    RUN(test_bypasses);
    RUN(test_corrupt_entry_is_a_miss_with_a_warning);
    RUN(test_upkeep_evicts_over_the_bounds);
    RUN(test_long_answer_is_stored_compressed);
    RUN(test_readme_nightly_example);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
