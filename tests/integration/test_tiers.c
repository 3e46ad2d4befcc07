/* Tiered routing end to end: the real tierq, a real PostgreSQL, the simulator. Covers escalation on
 * a failed hard gate, staying on tier 1 with high confidence, the last tier being final, a judge
 * call charged to its job, the per-job budget (reason budget), the per-run budget (claiming stops,
 * the rest stays queued, exit status 4), and sums over jobs equal to sums over calls. */
#include "runhelp.h"

#include <sys/stat.h>

static char dir[256], jobs[300], answers[300];
#define out run_out


static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_tiers.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    snprintf(answers, sizeof answers, "%s/answers.tsv", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/jobs/models.json' '%s/'", dir, jobs, getenv("TIERQ_ROOT"), jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    snprintf(p, sizeof p, "%s/gate.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8}, {\"model\": \"deepseek-v4-flash\", \"accept\": 0.9},"
                  " {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"], \"logprobs\": true}}");
    /* three tiers that are never good enough before the last: every job walks all of them */
    snprintf(p, sizeof p, "%s/strict3.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 1.0}, {\"model\": \"deepseek-v4-flash\", \"accept\": 1.0},"
                  " {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"], \"logprobs\": true}}");
    /* the same, but no tier-1 answer is ever good enough (accept 1.0): escalation always wanted */
    snprintf(p, sizeof p, "%s/strict.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 1.0}, {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"], \"logprobs\": true}}");
    snprintf(p, sizeof p, "%s/conf.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8}, {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 32, \"checks\": {\"min_chars\": 1, \"logprobs\": true}}");
    snprintf(p, sizeof p, "%s/judged.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\","
                  " \"tiers\": [{\"model\": \"qwen3-32b\", \"accept\": 0.7}, {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 32, \"checks\": {\"min_chars\": 1, \"judge_model\": \"qwen3-8b\"}}");
    snprintf(p, sizeof p, "%s/agree.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.5}, {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"], \"agreement\": true}}");
    /* the second tier is trusted only when it repeats the first tier's answer (accept_if_agrees) */
    snprintf(p, sizeof p, "%s/witness.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with one label, one of: {labels}.\","
                  " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 1.0},"
                  " {\"model\": \"deepseek-v4-flash\", \"accept\": 1.0, \"accept_if_agrees\": 0.0}, {\"model\": \"gpt-4o\"}],"
                  " \"max_tokens\": 8, \"checks\": {\"labels\": [\"alpha\", \"beta\", \"gamma\"], \"logprobs\": true}}");
    FILE *f = fopen(answers, "w");
    fprintf(f, "kind\tprompt\texpected\n");
    static const char *labels[] = {"alpha", "beta", "gamma"};
    for (int i = 1; i <= 200; i++)
        fprintf(f, "gate\tgate item %d\t%s\n", i, labels[i % 3]);
    for (int i = 1; i <= 200; i++)
        fprintf(f, "conf\tconf item %d\tthe answer is %d\n", i, i);
    for (int i = 1; i <= 50; i++)
        fprintf(f, "judged\tjudged item %d\tjudged answer %d\n", i, i);
    for (int i = 1; i <= 100; i++)
        fprintf(f, "agree\tagree item %d\t%s\n", i, labels[i % 3]);
    for (int i = 1; i <= 10; i++)
        fprintf(f, "strict\tstrict item %d\t%s\n", i, labels[i % 3]);
    fclose(f);
    setenv("TIERQ_JOBS_DIR", jobs, 1);
}



static void check_sums_per_job(PGconn *c)
{
    check_sums(c);
    /* per job too: a job's cost is the sum of the calls that served it */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j.cost_usd <>"
                   " (SELECT coalesce(sum(k.cost_usd), 0) FROM tierq.calls k WHERE j.id = ANY (k.job_ids))"), 0);
}

static void test_gate_failure_escalates_and_last_tier_is_final(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    /* params.labels allows only "delta", which the answer key never gives: every answer fails the
     * label gate at every tier, so there is no answer to keep — the job fails, it is not `done` */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, run_name) VALUES"
                   " ('gate', 'gate item 1', '{\"labels\": [\"delta\"]}', 'gates')", NULL, 0);
    int st = run_drain(&s, "--run gates");
    CHECKF(st == 6, "exit %d (want 6: nothing succeeded): %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'gates' AND state = 'failed'"
                   " AND reason = 'label_not_allowed' AND result IS NULL AND error LIKE '%is not one of 1 labels%'"), 1);
    /* one ledger row per tier: escalated, escalated, then the last tier's gate failure; each scored 0 */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'gates' AND purpose = 'answer' AND score = 0"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'gates' AND reason = 'escalated' AND tier IN (1, 2)"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'gates' AND reason = 'label_not_allowed' AND tier = 3 AND model = 'gpt-4o'"), 1);
    /* the job's own labels reached the model: the request showed "delta", not the kind's set */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'gates' AND error LIKE '%1 labels%'"), 3);
    /* the job kept its first attempt: escalation happened in-process, not through the queue */
    CHECK_INT(q(c, "SELECT attempts FROM tierq.jobs WHERE run_name = 'gates'"), 1);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

/* accept_if_agrees: a later tier's answer that repeats the best earlier answer passes its lower bar
 * (reason agreed); one that does not goes on up. */
static void test_agreeing_answer_passes_the_lower_bar(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'witness', 'gate item ' || g, 'witness'"
                   " FROM generate_series(1, 200) g", NULL, 0);
    int st = run_drain(&s, "--run witness");
    CHECKF(st == 0, "exit %d: %s", st, out);
    long long agreed = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'witness' AND reason = 'agreed'");
    long long third = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'witness' AND tier = 3");
    CHECKF(agreed >= 40 && third >= 10 && agreed + third == 200, "%lld agreed, %lld on tier 3", agreed, third);
    /* what each tier said, from an all-tiers run of the same prompts (the simulator is deterministic,
     * and a normal run keeps no answer in the ledger) */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'witness', 'gate item ' || g, 'witness_all'"
                   " FROM generate_series(1, 200) g", NULL, 0);
    st = run_drain(&s, "--run witness_all --all-tiers");
    CHECKF(st == 0, "exit %d: %s", st, out);
#define SAID(tier)                                                                                              \
    "(SELECT tierq.normalize_answer(k.answer) FROM tierq.calls k JOIN tierq.jobs a ON a.id = k.job_ids[1]"       \
    " WHERE a.run_name = 'witness_all' AND a.prompt = j.prompt AND k.tier = " tier " AND k.purpose = 'answer'"     \
    " AND k.status = 'ok' ORDER BY k.id DESC LIMIT 1)"
    const char *t1 = SAID("1"), *t2 = SAID("2");
#undef SAID
    char sql[2048];
    /* every agreed job: tier 2, below tier 2's bar, its answer the same as tier 1's (which no bar accepted) */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tierq.jobs j WHERE j.run_name = 'witness' AND j.reason = 'agreed' AND j.tier = 2"
             " AND j.quality < 1.0 AND tierq.normalize_answer(j.result) = %s AND %s = %s", t1, t1, t2);
    CHECK_INT(q(c, sql), agreed);
    /* every job that went to tier 3: tiers 1 and 2 disagreed */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM tierq.jobs j WHERE j.run_name = 'witness' AND j.tier = 3 AND %s <> %s",
             t1, t2);
    CHECK_INT(q(c, sql), third);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'witness' AND tier = 2 AND reason = 'agreed'"), agreed);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_confident_answers_stay_and_every_decision_matches_its_score(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'gate', 'gate item ' || g, 'many'"
                   " FROM generate_series(1, 200) g", NULL, 0);
    int st = run_drain(&s, "--run many");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'many' AND state = 'done'"), 200);
    /* some answers passed on the cheap tier with high confidence and stayed there */
    long long stayed = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'many' AND tier = 1 AND reason = 'accepted'"
                            " AND quality >= 0.8 AND escalations = 0 AND model = 'qwen3-8b'");
    CHECKF(stayed >= 40, "only %lld jobs stayed on tier 1", stayed);
    /* and some did not */
    CHECK(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'many' AND tier > 1") > 0);
    /* every decision agrees with its score and the tier's bar */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'many' AND purpose = 'answer' AND ("
                   " (reason = 'accepted' AND NOT (score >= 0.8 AND tier = 1 OR score >= 0.9 AND tier = 2 OR tier = 3))"
                   " OR (reason = 'escalated' AND (tier = 3 OR (tier = 1 AND score >= 0.8) OR (tier = 2 AND score >= 0.9)))"
                   " OR score IS NULL)"), 0);
    /* answers are labels from the set, stored in their canonical form */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'many' AND reason <> 'final_tier'"
                   " AND result NOT IN ('alpha', 'beta', 'gamma')"), 0);
    /* cheap first: the tiered run costs less than its baseline */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT sum(cost_usd) AS c, sum(baseline_cost_usd) AS b FROM tierq.jobs"
                   " WHERE run_name = 'many') x WHERE c < b"), 1);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_judge_call_is_charged_to_its_job(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'judged', 'judged item ' || g, 'judge'"
                   " FROM generate_series(1, 50) g", NULL, 0);
    int st = run_drain(&s, "--run judge");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'judge' AND state = 'done'"), 50);
    /* every job judged on tier 1 by the cheap judge model, its judge call billed to it */
    CHECK_INT(q(c, "SELECT count(DISTINCT j.id) FROM tierq.jobs j JOIN tierq.calls k ON j.id = ANY (k.job_ids)"
                   " WHERE j.run_name = 'judge' AND k.purpose = 'judge' AND k.model = 'qwen3-8b' AND k.tier = 1"
                   " AND k.cost_usd > 0 AND k.score BETWEEN 0 AND 1"), 50);
    /* the judge's verdict is what the answer was scored with */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls a JOIN tierq.calls jd ON jd.job_ids = a.job_ids AND jd.purpose = 'judge'"
                   " AND jd.tier = a.tier WHERE a.run_name = 'judge' AND a.purpose = 'answer' AND a.tier = 1 AND a.score <> jd.score"), 0);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_two_samples_must_agree(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'agree', 'agree item ' || g, 'agree'"
                   " FROM generate_series(1, 100) g", NULL, 0);
    int st = run_drain(&s, "--run agree");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'agree' AND state = 'done'"), 100);
    /* every tier-1 answer got a second, warm sample from the same model, charged to the job */
    CHECK_INT(q(c, "SELECT count(DISTINCT job_ids) FROM tierq.calls WHERE run_name = 'agree' AND purpose = 'sample'"
                   " AND tier = 1 AND model = 'qwen3-8b' AND cost_usd > 0"), 100);
    /* agreement scores 1, disagreement 0; both happen; disagreeing answers escalate */
    long long agreed = q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'agree' AND purpose = 'answer' AND tier = 1 AND score = 1");
    long long disagreed = q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'agree' AND purpose = 'answer' AND tier = 1 AND score = 0");
    CHECKF(agreed > 10 && disagreed > 10 && agreed + disagreed == 100, "agreed %lld, disagreed %lld", agreed, disagreed);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'agree' AND tier = 2"), disagreed);
    /* agreeing samples are more often right than the cheap model alone */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT avg((tierq.normalize_answer(j.result) = tierq.normalize_answer(x.expected))::int) a"
                   " FROM tierq.jobs j JOIN (VALUES (0, 'alpha'), (1, 'beta'), (2, 'gamma')) x(m, expected)"
                   " ON x.m = (substring(j.prompt from '[0-9]+$')::int % 3) WHERE j.run_name = 'agree' AND j.tier = 1) y WHERE a > 0.7"), 1);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_job_budget_stops_escalation(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    /* a usable tier-1 answer under the bar (strict: accept 1.0), and a budget that cannot pay for
     * tier 2: the tier-1 answer is kept */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, max_budget_usd, run_name) VALUES"
                   " ('strict', 'strict item 2', 0.000001, 'budget')", NULL, 0);
    int st = run_drain(&s, "--run budget");
    CHECKF(st == 0, "exit %d: %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'budget' AND state = 'done' AND reason = 'budget'"
                   " AND tier = 1 AND model = 'qwen3-8b' AND result IN ('alpha', 'beta', 'gamma')"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'budget'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'budget' AND reason = 'budget'"), 1);
    /* with no usable answer in hand, the budget stop fails the job: an unusable answer is never done */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, params, max_budget_usd, run_name) VALUES"
                   " ('gate', 'gate item 2', '{\"labels\": [\"delta\"]}', 0.000001, 'budget2')", NULL, 0);
    st = run_drain(&s, "--run budget2");
    CHECKF(st == 6, "exit %d (want 6): %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'budget2' AND state = 'failed' AND reason = 'budget'"
                   " AND result IS NULL AND error LIKE '%budget ran out%'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'budget2'"), 1);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

/* The middle tier's provider is out of quota: an escalating job asks the tier above it instead of
 * settling for its tier-1 answer under the bar. */
static void test_unavailable_tier_is_skipped_not_settled_for(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 1"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES"
                   " ('strict3', 'strict item 3 [[sim:429quota:times=0:model=deepseek-v4-flash]]', 'skip')",
                NULL, 0);
    int st = run_drain(&s, "--run skip");
    CHECKF(st == 5, "exit %d (want 5: a provider refused the account): %s", st, out);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'skip' AND state = 'done' AND tier = 3"
                   " AND model = 'gpt-4o' AND escalations = 2 AND result IN ('alpha', 'beta', 'gamma')"),
              1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE run_name = 'skip' AND tier = 2 AND status = 'quota'"), 1);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

static void test_run_budget_stops_claiming(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, answers, "--latency-ms 5"), 0);
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'conf', 'conf item ' || g, 'runbudget'"
                   " FROM generate_series(1, 200) g", NULL, 0);
    /* one job at a time, so the ceiling is met long before the queue is empty */
    int st = run_drain(&s, "--run runbudget --budget-usd 0.00002 --max-in-flight 1 --threads 1");
    CHECKF(st == 4, "exit %d (want 4): %s", st, out);
    CHECKF(strstr(out, "budget") != NULL, "output: %s", out);
    long long queued = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'runbudget' AND state = 'queued' AND attempts = 0");
    CHECKF(queued > 100, "only %lld jobs left queued", queued);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'runbudget' AND state IN ('done', 'queued')"), 200);
    /* spent at least the ceiling, and at most one job's worth past it */
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT sum(cost_usd) AS s, max(cost_usd) AS m FROM tierq.jobs WHERE run_name = 'runbudget') x"
                   " WHERE s >= 0.00002 AND s <= 0.00002 + m"), 1);
    check_sums_per_job(c);
    PQfinish(c);
    sim_stop(&s);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_tiers", 1);
    RUN(test_gate_failure_escalates_and_last_tier_is_final);
    RUN(test_confident_answers_stay_and_every_decision_matches_its_score);
    RUN(test_agreeing_answer_passes_the_lower_bar);
    RUN(test_judge_call_is_charged_to_its_job);
    RUN(test_two_samples_must_agree);
    RUN(test_job_budget_stops_escalation);
    RUN(test_unavailable_tier_is_skipped_not_settled_for);
    RUN(test_run_budget_stops_claiming);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
