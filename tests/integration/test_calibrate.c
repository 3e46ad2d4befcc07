/* `tierq calibrate` against a real PostgreSQL: an all-tiers run is written straight into tierq.jobs
 * and tierq.calls with scores, right and wrong answers and costs chosen so that the best accept
 * bars are known by construction; calibrate must find them and predict the accuracy and dollars a
 * user would get, as a function and through the CLI. The kinds live in a private jobs/ directory so
 * that edits to the shipped catalog never move these figures.
 *
 * The run "cal", kind triage (tiers cheap -> mid -> premium; configured bars 0.80 and 0.90).
 * Per job, answer cost: cheap $0.000001, mid $0.00001, premium $0.0001; a judge call of
 * $0.0000001 on every tier (an all-tiers run judges the last tier too; a cascade never pays that).
 *   jobs 1-10   cheap right, scores 0.70 .. 1.00      (the lowest right score is exactly 0.70)
 *   jobs 11-16  cheap wrong (0.65 .. 0.20), mid right (0.85 .. 1.00)
 *   jobs 17-19  cheap wrong, mid wrong (0.80, 0.50, unscored), premium right
 *   job 20      wrong everywhere (scores 0.10, 0.00) so the last tier's accuracy is 19/20
 *   job 21      no expected answer; job 22 premium never answered (a failed call): both skipped
 * Target 0.98 x 95% = 93.1%: 19 right needed. The only cheapest way: cheap >= 0.70 (0.65 takes a
 * wrong answer, 0.75 pays mid for two right ones), mid >= 0.85 (0.80 takes job 17's wrong answer).
 * Predicted cost: 10 x 1.1 + 6 x 11.2 + 4 x 111.2 = 523 micro-USD over 20 jobs = $0.00002615/job,
 * 26.15% of premium alone ($0.0001/job); answered at tiers 50% / 30% / 20%.
 * The configured bars (0.80, 0.90): 7 / 8 / 5 jobs, 19 right, 653.3 micro-USD = $0.000032665/job. */
#include "testdb.h"

#include "calibrate.h"
#include "config.h"
#include "err.h"
#include "json.h"

#include <math.h>
#include <sys/stat.h>

static char jobs_dir[512];
static TqConfig *cfg;

static const char *const MODELS_JSON =
    "{\"providers\": {\"sim\": {\"base_url\": \"http://127.0.0.1:9\"}},\n"
    " \"models\": {\n"
    "  \"cheap\": {\"provider\": \"sim\", \"input_usd_per_mtok\": 0.01, \"cached_input_usd_per_mtok\": 0.01,"
    " \"output_usd_per_mtok\": 0.01},\n"
    "  \"mid\": {\"provider\": \"sim\", \"input_usd_per_mtok\": 0.1, \"cached_input_usd_per_mtok\": 0.1,"
    " \"output_usd_per_mtok\": 0.1},\n"
    "  \"premium\": {\"provider\": \"sim\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1,"
    " \"output_usd_per_mtok\": 1}}}\n";

static const char *const TRIAGE_JSON =
    "{\"tiers\": [{\"model\": \"cheap\", \"accept\": 0.8}, {\"model\": \"mid\", \"accept\": 0.9},"
    " {\"model\": \"premium\"}]}\n";
static const char *const DUO_JSON = "{\"tiers\": [{\"model\": \"cheap\", \"accept\": 0.5}, {\"model\": \"premium\"}]}\n";
static const char *const SOLO_JSON = "{\"tiers\": [{\"model\": \"premium\"}]}\n";
static const char *const DROPME_JSON =
    "{\"description\": \"kept as written\",\n"
    " \"tiers\": [{\"model\": \"cheap\", \"accept\": 0.5}, {\"model\": \"mid\", \"accept\": 0.5}, {\"model\": \"premium\"}],\n"
    " \"max_tokens\": 16}\n";
static const char *const DEAR_JSON = "{\"tiers\": [{\"model\": \"cheap\", \"accept\": 0.5}, {\"model\": \"premium\"}]}\n";
static const char *const AGREE_JSON = "{\"tiers\": [{\"model\": \"cheap\", \"accept\": 0.5}, {\"model\": \"mid\", \"accept\": 0.5},"
                                      " {\"model\": \"premium\"}]}\n";
static const char *const BIG_JSON = "{\"tiers\": [{\"model\": \"cheap\", \"accept\": 0.9}, {\"model\": \"premium\"}]}\n";

static const char *const SEED[] = {
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state)"
    " SELECT 1000 + n, 'triage', 'p' || n, 'cal', CASE WHEN n = 21 THEN NULL ELSE 'Label ' || n END, 'done'"
    " FROM generate_series(1, 22) n",
    "CREATE TEMP TABLE d (n int, s1 real, r1 bool, s2 real, r2 bool, s3 real, r3 bool)",
    "INSERT INTO d VALUES"
    " (1, 0.70, true, 0.90, true, 0.5, true), (2, 0.70, true, 0.90, true, 0.5, true),"
    " (3, 0.75, true, 0.90, true, 0.5, true), (4, 0.80, true, 0.90, true, 0.5, true),"
    " (5, 0.85, true, 0.90, true, 0.5, true), (6, 0.90, true, 0.90, true, 0.5, true),"
    " (7, 0.90, true, 0.90, true, 0.5, true), (8, 0.95, true, 0.90, true, 0.5, true),"
    " (9, 1.00, true, 0.90, true, 0.5, true), (10, 1.00, true, 0.90, true, 0.5, true),"
    " (11, 0.65, false, 0.85, true, 0.5, true), (12, 0.60, false, 0.90, true, 0.5, true),"
    " (13, 0.50, false, 0.90, true, 0.5, true), (14, 0.40, false, 0.95, true, 0.5, true),"
    " (15, 0.30, false, 0.95, true, 0.5, true), (16, 0.20, false, 1.00, true, 0.5, true),"
    " (17, 0.20, false, 0.80, false, 0.5, true), (18, 0.20, false, 0.50, false, 0.5, true),"
    " (19, 0.20, false, NULL, false, 0.5, true), (20, 0.10, false, 0.00, false, 0.5, false),"
    " (21, 1.00, true, 1.00, true, 1.0, true), (22, 0.90, true, 0.90, true, 0.5, true)",
    /* right answers differ from expected in case and punctuation only: normalize_answer decides */
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer)"
    " SELECT 'cal-a-' || n || '-' || t.tier, 'cal', ARRAY[1000 + n]::bigint[], 'triage', t.model, t.tier, 'answer',"
    "   'ok', 'all_tiers', t.cost, CASE t.tier WHEN 1 THEN s1 WHEN 2 THEN s2 ELSE s3 END,"
    "   CASE WHEN CASE t.tier WHEN 1 THEN r1 WHEN 2 THEN r2 ELSE r3 END THEN '\"label ' || n || '.\"' ELSE 'wrong' END"
    " FROM d CROSS JOIN (VALUES (1, 'cheap', 0.000001), (2, 'mid', 0.00001), (3, 'premium', 0.0001)) t(tier, model, cost)"
    " WHERE NOT (n = 22 AND t.tier = 3)",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd, score)"
    " SELECT 'cal-j-' || n || '-' || tier, 'cal', ARRAY[1000 + n]::bigint[], 'triage', 'cheap', tier, 'judge', 'ok',"
    "   'judged', 0.0000001, 0.5"
    " FROM d CROSS JOIN generate_series(1, 3) tier WHERE NOT (n = 22 AND tier = 3)",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd)"
    " VALUES ('cal-x-22', 'cal', '{1022}', 'triage', 'premium', 3, 'answer', 'failed', 'http_500', 0)",
    /* a normal (not all-tiers) run: only tier 1 answered, and answers are not kept in the ledger */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state, result, tier)"
    " SELECT 2000 + n, 'triage', 'p', 'plain', 'yes', 'done', 'yes', 1 FROM generate_series(1, 3) n",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd, score)"
    " SELECT 'plain-' || n, 'plain', ARRAY[2000 + n]::bigint[], 'triage', 'cheap', 1, 'answer', 'ok', 'accepted',"
    "   0.000001, 0.9 FROM generate_series(1, 3) n",
    /* an all-tiers run made when tier 2 was another model */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state) VALUES"
    " (3001, 'triage', 'p', 'swapped', 'yes', 'done')",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer) VALUES"
    " ('sw-1', 'swapped', '{3001}', 'triage', 'cheap', 1, 'answer', 'ok', 'all_tiers', 0.000001, 0.9, 'yes'),"
    " ('sw-2', 'swapped', '{3001}', 'triage', 'premium', 2, 'answer', 'ok', 'all_tiers', 0.0001, 0.9, 'yes'),"
    " ('sw-3', 'swapped', '{3001}', 'triage', 'premium', 3, 'answer', 'ok', 'all_tiers', 0.0001, 0.9, 'yes')",
    /* two tiers: cheap right at 0.90 and 0.60, wrong at 0.55 and 0.20; premium always right. The only
     * bar keeping all four right at the least cost is 0.60. A call serving two jobs is split. */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state)"
    " SELECT 4000 + n, 'duo', 'p', 'duo-run', 'ok', 'done' FROM generate_series(1, 4) n",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer) VALUES"
    " ('duo-1a', 'duo-run', '{4001}', 'duo', 'cheap', 1, 'answer', 'ok', 'all_tiers', 0.000001, 0.90, 'OK'),"
    " ('duo-2a', 'duo-run', '{4002}', 'duo', 'cheap', 1, 'answer', 'ok', 'all_tiers', 0.000001, 0.60, 'ok!'),"
    " ('duo-3a', 'duo-run', '{4003}', 'duo', 'cheap', 1, 'answer', 'ok', 'all_tiers', 0.000001, 0.55, 'no'),"
    " ('duo-4a', 'duo-run', '{4004}', 'duo', 'cheap', 1, 'answer', 'ok', 'all_tiers', 0.000001, 0.20, 'no'),"
    " ('duo-12b', 'duo-run', '{4001,4002}', 'duo', 'premium', 2, 'answer', 'ok', 'all_tiers', 0.0002, 0.9, 'ok'),"
    " ('duo-3b', 'duo-run', '{4003}', 'duo', 'premium', 2, 'answer', 'ok', 'all_tiers', 0.0001, 0.9, 'ok'),"
    " ('duo-4b', 'duo-run', '{4004}', 'duo', 'premium', 2, 'answer', 'ok', 'all_tiers', 0.0001, 0.9, 'ok')",
    /* dropme: cheap right (0.9) on jobs 1-10, wrong (0.1) on 11-20; mid always wrong, at 0.3, so any
     * bar that takes its answers takes wrong ones, and any other pays for nothing: it must go. */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state)"
    " SELECT 5000 + n, 'dropme', 'p', 'drop-run', 'yes', 'done' FROM generate_series(1, 20) n",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer)"
    " SELECT 'dr-' || n || '-' || t, 'drop-run', ARRAY[5000 + n]::bigint[], 'dropme',"
    "   (ARRAY['cheap', 'mid', 'premium'])[t], t, 'answer', 'ok', 'all_tiers', (ARRAY[0.000001, 0.00001, 0.0001])[t],"
    "   CASE t WHEN 1 THEN CASE WHEN n <= 10 THEN 0.9 ELSE 0.1 END WHEN 2 THEN 0.3 ELSE 0.9 END,"
    "   CASE WHEN t = 3 OR (t = 1 AND n <= 10) THEN 'yes' ELSE 'no' END"
    " FROM generate_series(1, 20) n CROSS JOIN generate_series(1, 3) t",
    /* dear: the first tier is always right but costs twice the premium; premium alone is wrong on
     * jobs 1 and 2. An absolute target of 100% only the dear cascade reaches. */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state)"
    " SELECT 6000 + n, 'dear', 'p', 'dear-run', 'yes', 'done' FROM generate_series(1, 20) n",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer)"
    " SELECT 'de-' || n || '-' || t, 'dear-run', ARRAY[6000 + n]::bigint[], 'dear', (ARRAY['cheap', 'premium'])[t], t,"
    "   'answer', 'ok', 'all_tiers', (ARRAY[0.0002, 0.0001])[t], 0.9,"
    "   CASE WHEN t = 2 AND n <= 2 THEN 'no' ELSE 'yes' END"
    " FROM generate_series(1, 20) n CROSS JOIN generate_series(1, 2) t",
    /* big: 200 jobs, enough to hold some out; cheap is right exactly when its score is 0.55 or more
     * (scores 0.05 .. 0.95 by tenths), so every fold finds the same bar and predicts the rest exactly */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state)"
    " SELECT 7000 + n, 'big', 'p', 'big-run', 'yes', 'done' FROM generate_series(1, 200) n",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer)"
    " SELECT 'bg-' || n || '-' || t, 'big-run', ARRAY[7000 + n]::bigint[], 'big', (ARRAY['cheap', 'premium'])[t], t,"
    "   'answer', 'ok', 'all_tiers', (ARRAY[0.000001, 0.0001])[t],"
    "   CASE t WHEN 1 THEN (n % 10) / 10.0 + 0.05 ELSE 0.9 END,"
    "   CASE WHEN t = 2 OR n % 10 >= 5 THEN 'yes' ELSE 'no' END"
    " FROM generate_series(1, 200) n CROSS JOIN generate_series(1, 2) t",
    /* agree: no tier's score says anything (cheap 0.5, mid 0.6), but when mid repeats cheap's answer
     * it is right: cheap is right on even jobs ("yes", else "no"), mid on all but n % 4 = 3 ("nope").
     * Bars alone reach 98% only by sending everything to premium; accepting mid when it agrees with
     * cheap sends half. */
    "INSERT INTO tierq.jobs (id, kind, prompt, run_name, expected, state)"
    " SELECT 8000 + n, 'agree', 'p', 'agree-run', 'yes', 'done' FROM generate_series(1, 200) n",
    "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, reason, cost_usd,"
    "                         score, answer)"
    " SELECT 'ag-' || n || '-' || t, 'agree-run', ARRAY[8000 + n]::bigint[], 'agree', (ARRAY['cheap', 'mid', 'premium'])[t],"
    "   t, 'answer', 'ok', 'all_tiers', (ARRAY[0.000001, 0.00001, 0.0001])[t], (ARRAY[0.5, 0.6, 0.9])[t],"
    "   CASE t WHEN 1 THEN CASE WHEN n % 2 = 0 THEN 'yes' ELSE 'no' END"
    "          WHEN 2 THEN CASE WHEN n % 4 = 3 THEN 'nope' ELSE 'yes' END ELSE 'Yes.' END"
    " FROM generate_series(1, 200) n CROSS JOIN generate_series(1, 3) t",
};

static void write_file(const char *name, const char *text)
{
    char path[768];
    snprintf(path, sizeof path, "%s/%s", jobs_dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        printf("# cannot write %s\n", path);
        exit(1);
    }
}

static void setup(void)
{
    const char *tmp = getenv("TIERQ_TEST_TMP");
    snprintf(jobs_dir, sizeof jobs_dir, "%s/tq_calibrate_jobs.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(jobs_dir)) {
        printf("# mkdtemp failed\n");
        exit(1);
    }
    chmod(jobs_dir, 0755);
    write_file("models.json", MODELS_JSON);
    write_file("triage.json", TRIAGE_JSON);
    write_file("duo.json", DUO_JSON);
    write_file("solo.json", SOLO_JSON);
    write_file("dropme.json", DROPME_JSON);
    write_file("dear.json", DEAR_JSON);
    write_file("big.json", BIG_JSON);
    write_file("agree.json", AGREE_JSON);
    setenv("TIERQ_JOBS_DIR", jobs_dir, 1); /* for `tierq migrate` (kinds sync) and the CLI runs */
    TqErr err = {0};
    if (config_load(jobs_dir, &cfg, &err)) {
        printf("# config: %s\n", err.msg);
        exit(1);
    }
    testdb_setup("tq_calibrate", 1);
    PGconn *c = testdb_connect();
    char msg[1024];
    for (size_t i = 0; i < sizeof SEED / sizeof SEED[0]; i++) {
        if (testdb_exec(c, SEED[i], msg, sizeof msg) != 0) {
            printf("# seeding statement %zu failed: %s\n", i, msg);
            exit(1);
        }
    }
    PQfinish(c);
}

static void teardown(void)
{
    config_free(cfg);
    const char *names[] = {"models.json", "triage.json", "duo.json", "solo.json", "dropme.json", "dear.json", "big.json", "agree.json"};
    char path[768];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", jobs_dir, names[i]);
        unlink(path);
    }
    rmdir(jobs_dir);
}

/* Run calibrate into memory; *text is malloc'd (possibly empty) and always set. */
static int calibrate_to_string(const char *kind, const char *run, double ratio, double step, bool json, char **text,
                               TqErr *err)
{
    PGconn *c = testdb_connect();
    size_t len = 0;
    *text = NULL;
    FILE *f = open_memstream(text, &len);
    if (!f) {
        printf("# open_memstream failed\n");
        exit(1);
    }
    CalibrateOptions o;
    calibrate_default_options(&o);
    o.kind = kind;
    o.run_name = run;
    if (ratio > 0)
        o.target_ratio = ratio;
    if (step > 0)
        o.step = step;
    o.json = json;
    int rc = calibrate_run(c, cfg, &o, f, err);
    fclose(f);
    PQfinish(c);
    return rc;
}

/* JSON helpers: values are compared as the exact text in the document. */
static char jv_bufs[16][256];
static int jv_next;

static const char *raw_of(const JsonDoc *d, int i)
{
    if (i < 0)
        return "<missing>";
    size_t n = 0;
    const char *raw = json_raw(d, i, &n);
    char *out = jv_bufs[jv_next++ % 16];
    snprintf(out, sizeof jv_bufs[0], "%.*s", (int)n, raw);
    return out;
}

static const char *jv(const JsonDoc *d, int obj, const char *key)
{
    return raw_of(d, obj >= 0 ? json_get(d, obj, key) : -1);
}

static int jobj(const JsonDoc *d, int obj, const char *key)
{
    int i = obj >= 0 ? json_get(d, obj, key) : -1;
    return i >= 0 && (json_type(d, i) == JSON_OBJECT || json_type(d, i) == JSON_ARRAY) ? i : -1;
}

/* The elements of array arr as raw text joined by ",": "0.70,0.85". */
static const char *jlist(const JsonDoc *d, int arr)
{
    char *out = jv_bufs[jv_next++ % 16];
    out[0] = '\0';
    if (arr < 0 || json_type(d, arr) != JSON_ARRAY)
        return "<missing>";
    for (int k = 0; k < json_size(d, arr); k++) {
        size_t n = 0, len = strlen(out);
        const char *raw = json_raw(d, json_at(d, arr, k), &n);
        snprintf(out + len, sizeof jv_bufs[0] - len, "%s%.*s", k ? "," : "", (int)n, raw);
    }
    return out;
}

static int parse(const char *text, JsonDoc *d)
{
    TqErr err = {0};
    int rc = json_parse(d, text, strlen(text), 0, &err);
    CHECKF(rc == 0, "not JSON (%s): %s", err.msg, text);
    return rc;
}

static void test_recommends_known_bars(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECKF(calibrate_to_string("triage", "cal", 0, 0, true, &t, &err) == 0, "%s", err.msg);
    JsonDoc d;
    if (t && parse(t, &d) == 0) {
        CHECK_STR(jv(&d, 0, "kind"), "triage");
        CHECK_STR(jv(&d, 0, "run"), "cal");
        CHECK_STR(jv(&d, 0, "target_ratio"), "0.98");
        CHECK_STR(jv(&d, 0, "step"), "0.05");
        CHECK_STR(jv(&d, 0, "combinations"), "484");
        int jobs = jobj(&d, 0, "jobs");
        CHECK_STR(jv(&d, jobs, "in_run"), "22");
        CHECK_STR(jv(&d, jobs, "with_expected"), "21");
        CHECK_STR(jv(&d, jobs, "used"), "20");
        CHECK_STR(jv(&d, jobs, "skipped"), "2");
        CHECK_STR(jv(&d, jobs, "skipped_no_expected"), "1");
        CHECK_STR(jv(&d, jobs, "skipped_missing_tier"), "1");
        CHECK_STR(jv(&d, 0, "target_accuracy"), "0.931000");

        int last = jobj(&d, 0, "last_tier");
        CHECK_STR(jv(&d, last, "tier"), "3");
        CHECK_STR(jv(&d, last, "model"), "premium");
        CHECK_STR(jv(&d, last, "accuracy"), "0.950000");
        CHECK_STR(jv(&d, last, "cost_per_job_usd"), "0.000100000"); /* its judge call is not counted */

        int tiers = jobj(&d, 0, "tiers");
        CHECK_INT(json_size(&d, tiers), 3);
        int t1 = json_at(&d, tiers, 0), t2 = json_at(&d, tiers, 1);
        CHECK_STR(jv(&d, t1, "model"), "cheap");
        CHECK_STR(jv(&d, t1, "accuracy"), "0.500000");
        CHECK_STR(jv(&d, t1, "correct"), "10");
        CHECK_STR(jv(&d, t1, "answer_cost_per_job_usd"), "0.000001000");
        CHECK_STR(jv(&d, t1, "judge_cost_per_job_usd"), "0.000000100");
        CHECK_STR(jv(&d, t2, "model"), "mid");
        CHECK_STR(jv(&d, t2, "accuracy"), "0.800000");

        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "0.70,0.85");
        CHECK_STR(jv(&d, rec, "accuracy"), "0.950000");
        CHECK_STR(jv(&d, rec, "correct"), "19");
        CHECK_STR(jv(&d, rec, "cost_per_job_usd"), "0.000026150");
        CHECK_STR(jv(&d, rec, "cost_pct_of_last_tier"), "26.15");
        CHECK_STR(jlist(&d, jobj(&d, rec, "share_by_tier_pct")), "50.00,30.00,20.00");
        CHECK_STR(jv(&d, rec, "meets_target"), "true");
        int snippet = jobj(&d, rec, "tiers");
        CHECK_INT(json_size(&d, snippet), 3);
        CHECK_STR(jv(&d, json_at(&d, snippet, 0), "model"), "cheap");
        CHECK_STR(jv(&d, json_at(&d, snippet, 0), "accept"), "0.70");
        CHECK_STR(jv(&d, json_at(&d, snippet, 1), "model"), "mid");
        CHECK_STR(jv(&d, json_at(&d, snippet, 1), "accept"), "0.85");
        CHECK_STR(jv(&d, json_at(&d, snippet, 2), "model"), "premium");
        CHECK_INT(json_get(&d, json_at(&d, snippet, 2), "accept"), -1); /* the last tier is final */

        int cur = jobj(&d, 0, "current");
        CHECK_STR(jlist(&d, jobj(&d, cur, "accept")), "0.80,0.90");
        CHECK_STR(jv(&d, cur, "correct"), "19");
        CHECK_STR(jv(&d, cur, "cost_per_job_usd"), "0.000032665");
        CHECK_STR(jv(&d, cur, "cost_pct_of_last_tier"), "32.67");
        CHECK_STR(jlist(&d, jobj(&d, cur, "share_by_tier_pct")), "35.00,40.00,25.00");
        CHECK_INT(json_get(&d, cur, "meets_target"), -1);
        json_doc_free(&d);
    }
    free(t);
}

static void test_alternatives(void)
{
    char *t = NULL;
    TqErr err = {0};
    JsonDoc d;
    /* target 0.94 x 95% = 89.3%: 18 right do; mid may then take job 17's wrong answer at 0.80 (the
     * highest of the equally good bars 0.55 .. 0.80 is chosen). +1 point needs 19 again. */
    CHECKF(calibrate_to_string("triage", "cal", 0.94, 0, true, &t, &err) == 0, "%s", err.msg);
    if (t && parse(t, &d) == 0) {
        int rec = jobj(&d, 0, "recommended"), alt = jobj(&d, 0, "alternatives");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "0.70,0.80");
        CHECK_STR(jv(&d, rec, "correct"), "18");
        CHECK_STR(jv(&d, rec, "cost_per_job_usd"), "0.000021150");
        CHECK_STR(jlist(&d, jobj(&d, rec, "share_by_tier_pct")), "50.00,35.00,15.00");
        int plus = jobj(&d, alt, "target_plus_1pt");
        CHECK_STR(jlist(&d, jobj(&d, plus, "accept")), "0.70,0.85");
        CHECK_STR(jv(&d, plus, "correct"), "19");
        CHECK_STR(jlist(&d, jobj(&d, jobj(&d, alt, "target_minus_1pt"), "accept")), "0.70,0.80");
        /* what the configured bars' money buys: 19 right, at the cheapest such bars */
        int same = jobj(&d, alt, "most_accurate_at_current_cost");
        CHECK_STR(jlist(&d, jobj(&d, same, "accept")), "0.70,0.85");
        CHECK_STR(jv(&d, same, "correct"), "19");
        json_doc_free(&d);
    }
    free(t);
    /* target 0.90 -> -1 point = 84.5%: 17 right do. Mid may take jobs 17 and 18 wrong and job 20
     * (wrong everywhere, mid score 0.00, so only a bar of 0.00 takes it); job 19's unscored mid answer
     * never passes, not even a bar of 0.00, so premium still answers it right. */
    CHECKF(calibrate_to_string("triage", "cal", 0.90, 0, true, &t, &err) == 0, "%s", err.msg);
    if (t && parse(t, &d) == 0) {
        int minus = jobj(&d, jobj(&d, 0, "alternatives"), "target_minus_1pt");
        CHECK_STR(jlist(&d, jobj(&d, minus, "accept")), "0.70,0.00");
        CHECK_STR(jv(&d, minus, "correct"), "17");
        CHECK_STR(jv(&d, minus, "cost_per_job_usd"), "0.000011150");
        CHECK_STR(jlist(&d, jobj(&d, minus, "share_by_tier_pct")), "50.00,45.00,5.00");
        json_doc_free(&d);
    }
    free(t);
    /* an unreachable target: the most accurate set, flagged */
    CHECKF(calibrate_to_string("triage", "cal", 2.0, 0, true, &t, &err) == 0, "%s", err.msg);
    if (t && parse(t, &d) == 0) {
        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jv(&d, rec, "meets_target"), "false");
        CHECK_STR(jv(&d, rec, "correct"), "19");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "0.70,0.85");
        CHECK_STR(jv(&d, jobj(&d, 0, "alternatives"), "target_plus_1pt"), "null");
        json_doc_free(&d);
    }
    free(t);
}

static void test_two_tiers_and_shared_calls(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECKF(calibrate_to_string("duo", "duo-run", 0, 0, true, &t, &err) == 0, "%s", err.msg);
    JsonDoc d;
    if (t && parse(t, &d) == 0) {
        CHECK_STR(jv(&d, 0, "combinations"), "22");
        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "0.60");
        CHECK_STR(jv(&d, rec, "correct"), "4");
        /* 2 x 0.000001 + 2 x (0.000001 + 0.0001) over 4 jobs; the $0.0002 call served two jobs */
        CHECK_STR(jv(&d, rec, "cost_per_job_usd"), "0.000051000");
        CHECK_STR(jv(&d, jobj(&d, 0, "last_tier"), "cost_per_job_usd"), "0.000100000");
        json_doc_free(&d);
    }
    free(t);
    /* a finer grid finds the same bar */
    CHECKF(calibrate_to_string("duo", "duo-run", 0, 0.01, true, &t, &err) == 0, "%s", err.msg);
    if (t && parse(t, &d) == 0) {
        CHECK_STR(jv(&d, 0, "combinations"), "102");
        CHECK_STR(jlist(&d, jobj(&d, jobj(&d, 0, "recommended"), "accept")), "0.60");
        json_doc_free(&d);
    }
    free(t);
}


static void test_text_report(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECKF(calibrate_to_string("triage", "cal", 0, 0, false, &t, &err) == 0, "%s", err.msg);
    char line[512];
    CHECK_STR(line_of(t, "tierq calibrate", line, sizeof line), "tierq calibrate: kind triage, run cal");
    CHECK_STR(line_of(t, "jobs:", line, sizeof line),
              "jobs: 20 used; 2 skipped (1 without expected, 1 without an answer from every tier); 22 in the run");
    CHECK_STR(line_of(t, "last tier alone", line, sizeof line),
              "last tier alone: premium, accuracy 95.0%, 0.000100000 usd/job");
    CHECKF(strstr(line_of(t, "recommended ", line, sizeof line), "0.70 0.85") &&
               strstr(line, "95.0% (19/20)") && strstr(line, "0.000026150") && strstr(line, "26.2%") &&
               strstr(line, "50.0% / 30.0% / 20.0%"),
           "recommended line: %s", line);
    CHECKF(strstr(line_of(t, "configured (jobs/)", line, sizeof line), "0.80 0.90") &&
               strstr(line, "0.000032665") && strstr(line, "35.0% / 40.0% / 25.0%"),
           "configured line: %s", line);
    char want[1024];
    snprintf(want, sizeof want,
             "paste into %s/triage.json:\n"
             "  \"tiers\": [\n"
             "    {\"model\": \"cheap\", \"accept\": 0.70},\n"
             "    {\"model\": \"mid\", \"accept\": 0.85},\n"
             "    {\"model\": \"premium\"}\n"
             "  ]\n",
             jobs_dir);
    CHECKF(strstr(t, want) != NULL, "snippet missing; output:\n%s", t);
    free(t);
}

static void test_runs_without_all_tier_data(void)
{
    const char *want = "has no jobs of kind triage with expected answers from every tier; make one with tierq run "
                       "--all-tiers";
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(calibrate_to_string("triage", "plain", 0, 0, false, &t, &err), TQ_ENOTFOUND);
    CHECKF(strstr(err.msg, "run plain ") && strstr(err.msg, want), "error: %s", err.msg);
    CHECKF(strstr(err.msg, "3 jobs of that kind, 3 with expected"), "error: %s", err.msg);
    CHECK_INT((long long)strlen(t), 0);
    free(t);
    CHECK_INT(calibrate_to_string("triage", "no-such-run", 0, 0, true, &t, &err), TQ_ENOTFOUND);
    CHECKF(strstr(err.msg, want), "error: %s", err.msg);
    CHECK_INT((long long)strlen(t), 0);
    free(t);
    /* the right run, the wrong kind */
    CHECK_INT(calibrate_to_string("duo", "cal", 0, 0, true, &t, &err), TQ_ENOTFOUND);
    free(t);
    /* answers from another model than the configured tier say nothing about it */
    CHECK_INT(calibrate_to_string("triage", "swapped", 0, 0, false, &t, &err), TQ_EINVAL);
    CHECKF(strstr(err.msg, "answered tier 2 of kind triage with premium") && strstr(err.msg, "names mid"),
           "error: %s", err.msg);
    CHECK_INT((long long)strlen(t), 0);
    free(t);
}

/* calibrate only reads: the ledger and the queue are as they were, and a caller's open transaction
 * is used and left open. */
static void test_reads_only(void)
{
    PGconn *c = testdb_connect();
    const char *count = "SELECT (SELECT count(*) FROM tierq.calls) * 1000 + (SELECT count(*) FROM tierq.jobs)";
    long long before = testdb_scalar(c, count);
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(calibrate_to_string("triage", "cal", 0, 0, false, &t, &err), 0);
    free(t);
    CHECK_INT(testdb_scalar(c, count), before);
    CHECK(before > 0);
    testdb_exec(c, "BEGIN", NULL, 0);
    size_t len = 0;
    FILE *f = open_memstream(&t, &len);
    CalibrateOptions o;
    calibrate_default_options(&o);
    o.kind = "triage";
    o.run_name = "cal";
    CHECK_INT(calibrate_run(c, cfg, &o, f, &err), 0);
    fclose(f);
    CHECK(PQtransactionStatus(c) == PQTRANS_INTRANS);
    CHECK(strstr(t, "\"accept\": 0.85}") != NULL);
    free(t);
    testdb_exec(c, "ROLLBACK", NULL, 0);
    PQfinish(c);
}

static void test_bad_options(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECK_INT(calibrate_to_string("solo", "cal", 0, 0, false, &t, &err), TQ_EINVAL);
    CHECKF(strstr(err.msg, "1 tier"), "error: %s", err.msg);
    free(t);
    CHECK_INT(calibrate_to_string("nosuch", "cal", 0, 0, false, &t, &err), TQ_EINVAL);
    free(t);
    CHECK_INT(calibrate_to_string("triage", "cal", 0, 0.6, false, &t, &err), TQ_EINVAL);
    free(t);
    /* 1001 x 1001 bar pairs is over the cap; 101 x 101 is fine */
    CHECK_INT(calibrate_to_string("triage", "cal", 0, 0.001, false, &t, &err), TQ_EINVAL);
    CHECKF(strstr(err.msg, "larger step"), "error: %s", err.msg);
    CHECK_INT((long long)strlen(t), 0);
    free(t);
    CHECKF(calibrate_to_string("triage", "cal", 0, 0.01, true, &t, &err) == 0, "%s", err.msg);
    CHECK(strstr(t, "\"combinations\": 10404") != NULL);
    CHECK(strstr(t, "\"accept\": [0.70, 0.85]") != NULL);
    free(t);
}

static void test_cli(void)
{
    static char out[65536];
    int st = testdb_run("calibrate --kind triage --run cal", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECKF(strstr(out, "  \"tiers\": [\n"
                       "    {\"model\": \"cheap\", \"accept\": 0.70},\n"
                       "    {\"model\": \"mid\", \"accept\": 0.85},\n"
                       "    {\"model\": \"premium\"}\n"
                       "  ]\n"),
           "snippet missing: %s", out);

    st = testdb_run("calibrate --kind triage --run cal --target 0.94 --step 0.05 --format json", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    JsonDoc d;
    if (st == 0 && parse(out, &d) == 0) {
        CHECK_STR(jv(&d, 0, "target_ratio"), "0.94");
        CHECK_STR(jlist(&d, jobj(&d, jobj(&d, 0, "recommended"), "accept")), "0.70,0.80");
        json_doc_free(&d);
    }

    st = testdb_run("calibrate --kind triage --run plain", out, sizeof out);
    CHECK_INT(st, 1);
    CHECKF(strstr(out, "tierq: calibrate: run plain has no jobs of kind triage with expected answers from every "
                       "tier; make one with tierq run --all-tiers"),
           "said: %s", out);

    CHECK_INT(testdb_run("calibrate --kind triage", out, sizeof out), 2);
    CHECKF(strstr(out, "--run is required"), "said: %s", out);
    CHECK_INT(testdb_run("calibrate --kind triage --run cal --step 0", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --kind triage --run cal --target x", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --kind triage --run cal --format yaml", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --kind triage --run cal --bogus", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --kind nosuch --run cal", out, sizeof out), 2);
    CHECKF(strstr(out, "unknown kind nosuch"), "said: %s", out);
    CHECK_INT(testdb_run("calibrate --kind solo --run cal", out, sizeof out), 2);
    CHECK_INT(testdb_run("--help", out, sizeof out), 0);
    CHECK(strstr(out, "calibrate --run NAME") != NULL);
}

/* A tier whose answers the plan never needs is left out, not kept at a bar that accepts nothing. */
static void test_drops_a_tier_that_accepts_nothing(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECKF(calibrate_to_string("dropme", "drop-run", 0, 0, true, &t, &err) == 0, "%s", err.msg);
    JsonDoc d;
    if (t && parse(t, &d) == 0) {
        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "0.90,null");
        CHECK_STR(jlist(&d, jobj(&d, rec, "dropped_tiers")), "2");
        CHECK_STR(jv(&d, rec, "correct"), "20");
        /* 10 x cheap + 10 x (cheap + premium), no mid: (20 x 0.000001 + 10 x 0.0001) / 20 */
        CHECK_STR(jv(&d, rec, "cost_per_job_usd"), "0.000051000");
        CHECK_STR(jlist(&d, jobj(&d, rec, "share_by_tier_pct")), "50.00,0.00,50.00");
        int snippet = jobj(&d, rec, "tiers");
        CHECK_INT(json_size(&d, snippet), 2);
        CHECK_STR(jv(&d, json_at(&d, snippet, 0), "model"), "cheap");
        CHECK_STR(jv(&d, json_at(&d, snippet, 1), "model"), "premium");
        CHECK_STR(jv(&d, 0, "held_out"), "null"); /* 20 jobs: too few to hold any out */
        json_doc_free(&d);
    }
    free(t);
    CHECKF(calibrate_to_string("dropme", "drop-run", 0, 0, false, &t, &err) == 0, "%s", err.msg);
    CHECKF(strstr(t, "note: tier 2 (mid) is dropped") && strstr(t, "0.90 drop") &&
               strstr(t, "held-out prediction: none (20 jobs; cross-validation needs at least 100)"),
           "text: %s", t);
    free(t);
}

/* No plan dearer than the last tier alone, even when only a dearer one reaches the target. */
static void test_never_dearer_than_the_last_tier_alone(void)
{
    char *t = NULL;
    TqErr err = {0};
    PGconn *c = testdb_connect();
    size_t len = 0;
    FILE *f = open_memstream(&t, &len);
    CalibrateOptions o;
    calibrate_default_options(&o);
    o.kind = "dear";
    o.run_name = "dear-run";
    o.target_accuracy = 1.0;
    o.json = true;
    CHECKF(calibrate_run(c, cfg, &o, f, &err) == 0, "%s", err.msg);
    fclose(f);
    PQfinish(c);
    JsonDoc d;
    if (t && parse(t, &d) == 0) {
        CHECK_STR(jv(&d, 0, "target_absolute"), "1.00");
        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "null");
        CHECK_STR(jv(&d, rec, "cost_pct_of_last_tier"), "100.00");
        CHECK_STR(jv(&d, rec, "correct"), "18");
        CHECK_STR(jv(&d, rec, "meets_target"), "false");
        json_doc_free(&d);
    }
    free(t);
    /* with the ratio target the last tier alone is simply the cheapest that reaches it */
    CHECKF(calibrate_to_string("dear", "dear-run", 0, 0, true, &t, &err) == 0, "%s", err.msg);
    CHECKF(t && strstr(t, "\"cost_pct_of_last_tier\": 100.00, \"share_by_tier_pct\": [0.00, 100.00], \"dropped_tiers\": [1]"),
           "%s", t);
    free(t);
}

/* Enough labelled jobs: k-fold predictions with intervals. */
static void test_held_out_prediction(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECKF(calibrate_to_string("big", "big-run", 0, 0, true, &t, &err) == 0, "%s", err.msg);
    JsonDoc d;
    if (t && parse(t, &d) == 0) {
        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "0.55");
        CHECK_STR(jv(&d, rec, "correct"), "200");
        int ho = jobj(&d, 0, "held_out");
        CHECK_STR(jv(&d, ho, "folds"), "5");
        CHECK_STR(jv(&d, ho, "margin_pts"), "0.00");
        CHECK_STR(jv(&d, ho, "accuracy"), "1.000000");
        CHECK_STR(jv(&d, ho, "ratio_to_last_tier"), "1.0000");
        /* every fold chose a bar at or near 0.55: about the plan's own cost */
        double hc = atof(jv(&d, ho, "cost_per_job_usd")), pc = atof(jv(&d, rec, "cost_per_job_usd"));
        CHECKF(pc > 0 && hc > pc * 0.95 && hc < pc * 1.05, "held-out cost %.9f, plan %.9f", hc, pc);
        CHECKF(atof(jv(&d, ho, "cost_low_usd")) <= hc && atof(jv(&d, ho, "cost_high_usd")) >= hc, "%s", t);
        CHECK_STR(jv(&d, ho, "meets_target"), "true");
        json_doc_free(&d);
    }
    free(t);
    /* --folds is checked */
    PGconn *c = testdb_connect();
    CalibrateOptions o;
    calibrate_default_options(&o);
    o.kind = "big";
    o.run_name = "big-run";
    o.folds = 1;
    CHECK_INT(calibrate_run(c, cfg, &o, stdout, &err), TQ_EINVAL);
    CHECKF(strstr(err.msg, "folds"), "%s", err.msg);
    PQfinish(c);
}

/* Every kind at once: the kinds the run labelled, the rest listed as skipped, totals. */
static void test_all_kinds(void)
{
    static char out[1 << 17];
    int st = testdb_run("calibrate --run drop-run --format json", out, sizeof out);
    CHECKF(st == 0, "exit %d: %s", st, out);
    JsonDoc d;
    if (st == 0 && parse(out, &d) == 0) {
        CHECK_STR(jv(&d, 0, "run"), "drop-run");
        int kinds = jobj(&d, 0, "kinds");
        CHECK_INT(json_size(&d, kinds), 1);
        CHECK_STR(jv(&d, json_at(&d, kinds, 0), "kind"), "dropme");
        CHECKF(strstr(jlist(&d, jobj(&d, 0, "skipped_kinds")), "triage") != NULL, "%s", out);
        int total = jobj(&d, 0, "total");
        CHECK_STR(jv(&d, total, "jobs"), "20");
        CHECK_STR(jv(&d, total, "accuracy"), "1.000000");
        json_doc_free(&d);
    }
    /* a list of kinds, one of them without data in the run: refused with the reason */
    st = testdb_run("calibrate --run big-run --kinds big,dropme", out, sizeof out);
    CHECK_INT(st, 1);
    CHECKF(strstr(out, "has no jobs of kind dropme"), "%s", out);
    st = testdb_run("calibrate --run big-run --kinds big", out, sizeof out);
    CHECKF(st == 0 && strstr(out, "summary: recommended plans") && strstr(out, "  all "), "exit %d: %s", st, out);
    CHECK_INT(testdb_run("calibrate --run big-run --kinds big,solo", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --run big-run --kinds big --kind big", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --run big-run --folds 1", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --run big-run --target-accuracy 1.5", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --run big-run --target 0.9 --target-accuracy 0.8", out, sizeof out), 2);
    CHECKF(strstr(out, "do not go together"), "%s", out);
    CHECK_INT(testdb_run("calibrate --run big-run --diff --format json", out, sizeof out), 2);
    CHECK_INT(testdb_run("calibrate --run big-run --diff --write /tmp", out, sizeof out), 2);
}

/* --diff shows, --write writes: the tiers block only, the rest of the file as it was. */
static void test_write_and_diff(void)
{
    static char out[65536];
    char cmd[2048], copy[600], path[700];
    snprintf(copy, sizeof copy, "%s/written", jobs_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/*.json '%s/'", copy, jobs_dir, copy);
    CHECK_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "calibrate --kind dropme --run drop-run --diff");
    int st = testdb_run(cmd, out, sizeof out);
    char want[2048];
    snprintf(want, sizeof want,
             "--- %s/dropme.json\n+++ %s/dropme.json\n@@ -1,3 +1,3 @@\n {\"description\": \"kept as written\",\n"
             "- \"tiers\": [{\"model\": \"cheap\", \"accept\": 0.5}, {\"model\": \"mid\", \"accept\": 0.5}, "
             "{\"model\": \"premium\"}],\n"
             "+ \"tiers\": [{\"model\": \"cheap\", \"accept\": 0.90}, {\"model\": \"premium\"}],\n"
             "  \"max_tokens\": 16}\n",
             jobs_dir, jobs_dir);
    CHECKF(st == 0 && strcmp(out, want) == 0, "exit %d; diff:\n%s\nwant:\n%s", st, out, want);
    snprintf(cmd, sizeof cmd, "calibrate --kind dropme --run drop-run --write '%s'", copy);
    st = testdb_run(cmd, out, sizeof out);
    snprintf(path, sizeof path, "%s/dropme.json", copy);
    CHECKF(st == 0 && strstr(out, "wrote ") && strstr(out, path), "exit %d: %s", st, out);
    FILE *f = fopen(path, "r");
    char got[1024] = "";
    if (f) {
        size_t n = fread(got, 1, sizeof got - 1, f);
        got[n] = '\0';
        fclose(f);
    }
    CHECK_STR(got, "{\"description\": \"kept as written\",\n"
                   " \"tiers\": [{\"model\": \"cheap\", \"accept\": 0.90}, {\"model\": \"premium\"}],\n"
                   " \"max_tokens\": 16}\n");
    /* the written directory loads, with the new tiers */
    TqConfig *c2 = NULL;
    TqErr err = {0};
    CHECKF(config_load(copy, &c2, &err) == 0, "%s", err.msg);
    const TqKind *k = c2 ? config_kind(c2, "dropme") : NULL;
    CHECK(k && k->ntiers == 2 && k->tiers[0].accept > 0.899 && k->tiers[0].accept < 0.901);
    config_free(c2);
    /* calibrating the written plan (tier 2 gone) on the run that chose it: the same plan, no diff */
    snprintf(cmd, sizeof cmd, "--jobs '%s' calibrate --kind dropme --run drop-run --diff", copy);
    st = testdb_run(cmd, out, sizeof out);
    CHECKF(st == 0 && out[0] == '\0', "exit %d: %s", st, out);
    snprintf(cmd, sizeof cmd, "--jobs '%s' calibrate --kind dropme --run drop-run --format json", copy);
    st = testdb_run(cmd, out, sizeof out);
    /* the run's tier 2 is a candidate again (configured as dropped): the same search, the same plan */
    CHECKF(st == 0 && strstr(out, "\"combinations\": 484,") && strstr(out, "\"current\": {\"accept\": [0.90, null]") &&
               strstr(out, "\"correct\": 20, \"cost_per_job_usd\": 0.000051000"),
           "exit %d: %s", st, out);
    /* the source directory is untouched by --diff */
    snprintf(path, sizeof path, "%s/dropme.json", jobs_dir);
    f = fopen(path, "r");
    got[0] = '\0';
    if (f) {
        size_t n = fread(got, 1, sizeof got - 1, f);
        got[n] = '\0';
        fclose(f);
    }
    CHECK_STR(got, DROPME_JSON);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", copy);
    CHECK_INT(system(cmd), 0);
}

/* The stronger rule is measured on held-out data and kept where it wins, not elsewhere. */
static void test_agreement_rule_kept_where_it_wins(void)
{
    char *t = NULL;
    TqErr err = {0};
    CHECKF(calibrate_to_string("agree", "agree-run", 0, 0, true, &t, &err) == 0, "%s", err.msg);
    JsonDoc d;
    if (t && parse(t, &d) == 0) {
        int rec = jobj(&d, 0, "recommended");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept")), "1.00,1.00");
        CHECK_STR(jlist(&d, jobj(&d, rec, "accept_if_agrees")), "null,0.60");
        CHECK_STR(jv(&d, rec, "correct"), "200");
        /* every job pays cheap and mid; the half they disagree on pays premium too */
        CHECK_STR(jv(&d, rec, "cost_per_job_usd"), "0.000061000");
        int rules = jobj(&d, 0, "rules");
        CHECK_STR(jv(&d, rules, "kept"), "agreement");
        CHECK_STR(jv(&d, jobj(&d, rules, "thresholds"), "cost_per_job_usd"), "0.000100000");
        CHECK_STR(jv(&d, jobj(&d, rules, "agreement"), "accuracy"), "1.000000");
        int snippet = jobj(&d, rec, "tiers");
        CHECK_STR(jv(&d, json_at(&d, snippet, 1), "accept_if_agrees"), "0.60");
        CHECK_INT(json_get(&d, json_at(&d, snippet, 0), "accept_if_agrees"), -1);
        json_doc_free(&d);
    }
    free(t);
    /* --thresholds-only: bars alone, and no comparison */
    PGconn *c = testdb_connect();
    size_t len = 0;
    FILE *f = open_memstream(&t, &len);
    CalibrateOptions o;
    calibrate_default_options(&o);
    o.kind = "agree";
    o.run_name = "agree-run";
    o.json = true;
    o.thresholds_only = true;
    CHECKF(calibrate_run(c, cfg, &o, f, &err) == 0, "%s", err.msg);
    fclose(f);
    PQfinish(c);
    CHECKF(t && strstr(t, "\"rules\": null") && strstr(t, "\"cost_pct_of_last_tier\": 100.00, \"share_by_tier_pct\": [0.00, 0.00, 100.00]"),
           "%s", t);
    free(t);
    /* where agreement does not help (big: two tiers; triage: too few jobs) it is not even tried */
    CHECKF(calibrate_to_string("big", "big-run", 0, 0, true, &t, &err) == 0 && strstr(t, "\"rules\": null"), "%s", t);
    free(t);
    /* the written file carries it, and loads: the router reads what calibrate chose */
    static char out[65536];
    char cmd[2048], copy[600];
    snprintf(copy, sizeof copy, "%s/agreed", jobs_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/*.json '%s/'", copy, jobs_dir, copy);
    CHECK_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "calibrate --kind agree --run agree-run --write '%s'", copy);
    CHECKF(testdb_run(cmd, out, sizeof out) == 0, "%s", out);
    TqConfig *c2 = NULL;
    CHECKF(config_load(copy, &c2, &err) == 0, "%s", err.msg);
    const TqKind *k = c2 ? config_kind(c2, "agree") : NULL;
    CHECK(k && k->ntiers == 3 && isnan(k->tiers[0].accept_if_agrees) && k->tiers[1].accept_if_agrees > 0.599 &&
          k->tiers[1].accept_if_agrees < 0.601);
    config_free(c2);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", copy);
    CHECK_INT(system(cmd), 0);
}

int main(void)
{
    setup();
    RUN(test_recommends_known_bars);
    RUN(test_alternatives);
    RUN(test_two_tiers_and_shared_calls);
    RUN(test_text_report);
    RUN(test_runs_without_all_tier_data);
    RUN(test_reads_only);
    RUN(test_bad_options);
    RUN(test_cli);
    RUN(test_drops_a_tier_that_accepts_nothing);
    RUN(test_never_dearer_than_the_last_tier_alone);
    RUN(test_held_out_prediction);
    RUN(test_all_kinds);
    RUN(test_write_and_diff);
    RUN(test_agreement_rule_kept_where_it_wins);
    teardown();
    return check_done();
}
