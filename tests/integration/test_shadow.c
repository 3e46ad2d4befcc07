/* Shadow evaluation end to end: the real tierq against the simulator and a private PostgreSQL. A kind
 * samples a share of the jobs its cheap tier answered and asks them again of its baseline model; the
 * shadow calls are in the ledger and charged to no job; agreement estimates the cheap tier's
 * accuracy against the baseline; a steady run is not flagged, a run whose cheap model drifts is
 * (log, report, status, exit 7 with --fail-on-drift). */
#include "runhelp.h"

#include <curl/curl.h>
#include <sys/stat.h>

static char dir[256], jobs[300], answers[320];
#define out run_out

/* A kind whose cheap tier accepts every answer (accept 0), so every job is a shadow candidate. */
static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_shadow.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    snprintf(answers, sizeof answers, "%s/answers.tsv", dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/jobs/*.json '%s/'", dir, jobs,
             getenv("TIERQ_ROOT"), jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    snprintf(p, sizeof p, "%s/shadowed.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with a single word or a short phrase, nothing else.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0}, {\"model\": \"gpt-4o\"}],"
                  " \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16, \"temperature\": 0,"
                  " \"checks\": {\"min_chars\": 1, \"max_chars\": 64},"
                  " \"shadow\": {\"rate\": 0.25, \"min_agreement\": 0.5, \"window\": 40}}");
    /* shifty's tier 1 agrees with the baseline about 0.9 of the time at its shipped skill and about
     * 0.55 at skill 0.02 (its few answers still over the bar): 0.75 sits between, where a window of 40
     * at 0.55 has its interval wholly below (0.7 did not: 22 of 40 reach 0.69) */
    snprintf(p, sizeof p, "%s/shifty.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with a single word or a short phrase, nothing else.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8}, {\"model\": \"gpt-4o\"}],"
                  " \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16, \"temperature\": 0,"
                  " \"checks\": {\"min_chars\": 1, \"max_chars\": 64, \"logprobs\": true},"
                  " \"shadow\": {\"rate\": 0.02, \"min_agreement\": 0.75, \"window\": 40, \"boost\": 10}}");
    /* drifty: its shares and comparisons are written by hand (test_change_point_on_known_data) */
    snprintf(p, sizeof p, "%s/drifty.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with a single word.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8}, {\"model\": \"gpt-4o\"}],"
                  " \"baseline_model\": \"gpt-4o\", \"max_tokens\": 16,"
                  " \"shadow\": {\"rate\": 0.02, \"min_agreement\": 0.5, \"window\": 40}}");
    FILE *f = fopen(answers, "w");
    if (f) {
        fprintf(f, "kind\tprompt\texpected\n");
        for (int i = 1; i <= 3000; i++)
            fprintf(f, "shadowed\tshadow question %d\tanswer %d\n", i, i % 5);
        fclose(f);
    }
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}

static void insert_jobs(PGconn *c, int from, int to, const char *run)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT 'shadowed', 'shadow question ' || g,"
             " 'answer ' || (g %% 5), '%s' FROM generate_series(%d, %d) g",
             run, from, to);
    testdb_exec(c, sql, NULL, 0);
}

/* The first row's first column as text ("" when none). */
static void query_text(PGconn *c, const char *sql, char *text, size_t cap)
{
    PGresult *r = PQexec(c, sql);
    snprintf(text, cap, "%s", PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        printf("# query failed: %s", PQresultErrorMessage(r));
    PQclear(r);
}

static void test_steady_run_samples_at_the_rate_and_pays_apart(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    insert_jobs(c, 1, 400, "steady");
    int st = run_drain(&s, "--run steady --fail-on-drift");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'steady' AND state = 'done' AND tier = 1"), 400);
    /* a quarter of the 400, by a hash of the job id: binomial, mean 100, sd 8.7 */
    long long n = q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'steady' AND purpose = 'shadow'");
    CHECKF(n >= 70 && n <= 130, "%lld shadow calls for 400 jobs at rate 0.25", n);
    /* each on the baseline model, for one done job the cheap tier answered, paid for and charged to no job */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k JOIN tierq.jobs j ON j.id = k.job_ids[1]"
                   " WHERE k.run_name = 'steady' AND k.purpose = 'shadow' AND k.model = 'gpt-4o' AND k.status = 'ok'"
                   " AND k.cost_usd > 0 AND k.answer IS NOT NULL AND cardinality(k.job_ids) = 1 AND j.tier = 1"
                   " AND j.model = 'qwen3-8b'"),
              n);
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT (SELECT sum(cost_usd) FROM tierq.jobs WHERE run_name = 'steady') AS j,"
                   " (SELECT sum(cost_usd) FROM tierq.calls WHERE run_name = 'steady' AND purpose <> 'shadow') AS k) x"
                   " WHERE j = k"),
              1);
    /* no job's cost includes its shadow call: each job cost exactly its tier-1 answer */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j.run_name = 'steady' AND j.cost_usd <>"
                   " (SELECT sum(k.cost_usd) FROM tierq.calls k WHERE j.id = ANY (k.job_ids) AND k.purpose = 'answer')"),
              0);
    CHECKF(!strstr(out, "have drifted"), "a steady run was flagged: %s", out);
    /* the report: per kind and tier, and the live estimate; the same in JSON */
    char rep[65536];
    st = testdb_run("report --run steady", rep, sizeof rep);
    CHECK_INT(st, 0);
    const char *sec = strstr(rep, "shadow evaluation");
    CHECKF(sec && strstr(sec, "shadowed") && strstr(sec, "live estimate"), "report: %s", rep);
    CHECKF(!strstr(rep, "BELOW") && !strstr(rep, "DROPPED"), "report: %s", rep);
    /* what was spent, shadow calls included, next to the jobs' cost: from the ledger, to the digit shown */
    char spend[160], line[300];
    query_text(c,
               "SELECT round(sum(cost_usd), 6) || ' (every call; shadow calls ' ||"
               " round(sum(cost_usd) FILTER (WHERE purpose = 'shadow'), 6) || ' of it)'"
               " FROM tierq.calls WHERE run_name = 'steady'",
               spend, sizeof spend);
    snprintf(line, sizeof line, "spend_usd          %s: ", spend);
    CHECKF(spend[0] && strstr(rep, line), "report wants \"%s\": %s", line, rep);
    st = testdb_run("report --run steady --format json", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "\"shadow\": {\"tiers\": [") && strstr(rep, "\"below\": false"), "json: %s", rep);
    query_text(c,
               "SELECT '\"spend_usd\": ' || round(sum(cost_usd), 6) || ', \"shadow_cost_usd\": ' ||"
               " round(sum(cost_usd) FILTER (WHERE purpose = 'shadow'), 6) FROM tierq.calls WHERE run_name = 'steady'",
               spend, sizeof spend);
    CHECKF(spend[0] && strstr(rep, spend), "json wants %s: %s", spend, rep);
    char want[128];
    snprintf(want, sizeof want, "\"kind\": \"shadowed\", \"tier\": 1, \"calls\": %lld,", n);
    CHECKF(strstr(rep, want) != NULL, "json wants %s: %s", want, rep);
    st = testdb_run("status", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "shadow agreement with the baseline model") && strstr(rep, "shadowed"), "status: %s", rep);
    PQfinish(c);
    sim_stop(&s);
}

/* The cheap model gets much worse in the middle of a run (the simulator's runtime switch): its
 * answers still pass the kind's bar (accept 0), so nothing but the shadow comparison can see it. The
 * first half is not flagged; after the switch the live window falls below min_agreement: a warning
 * in the log, BELOW in the report and status, "below": true in JSON, exit 7 with --fail-on-drift. */
static void test_drift_mid_run_is_flagged(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    insert_jobs(c, 1001, 1300, "drift");
    int st = run_drain(&s, "--run drift --fail-on-drift");
    CHECKF(st == 0 && !strstr(out, "have drifted"), "before the switch, exit %d: %s", st, out);
    long long before = q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'drift' AND purpose = 'shadow'");

    CHECK_INT(sim_tune(&s, "qwen3-8b", "{\"skill\": 0.02}"), 200);
    insert_jobs(c, 1301, 1700, "drift");
    st = run_drain(&s, "--run drift --fail-on-drift");
    CHECKF(st == 7, "after the switch, exit %d (want 7): %s", st, out);
    CHECKF(strstr(out, "have drifted") && strstr(out, "kind shadowed"), "no drift warning: %s", out);
    /* tier 1 against its own past (no bar needed): flagged in the log, the report and the JSON */
    CHECKF(strstr(out, "kind shadowed: tier 1's answers agree with the baseline model's") &&
               strstr(out, "that tier has drifted") && strstr(out, "tier(s) agree with the baseline model far less"),
           "tier 1's own fall was not flagged: %s", out);
    /* every job still done on tier 1: the router itself saw nothing */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'drift' AND state = 'done' AND tier = 1"), 700);
    /* the cheap tier's real accuracy did fall (the thing the flag stands for) */
    CHECKF(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'drift' AND prompt > 'shadow question 1300'"
                " AND tierq.normalize_answer(result) = tierq.normalize_answer(expected)") < 120,
           "accuracy after the switch did not fall%s", "");
    CHECKF(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'drift' AND purpose = 'shadow'") > before,
           "no shadow calls after the switch%s", "");
    char rep[65536];
    st = testdb_run("report --run drift", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "BELOW"), "report: %s", rep);
    CHECKF(strstr(rep, "DROPPED: this tier has drifted"), "report: %s", rep);
    st = testdb_run("report --run drift --format json", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "\"below\": true") && strstr(rep, "\"tier_drift\": [") &&
               strstr(rep, "\"kind\": \"shadowed\", \"tier\": 1,") && strstr(rep, "\"dropped\": true"),
           "json: %s", rep);
    st = testdb_run("status", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "BELOW") && strstr(rep, "tier 1:") && strstr(rep, "DROPPED"), "status: %s", rep);
    /* the same run without the flag ends 0: drift is an alert option, not a failure of the run */
    insert_jobs(c, 1701, 1720, "drift");
    st = run_drain(&s, "--run drift");
    CHECKF(st == 0 && strstr(out, "below their shadow.min_agreement"), "without the flag, exit %d: %s", st, out);
    /* the next night, a run of its own name: tier 1 is held to the nights before, not to itself */
    insert_jobs(c, 1721, 1900, "drift_next");
    st = run_drain(&s, "--run drift_next --fail-on-drift");
    CHECKF(st == 7 && strstr(out, "kind shadowed: tier 1's answers agree with the baseline model's") &&
               strstr(out, "that tier has drifted"),
           "a new run's tier 1 was not held to the past: exit %d: %s", st, out);
    PQfinish(c);
    sim_stop(&s);
}

/* The free early warning: a kind with a real bar (accept 0.8) whose cheap model gets much worse
 * mid-run. Its first tier's share of the jobs falls at once (the bar escalates most of the new wrong
 * answers); a running daemon says so and samples shadow calls at boost x the rate, so the shadow
 * estimate has comparisons to flag the drift within the next thousand jobs — at a 2% rate alone it
 * would get about three. */
static void test_first_tier_shift_boosts_shadows(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 2"), 0);
    PGconn *c = testdb_connect();
    char log[400];
    snprintf(log, sizeof log, "%s/daemon.log", dir);
    int pid = start_daemon_logged(&s, "--run shift --kinds shifty", log);
    CHECK(pid > 0);
    char sql[400];
    snprintf(sql, sizeof sql,
             "INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT 'shifty', 'shadow question ' || g,"
             " 'answer ' || (g %% 5), 'shift' FROM generate_series(1, 1000) g");
    testdb_exec(c, sql, NULL, 0);
    const char *done = "SELECT count(*) FROM tierq.jobs WHERE run_name = 'shift' AND state = 'done'";
    CHECK_INT(wait_for(c, done, 1000, 60000), 1000);
    usleep(700000); /* one more check over the steady jobs */
    long long first_before = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'shift' AND tier = 1");
    long long last_steady = q(c, "SELECT max(id) FROM tierq.jobs WHERE run_name = 'shift'");
    char text[65536] = "";
    FILE *lf = fopen(log, "r");
    if (lf) {
        size_t n = fread(text, 1, sizeof text - 1, lf);
        text[n] = '\0';
        fclose(lf);
    }
    CHECKF(!strstr(text, "first tier now answers") && !strstr(text, "have drifted"), "steady jobs flagged: %s", text);

    CHECK_INT(sim_tune(&s, "qwen3-8b", "{\"skill\": 0.02}"), 200);
    for (int chunk = 0; chunk < 15; chunk++) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT 'shifty', 'shadow question ' || g,"
                 " 'answer ' || (g %% 5), 'shift' FROM generate_series(%d, %d) g",
                 1001 + chunk * 100, 1100 + chunk * 100);
        testdb_exec(c, sql, NULL, 0);
        snprintf(sql, sizeof sql, "%s", done);
        wait_for(c, done, 1100 + chunk * 100, 30000);
        usleep(150000);
    }
    usleep(700000);
    kill(pid, SIGTERM);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
        usleep(50000);
    lf = fopen(log, "r");
    if (lf) {
        size_t n = fread(text, 1, sizeof text - 1, lf);
        text[n] = '\0';
        fclose(lf);
    }
    CHECKF(strstr(text, "kind shifty: its first tier now answers") && strstr(text, "sampled at 10x the rate"),
           "no shift warning: %s", text);
    CHECKF(strstr(text, "kind shifty: its answers agree with the baseline model's only") && strstr(text, "have drifted"),
           "the shadow estimate did not flag the drift: %s", text);

    /* the shift is recorded with its change point, for every tier's test against its past */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.tier_shifts WHERE kind = 'shifty' AND run_name = 'shift' AND z < -4"
                   " AND shadow_mark <= (SELECT max(id) FROM tierq.calls)"),
              1);
    /* the first tier's share did fall, and the boost sampled far more than 2% of what it answered */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'shift' AND tier = 1 AND id > %lld",
             last_steady);
    long long first_after = q(c, sql);
    CHECKF(first_before > 450 && (double)first_after / 1500.0 < 0.6 * (double)first_before / 1000.0,
           "tier 1 answered %lld of the first 1000, %lld of the 1500 after", first_before, first_after);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tierq.calls WHERE run_name = 'shift' AND purpose = 'shadow' AND job_ids[1] > %lld",
             last_steady);
    long long boosted = q(c, sql);
    CHECKF(boosted > 3 * (0.02 * (double)first_after + 1), "%lld shadow calls for %lld tier-1 jobs after the switch",
           boosted, first_after);
    PQfinish(c);
    sim_stop(&s);
}

/* The two tests sql/016 made stronger, on numbers worked out by hand (no simulator, no daemon: the
 * functions a running tierq calls, on rows written here). 1,000 jobs whose first tier answered 61%
 * (a run "known-week"), then 500 at 45% (the next night, run "known"): the latest 200 against the
 * 1,000 before them are z -2.9 (the 1,000 hold 300 of the new jobs), not a shift; the latest 500
 * against the 1,000 before are z -5.9, a shift. Tier 1's
 * shadow comparisons: 300 agreeing 87.5%, then 100 agreeing 70%. Its latest 30 against the first
 * half of the ones before are z -2.5, not a drop; with a shift's change point recorded after the
 * 300, the 100 after it against the 300 before are z -4.1, a drop. */
static void test_change_point_on_known_data(void)
{
    PGconn *c = testdb_connect();
    CHECK_INT(testdb_exec(c,
                "INSERT INTO tierq.jobs (id, kind, prompt, run_name, state, result, tier)"
                " SELECT 900000 + i, 'drifty', 'known ' || i, CASE WHEN i <= 1000 THEN 'known-week' ELSE 'known' END,"
                "   'done', 'yes',"
                "   CASE WHEN i % 100 < (CASE WHEN i <= 1000 THEN 61 ELSE 45 END) THEN 1 ELSE 2 END"
                " FROM generate_series(1, 1500) i",
                NULL, 0), 0);
    CHECK_INT(q(c, "SELECT (abs(z) BETWEEN 2.8 AND 3.0 AND NOT shifted)::int FROM tierq.first_tier_shift(NULL, 200)"
                   " WHERE kind = 'drifty'"),
              1);
    CHECK_INT(q(c, "SELECT (recent_jobs = 500 AND recent_first = 225 AND reference_first = 610 AND z BETWEEN -6.0 AND -5.8"
                   " AND shifted)::int FROM tierq.first_tier_shift_windows(NULL) WHERE kind = 'drifty'"),
              1);
    /* the last 500 are a run of their own, the next night's: 009 held it to itself and saw nothing; the
     * run is held to the nights before it */
    CHECK_INT(q(c, "SELECT (abs(z) < 0.5 AND NOT shifted)::int FROM tierq.first_tier_shift('known', 200) WHERE kind = 'drifty'"),
              1);
    CHECK_INT(q(c, "SELECT (recent_jobs = 500 AND recent_first = 225 AND reference_jobs = 1000 AND reference_first = 610"
                   " AND shifted)::int FROM tierq.first_tier_shift_windows('known') WHERE kind = 'drifty'"),
              1);

    /* shadow comparisons of jobs tier 1 answered: 300 then 100 */
    CHECK_INT(testdb_exec(c,
                "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, answer)"
                " SELECT 'known-' || i, 'known', ARRAY[900000 + i]::bigint[], 'drifty', 'gpt-4o', 1, 'shadow', 'ok',"
                "   CASE WHEN i % 8 <> 0 THEN 'yes' ELSE 'no' END FROM generate_series(1, 300) i ORDER BY i",
                NULL, 0), 0);
    long long mark = q(c, "SELECT max(id) FROM tierq.calls WHERE kind = 'drifty'");
    CHECK_INT(testdb_exec(c,
                "INSERT INTO tierq.calls (call_key, run_name, job_ids, kind, model, tier, purpose, status, answer)"
                " SELECT 'known-' || i, 'known', ARRAY[900000 + i]::bigint[], 'drifty', 'gpt-4o', 1, 'shadow', 'ok',"
                "   CASE WHEN i % 10 < 7 THEN 'yes' ELSE 'no' END FROM generate_series(301, 400) i ORDER BY i",
                NULL, 0), 0);
    const char *drift = "SELECT recent_compared || ' ' || recent_agreed || ' ' || reference_compared || ' ' ||"
                        " reference_agreed || ' ' || round(z::numeric, 1) || ' ' || dropped"
                        " FROM tierq.shadow_tier_drift('known') WHERE kind = 'drifty' AND tier = 1";
    char got[200] = "";
    query_text(c, drift, got, sizeof got);
    CHECK_STR(got, "30 21 185 162 -2.5 false");
    char sql[400];
    snprintf(sql, sizeof sql,
             "INSERT INTO tierq.tier_shifts (kind, run_name, shadow_mark, recent_jobs, recent_first, reference_jobs,"
             " reference_first, z) VALUES ('drifty', 'known', %lld, 500, 225, 1000, 610, -5.9)",
             mark);
    CHECK_INT(testdb_exec(c, sql, NULL, 0), 0);
    query_text(c, drift, got, sizeof got);
    CHECK_STR(got, "100 70 300 263 -4.1 true");
    /* the report and the status read the same function: the drop shows there */
    char rep[65536];
    int st = testdb_run("report --run known", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "DROPPED: this tier has drifted"), "report: %s", rep);
    CHECKF(strstr(rep, "first-tier shifts seen") &&
               strstr(rep, "first tier 45% of the last 500 jobs against 61% of the 1000 before (z -5.9), run known"),
           "report: %s", rep);
    st = testdb_run("report --run known --format json", rep, sizeof rep);
    CHECKF(st == 0 && strstr(rep, "\"tier_shifts\": [\n  {\"kind\": \"drifty\", \"detected_at\": \"20") &&
               strstr(rep, "Z\", \"run\": \"known\"") &&
               strstr(rep, "\"run\": \"known\", \"recent_jobs\": 500, \"recent_first_pct\": 45, \"reference_jobs\": 1000,"
                           " \"reference_first_pct\": 61, \"z\": -5.9}"),
           "json: %s", rep);
    /* a shift older than 7 days is no change point any more */
    testdb_exec(c, "UPDATE tierq.tier_shifts SET detected_at = now() - interval '8 days' WHERE kind = 'drifty'", NULL, 0);
    query_text(c, drift, got, sizeof got);
    CHECK_STR(got, "30 21 185 162 -2.5 false");
    PQfinish(c);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_shadow", 1);
    RUN(test_steady_run_samples_at_the_rate_and_pays_apart);
    RUN(test_drift_mid_run_is_flagged);
    RUN(test_first_tier_shift_boosts_shadows);
    RUN(test_change_point_on_known_data);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
