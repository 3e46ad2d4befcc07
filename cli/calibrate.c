#include "calibrate.h"

#include "buf.h"
#include "db.h"
#include "emit.h"
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAL_MAX_TIERS 8            /* config.c accepts 1 to 8 tiers */
#define CAL_MAX_BYTES (1u << 20)   /* the report is a few dozen lines */
#define CAL_SCORE_EPS 1e-6         /* scores are stored as float4; see calibrate.h */
#define CAL_COUNT_EPS 1e-7         /* counts are integers; absorbs rounding in ratio x count */
#define CAL_PICO_PER_USD 1e12L
#define CAL_FIXED_SLOTS 16
#define CAL_FIXED_LEN 48

void calibrate_default_options(CalibrateOptions *o)
{
    memset(o, 0, sizeof *o);
    o->target_ratio = CALIBRATE_DEFAULT_TARGET_RATIO;
    o->step = CALIBRATE_DEFAULT_STEP;
}

/* $1 kind, $2 run. */
static const char *const SQL_CAL_COUNTS =
    "SELECT count(*), count(*) FILTER (WHERE expected IS NOT NULL)"
    " FROM tierq.jobs WHERE kind = $1 AND run_name = $2";

/* One row per (job with expected, tier 1..$3) that has an answer: the latest ok answer call of the
 * tier (a re-run after a lost lease may have answered twice), whether it was right, and what the
 * tier cost the job in answer and judge calls of any status (failed attempts cost money too). A
 * call serving several jobs is split evenly among them. Costs come back as integer picodollars,
 * rounded once per (job, tier). The ledger is reached through calls_run_name_idx. */
static const char *const SQL_CAL_ROWS =
    "WITH j AS ("
    "  SELECT id, expected FROM tierq.jobs"
    "  WHERE kind = $1 AND run_name = $2 AND expected IS NOT NULL"
    "), lc AS ("
    "  SELECT c.id, u.job_id, c.tier, c.model, c.purpose, c.status, c.score, c.answer,"
    "    c.cost_usd / cardinality(c.job_ids) AS cost_share"
    "  FROM tierq.calls c CROSS JOIN LATERAL unnest(c.job_ids) AS u(job_id)"
    "  WHERE c.run_name = $2 AND c.kind = $1 AND c.tier BETWEEN 1 AND $3::int"
    "    AND c.purpose IN ('answer', 'judge')"
    "), a AS ("
    "  SELECT DISTINCT ON (lc.job_id, lc.tier) lc.job_id, lc.tier, lc.model, lc.score::float8 AS score,"
    "    coalesce(tierq.normalize_answer(lc.answer) = tierq.normalize_answer(j.expected), false) AS correct"
    "  FROM lc JOIN j ON j.id = lc.job_id"
    "  WHERE lc.purpose = 'answer' AND lc.status = 'ok' AND lc.answer IS NOT NULL"
    "  ORDER BY lc.job_id, lc.tier, lc.id DESC"
    "), m AS ("
    "  SELECT lc.job_id, lc.tier,"
    "    round(coalesce(sum(lc.cost_share) FILTER (WHERE lc.purpose = 'answer'), 0) * 1000000000000)::bigint AS answer_pico,"
    "    round(coalesce(sum(lc.cost_share) FILTER (WHERE lc.purpose = 'judge'), 0) * 1000000000000)::bigint AS judge_pico"
    "  FROM lc JOIN j ON j.id = lc.job_id GROUP BY lc.job_id, lc.tier"
    ")"
    " SELECT a.job_id, a.tier, a.model, a.score, a.correct, m.answer_pico, m.judge_pico"
    " FROM a JOIN m USING (job_id, tier) ORDER BY a.job_id, a.tier";

enum { CR_JOB, CR_TIER, CR_MODEL, CR_SCORE, CR_CORRECT, CR_ANSWER_PICO, CR_JUDGE_PICO, CR_NCOLS };

/* Per usable job and tier, row-major [job * ntiers + tier]. */
typedef struct CalData {
    int ntiers;
    long njobs;
    double *score;          /* NAN when the answer was not scored */
    unsigned char *correct; /* 1 when the tier's answer matched expected */
    int64_t *answer_pico;
    int64_t *judge_pico;
    long in_run, with_expected;
} CalData;

static void cal_data_free(CalData *d)
{
    free(d->score);
    free(d->correct);
    free(d->answer_pico);
    free(d->judge_pico);
}

/* What one threshold set does to the run. */
typedef struct Plan {
    bool set;
    long combo;                      /* index in the search; -1 for the configured set */
    double accept[CAL_MAX_TIERS];    /* tiers 0..ntiers-2 */
    long correct;
    int64_t pico;                    /* summed over the jobs */
    long at[CAL_MAX_TIERS];          /* jobs answered at each tier */
} Plan;

typedef struct Outcome {
    long correct;
    int64_t pico;
} Outcome;

static bool passes(double score, double accept)
{
    return !isnan(score) && score + CAL_SCORE_EPS >= accept;
}

/* Replay the cascade with these bars over every job (the model is in calibrate.h). at may be NULL. */
static void replay(const CalData *d, const double *accept, long *correct, int64_t *pico, long *at)
{
    const int n = d->ntiers;
    long right = 0;
    int64_t cost = 0;
    for (long j = 0; j < d->njobs; j++) {
        const size_t base = (size_t)j * (size_t)n;
        int t = 0;
        for (; t + 1 < n; t++) {
            cost += d->answer_pico[base + (size_t)t] + d->judge_pico[base + (size_t)t];
            if (passes(d->score[base + (size_t)t], accept[t]))
                break;
        }
        if (t == n - 1)
            cost += d->answer_pico[base + (size_t)t];
        right += d->correct[base + (size_t)t];
        if (at)
            at[t]++;
    }
    *correct = right;
    *pico = cost;
}

static void plan_eval(const CalData *d, const double *accept, long combo, Plan *p)
{
    memset(p, 0, sizeof *p);
    p->set = true;
    p->combo = combo;
    for (int t = 0; t + 1 < d->ntiers; t++)
        p->accept[t] = accept[t];
    replay(d, accept, &p->correct, &p->pico, p->at);
}

/* Grid value k: k * step, never above 1 (a bar above 1 could not be written to jobs/). */
static double grid_value(long k, double step)
{
    double v = (double)k * step;
    return v > 1.0 ? 1.0 : v;
}

/* Search index -> bars; tier 0 is the most significant digit, so a larger index means higher bars
 * on the earlier tiers. */
static void combo_accept(long combo, int ntiers, long grid, double step, double *accept)
{
    for (int t = ntiers - 2; t >= 0; t--) {
        accept[t] = grid_value(combo % grid, step);
        combo /= grid;
    }
}

/* The cheapest set with at least `need` right answers; ties: more right answers, then the later
 * (higher-bar) set. -1 when none qualifies. */
static long pick_cheapest(const Outcome *r, long n, double need)
{
    long best = -1;
    for (long i = 0; i < n; i++) {
        if ((double)r[i].correct + CAL_COUNT_EPS < need)
            continue;
        if (best < 0 || r[i].pico < r[best].pico ||
            (r[i].pico == r[best].pico && r[i].correct >= r[best].correct))
            best = i;
    }
    return best;
}

/* The most accurate set costing at most max_pico; ties: cheaper, then the later set. */
static long pick_most_accurate(const Outcome *r, long n, int64_t max_pico)
{
    long best = -1;
    for (long i = 0; i < n; i++) {
        if (r[i].pico > max_pico)
            continue;
        if (best < 0 || r[i].correct > r[best].correct ||
            (r[i].correct == r[best].correct && r[i].pico <= r[best].pico))
            best = i;
    }
    return best;
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end)
        return TQ_EDB;
    *out = (int64_t)v;
    return 0;
}

/* Fill d from the rows (sorted by job, tier): a job counts when it has all ntiers tiers. */
static int load_rows(const PGresult *r, const TqConfig *cfg, const TqKind *kd, const CalibrateOptions *o,
                     CalData *d, TqErr *err)
{
    const int n = kd->ntiers;
    const long rows = PQntuples(r);
    const size_t cap = (size_t)(rows / n + 1) * (size_t)n;
    d->ntiers = n;
    d->score = malloc(cap * sizeof *d->score);
    d->correct = malloc(cap * sizeof *d->correct);
    d->answer_pico = malloc(cap * sizeof *d->answer_pico);
    d->judge_pico = malloc(cap * sizeof *d->judge_pico);
    if (!d->score || !d->correct || !d->answer_pico || !d->judge_pico)
        return tq_err(err, TQ_ENOMEM, "calibrate: out of memory");

    long i = 0;
    while (i < rows) {
        const char *job = PQgetvalue(r, (int)i, CR_JOB);
        long end = i;
        while (end < rows && strcmp(PQgetvalue(r, (int)end, CR_JOB), job) == 0)
            end++;
        for (long k = i; k < end; k++) {
            int tier = atoi(PQgetvalue(r, (int)k, CR_TIER));
            if (tier < 1 || tier > n)
                return tq_err(err, TQ_EDB, "calibrate: unexpected tier %d", tier);
            const char *model = PQgetvalue(r, (int)k, CR_MODEL);
            const char *want = cfg->models[kd->tiers[tier - 1].model].name;
            if (strcmp(model, want) != 0)
                return tq_err(err, TQ_EINVAL,
                              "run %s answered tier %d of kind %s with %s, but %s now names %s for that tier; "
                              "calibrate on an all-tiers run made with the current tiers",
                              o->run_name, tier, kd->name, model, kd->file, want);
        }
        if (end - i == n) { /* one row per tier 1..n (the query keeps one answer per tier) */
            size_t base = (size_t)d->njobs * (size_t)n;
            for (int t = 0; t < n; t++) {
                int row = (int)(i + t);
                size_t at = base + (size_t)t;
                d->score[at] = PQgetisnull(r, row, CR_SCORE) ? NAN : strtod(PQgetvalue(r, row, CR_SCORE), NULL);
                d->correct[at] = strcmp(PQgetvalue(r, row, CR_CORRECT), "t") == 0;
                if (parse_i64(PQgetvalue(r, row, CR_ANSWER_PICO), &d->answer_pico[at]) ||
                    parse_i64(PQgetvalue(r, row, CR_JUDGE_PICO), &d->judge_pico[at]))
                    return tq_err(err, TQ_EDB, "calibrate: unexpected cost value");
            }
            d->njobs++;
        }
        i = end;
    }
    return 0;
}

/* Read the run in one read-only snapshot (or the caller's transaction). */
static int load_data(PGconn *c, const TqConfig *cfg, const TqKind *kd, const CalibrateOptions *o, CalData *d,
                     TqErr *err)
{
    char ntiers[16];
    snprintf(ntiers, sizeof ntiers, "%d", kd->ntiers);
    const char *params[] = {o->kind, o->run_name, ntiers};
    PGresult *counts = NULL, *rows = NULL;
    int rc = 0;
    int own_tx = PQtransactionStatus(c) == PQTRANS_IDLE;
    if (own_tx &&
        (rc = db_exec(c, "calibrate begin", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err)))
        goto cleanup;
    if (!(counts = db_query(c, "calibrate counts", SQL_CAL_COUNTS, 2, params, err)) ||
        !(rows = db_query(c, "calibrate rows", SQL_CAL_ROWS, 3, params, err))) {
        rc = TQ_EDB;
        goto cleanup;
    }
    if (own_tx) {
        own_tx = 0;
        if ((rc = db_exec(c, "calibrate commit", "COMMIT", 0, NULL, err)))
            goto cleanup;
    }
    if (PQntuples(counts) != 1 || PQnfields(rows) != CR_NCOLS) {
        rc = tq_err(err, TQ_EDB, "calibrate: unexpected result shape");
        goto cleanup;
    }
    d->in_run = atol(PQgetvalue(counts, 0, 0));
    d->with_expected = atol(PQgetvalue(counts, 0, 1));
    rc = load_rows(rows, cfg, kd, o, d, err);

cleanup:
    if (own_tx)
        PQclear(PQexec(c, "ROLLBACK"));
    PQclear(counts);
    PQclear(rows);
    return rc;
}

/* Output ------------------------------------------------------------------------------------- */


/* A bar as written to jobs/: at least two decimals, at most six, no trailing zeros beyond two
 * ("0.70", "0.85", "1.00", "0.025"). */
static const char *fmt_bar(char *out, size_t cap, double v)
{
    snprintf(out, cap, "%.6f", v);
    size_t len = strlen(out);
    const char *dot = strchr(out, '.');
    size_t min_len = dot ? (size_t)(dot - out) + 3 : len;
    while (len > min_len && out[len - 1] == '0')
        out[--len] = '\0';
    return out;
}

typedef struct Ctx {
    const TqConfig *cfg;
    const TqKind *kd;
    const CalibrateOptions *o;
    const CalData *d;
    long combos;
    double target_acc;
    int64_t last_alone_pico;        /* the last tier's answer cost summed over the jobs */
    long last_correct;
    char slots[CAL_FIXED_SLOTS][CAL_FIXED_LEN];
    int next_slot;
} Ctx;

static const char *tier_model(Ctx *x, int t)
{
    return x->cfg->models[x->kd->tiers[t].model].name;
}

static double share(const Ctx *x, long count)
{
    return (double)count / (double)x->d->njobs;
}

/* num / den rounded half away from zero to `decimals` places, as text in one of the context's
 * slots (valid for the next CAL_FIXED_SLOTS calls). Rounding is done on the exact quotient of the
 * integers so 32.665 prints as 32.67, not as the binary double's 32.66; den > 0, num >= 0. */
static const char *fixed(Ctx *x, long double num, long double den, int decimals) /* decimals 0..12 */
{
    char *out = x->slots[x->next_slot++ % CAL_FIXED_SLOTS];
    long long unit = 1;
    for (int i = 0; i < decimals; i++)
        unit *= 10;
    long long q = (long long)roundl(num * (long double)unit / den);
    long long frac = q % unit;
    int len = snprintf(out, CAL_FIXED_LEN, "%lld", q / unit);
    if (decimals > 0 && len > 0 && len + 1 + decimals < CAL_FIXED_LEN) {
        out[len] = '.';
        for (int i = decimals; i > 0; i--, frac /= 10)
            out[len + i] = (char)('0' + frac % 10);
        out[len + 1 + decimals] = '\0';
    }
    return out;
}

/* USD per job with 9 decimals (whole nano-dollars). */
static const char *usd_per_job(Ctx *x, int64_t pico)
{
    return fixed(x, (long double)pico, (long double)x->d->njobs * CAL_PICO_PER_USD, 9);
}

static const char *pct(Ctx *x, long double num, long double den, int decimals)
{
    return fixed(x, 100.0L * num, den, decimals);
}

static void json_plan(Emit *e, Ctx *x, const Plan *p, bool with_meets)
{
    const int n = x->d->ntiers;
    char bar[32];
    if (!p->set) {
        emit(e, "null");
        return;
    }
    emit(e, "{\"accept\": [");
    for (int t = 0; t + 1 < n; t++)
        emit(e, "%s%s", t ? ", " : "", fmt_bar(bar, sizeof bar, p->accept[t]));
    emit(e, "], \"accuracy\": %s, \"correct\": %ld, \"cost_per_job_usd\": %s, \"cost_pct_of_last_tier\": ",
         fixed(x, p->correct, x->d->njobs, 6), p->correct, usd_per_job(x, p->pico));
    if (x->last_alone_pico > 0)
        emit(e, "%s", pct(x, p->pico, x->last_alone_pico, 2));
    else
        emit(e, "null");
    emit(e, ", \"share_by_tier_pct\": [");
    for (int t = 0; t < n; t++)
        emit(e, "%s%s", t ? ", " : "", pct(x, p->at[t], x->d->njobs, 2));
    emit(e, "], \"tiers\": [");
    for (int t = 0; t < n; t++) {
        emit(e, "%s{\"model\": ", t ? ", " : "");
        emit_json_str(e, tier_model(x, t));
        if (t + 1 < n)
            emit(e, ", \"accept\": %s", fmt_bar(bar, sizeof bar, p->accept[t]));
        emit(e, "}");
    }
    emit(e, "]");
    if (with_meets)
        emit(e, ", \"meets_target\": %s", (double)p->correct + CAL_COUNT_EPS >= x->target_acc * (double)x->d->njobs
                                              ? "true"
                                              : "false");
    emit(e, "}");
}

enum { PLAN_CURRENT, PLAN_RECOMMENDED, PLAN_PLUS, PLAN_MINUS, PLAN_AT_CURRENT_COST, PLAN_COUNT };

static void render_json(Emit *e, Ctx *x, const Plan *plans)
{
    const CalData *d = x->d;
    const int n = d->ntiers;
    char num[32];
    emit(e, "{\"kind\": ");
    emit_json_str(e, x->kd->name);
    emit(e, ", \"run\": ");
    emit_json_str(e, x->o->run_name);
    emit(e, ", \"target_ratio\": %s", fmt_bar(num, sizeof num, x->o->target_ratio));
    emit(e, ", \"step\": %s, \"combinations\": %ld,\n", fmt_bar(num, sizeof num, x->o->step), x->combos);
    emit(e,
         " \"jobs\": {\"in_run\": %ld, \"with_expected\": %ld, \"used\": %ld, \"skipped\": %ld, "
         "\"skipped_no_expected\": %ld, \"skipped_missing_tier\": %ld},\n",
         d->in_run, d->with_expected, d->njobs, d->in_run - d->njobs, d->in_run - d->with_expected,
         d->with_expected - d->njobs);
    emit(e, " \"target_accuracy\": %.6f,\n", x->target_acc);
    emit(e, " \"last_tier\": {\"tier\": %d, \"model\": ", n);
    emit_json_str(e, tier_model(x, n - 1));
    emit(e, ", \"accuracy\": %s, \"cost_per_job_usd\": %s},\n", fixed(x, x->last_correct, d->njobs, 6),
         usd_per_job(x, x->last_alone_pico));
    emit(e, " \"tiers\": [");
    for (int t = 0; t < n; t++) {
        long right = 0;
        int64_t ans = 0, judge = 0;
        for (long j = 0; j < d->njobs; j++) {
            size_t at = (size_t)j * (size_t)n + (size_t)t;
            right += d->correct[at];
            ans += d->answer_pico[at];
            judge += d->judge_pico[at];
        }
        emit(e, "%s\n  {\"tier\": %d, \"model\": ", t ? "," : "", t + 1);
        emit_json_str(e, tier_model(x, t));
        emit(e,
             ", \"accuracy\": %s, \"correct\": %ld, \"answer_cost_per_job_usd\": %s, "
             "\"judge_cost_per_job_usd\": %s}",
             fixed(x, right, d->njobs, 6), right, usd_per_job(x, ans), usd_per_job(x, judge));
    }
    emit(e, "\n ],\n \"current\": ");
    json_plan(e, x, &plans[PLAN_CURRENT], false);
    emit(e, ",\n \"recommended\": ");
    json_plan(e, x, &plans[PLAN_RECOMMENDED], true);
    emit(e, ",\n \"alternatives\": {\"target_plus_1pt\": ");
    json_plan(e, x, &plans[PLAN_PLUS], false);
    emit(e, ",\n  \"target_minus_1pt\": ");
    json_plan(e, x, &plans[PLAN_MINUS], false);
    emit(e, ",\n  \"most_accurate_at_current_cost\": ");
    json_plan(e, x, &plans[PLAN_AT_CURRENT_COST], false);
    emit(e, "}}\n");
}

static void text_plan(Emit *e, Ctx *x, const char *label, const Plan *p, const Plan *rec, int accept_w)
{
    const int n = x->d->ntiers;
    char bars[CAL_MAX_TIERS * 12] = "", bar[32], acc[64];
    if (!p->set) {
        emit(e, "  %-28s (no threshold set qualifies)\n", label);
        return;
    }
    for (int t = 0; t + 1 < n; t++) {
        size_t len = strlen(bars);
        snprintf(bars + len, sizeof bars - len, "%s%s", t ? " " : "", fmt_bar(bar, sizeof bar, p->accept[t]));
    }
    snprintf(acc, sizeof acc, "%s%% (%ld/%ld)", pct(x, p->correct, x->d->njobs, 1), p->correct, x->d->njobs);
    emit(e, "  %-28s %-*s  %-18s %13s", label, accept_w, bars, acc, usd_per_job(x, p->pico));
    if (x->last_alone_pico > 0)
        emit(e, " %8s%%  ", pct(x, p->pico, x->last_alone_pico, 1));
    else
        emit(e, " %9s  ", "-");
    for (int t = 0; t < n; t++)
        emit(e, "%s%s%%", t ? " / " : "", pct(x, p->at[t], x->d->njobs, 1));
    if (p != rec && rec->set && p->combo >= 0 && p->combo == rec->combo)
        emit(e, "  (= recommended)");
    emit(e, "\n");
}

static void render_text(Emit *e, Ctx *x, const Plan *plans)
{
    const CalData *d = x->d;
    const int n = d->ntiers;
    char a[32], b[32];
    emit(e, "tierq calibrate: kind %s, run %s\n", x->kd->name, x->o->run_name);
    emit(e, "jobs: %ld used; %ld skipped (%ld without expected, %ld without an answer from every tier); %ld in the run\n",
         d->njobs, d->in_run - d->njobs, d->in_run - d->with_expected, d->with_expected - d->njobs, d->in_run);
    emit(e, "target: %s x the last tier's accuracy = %.1f%%\n", fmt_bar(a, sizeof a, x->o->target_ratio),
         100.0 * x->target_acc);
    emit(e, "search: accept 0.00 to %s by %s on tiers 1..%d, %ld combinations\n",
         fmt_bar(a, sizeof a, grid_value((long)floor(1.0 / x->o->step + 1e-9), x->o->step)),
         fmt_bar(b, sizeof b, x->o->step), n - 1, x->combos);

    emit(e, "\neach tier alone\n");
    emit(e, "  %4s  %-20s %-18s %15s %15s\n", "tier", "model", "accuracy", "answer_usd/job", "judge_usd/job");
    for (int t = 0; t < n; t++) {
        long right = 0;
        int64_t ans = 0, judge = 0;
        for (long j = 0; j < d->njobs; j++) {
            size_t at = (size_t)j * (size_t)n + (size_t)t;
            right += d->correct[at];
            ans += d->answer_pico[at];
            judge += d->judge_pico[at];
        }
        char acc[64];
        snprintf(acc, sizeof acc, "%s%% (%ld/%ld)", pct(x, right, d->njobs, 1), right, d->njobs);
        emit(e, "  %4d  %-20s %-18s %15s %15s\n", t + 1, tier_model(x, t), acc, usd_per_job(x, ans),
             usd_per_job(x, judge));
    }
    emit(e, "last tier alone: %s, accuracy %s%%, %s usd/job\n", tier_model(x, n - 1),
         pct(x, x->last_correct, d->njobs, 1), usd_per_job(x, x->last_alone_pico));

    int accept_w = 6;
    for (int p = 0; p < PLAN_COUNT; p++) {
        int w = 0;
        for (int t = 0; plans[p].set && t + 1 < n; t++)
            w += (t ? 1 : 0) + (int)strlen(fmt_bar(a, sizeof a, plans[p].accept[t]));
        if (w > accept_w)
            accept_w = w;
    }
    emit(e, "\nthreshold sets\n");
    emit(e, "  %-28s %-*s  %-18s %13s %9s  %s\n", "set", accept_w, "accept", "accuracy", "usd/job", "of last",
         "answered at each tier");
    const Plan *rec = &plans[PLAN_RECOMMENDED];
    text_plan(e, x, "configured (jobs/)", &plans[PLAN_CURRENT], rec, accept_w);
    text_plan(e, x, "recommended", rec, rec, accept_w);
    text_plan(e, x, "target +1pt", &plans[PLAN_PLUS], rec, accept_w);
    text_plan(e, x, "target -1pt", &plans[PLAN_MINUS], rec, accept_w);
    text_plan(e, x, "most accurate, current cost", &plans[PLAN_AT_CURRENT_COST], rec, accept_w);
    if ((double)rec->correct + CAL_COUNT_EPS < x->target_acc * (double)d->njobs)
        emit(e, "note: no threshold set reaches the target; recommended is the most accurate one\n");

    emit(e, "\npaste into %s:\n  \"tiers\": [\n", x->kd->file);
    for (int t = 0; t < n; t++) {
        emit(e, "    {\"model\": ");
        emit_json_str(e, tier_model(x, t));
        if (t + 1 < n)
            emit(e, ", \"accept\": %s},\n", fmt_bar(a, sizeof a, rec->accept[t]));
        else
            emit(e, "}\n");
    }
    emit(e, "  ]\n");
}

/* Entry ---------------------------------------------------------------------------------------- */

int calibrate_run(PGconn *c, const TqConfig *cfg, const CalibrateOptions *o, FILE *out, TqErr *err)
{
    if (!c || !cfg || !o || !out || !o->kind || !o->run_name)
        return tq_err(err, TQ_EINVAL, "calibrate: a kind and a run are required");
    if (!(o->target_ratio > 0 && o->target_ratio <= 2))
        return tq_err(err, TQ_EINVAL, "calibrate: the target ratio must be above 0 and at most 2");
    if (!(o->step >= CALIBRATE_MIN_STEP && o->step <= 0.5))
        return tq_err(err, TQ_EINVAL, "calibrate: the step must be from %.3f to 0.5", CALIBRATE_MIN_STEP);
    const TqKind *kd = config_kind(cfg, o->kind);
    if (!kd)
        return tq_err(err, TQ_EINVAL, "calibrate: unknown kind %s (no such file in %s)", o->kind, cfg->dir);
    if (kd->ntiers < 2 || kd->ntiers > CAL_MAX_TIERS)
        return tq_err(err, TQ_EINVAL, "calibrate: kind %s has %d tier(s); only the bars of 2 to %d tiers can be tuned",
                      o->kind, kd->ntiers, CAL_MAX_TIERS);
    const long grid = (long)floor(1.0 / o->step + 1e-9) + 1;
    long combos = 1;
    for (int t = 0; t + 1 < kd->ntiers; t++) {
        if (combos > CALIBRATE_MAX_COMBINATIONS / grid)
            return tq_err(err, TQ_EINVAL,
                          "calibrate: step %g over %d tiers makes more than %d threshold sets; use a larger step",
                          o->step, kd->ntiers - 1, CALIBRATE_MAX_COMBINATIONS);
        combos *= grid;
    }

    CalData d = {0};
    Outcome *results = NULL;
    Emit e = {.rc = 0};
    buf_init(&e.b, CAL_MAX_BYTES);
    int rc = load_data(c, cfg, kd, o, &d, err);
    if (rc)
        goto cleanup;
    if (d.njobs == 0) {
        rc = tq_err(err, TQ_ENOTFOUND,
                    "run %s has no jobs of kind %s with expected answers from every tier; make one with tierq run "
                    "--all-tiers (the run has %ld jobs of that kind, %ld with expected)",
                    o->run_name, o->kind, d.in_run, d.with_expected);
        goto cleanup;
    }

    Ctx x = {.cfg = cfg, .kd = kd, .o = o, .d = &d, .combos = combos};
    const int n = kd->ntiers;
    for (long j = 0; j < d.njobs; j++) {
        size_t at = (size_t)j * (size_t)n + (size_t)(n - 1);
        x.last_correct += d.correct[at];
        x.last_alone_pico += d.answer_pico[at];
    }
    x.target_acc = o->target_ratio * share(&x, x.last_correct);

    results = malloc((size_t)combos * sizeof *results);
    if (!results) {
        rc = tq_err(err, TQ_ENOMEM, "calibrate: out of memory");
        goto cleanup;
    }
    double accept[CAL_MAX_TIERS] = {0};
    for (long i = 0; i < combos; i++) {
        combo_accept(i, n, grid, o->step, accept);
        replay(&d, accept, &results[i].correct, &results[i].pico, NULL);
    }

    Plan plans[PLAN_COUNT];
    memset(plans, 0, sizeof plans);
    for (int t = 0; t + 1 < n; t++)
        accept[t] = kd->tiers[t].accept;
    plan_eval(&d, accept, -1, &plans[PLAN_CURRENT]);

    const double jobs = (double)d.njobs;
    long pick = pick_cheapest(results, combos, x.target_acc * jobs);
    if (pick < 0)
        pick = pick_most_accurate(results, combos, INT64_MAX);
    combo_accept(pick, n, grid, o->step, accept);
    plan_eval(&d, accept, pick, &plans[PLAN_RECOMMENDED]);
    const long alt[] = {
        [PLAN_PLUS] = pick_cheapest(results, combos, (x.target_acc + 0.01) * jobs),
        [PLAN_MINUS] = pick_cheapest(results, combos, (x.target_acc - 0.01) * jobs),
        [PLAN_AT_CURRENT_COST] = pick_most_accurate(results, combos, plans[PLAN_CURRENT].pico),
    };
    for (int p = PLAN_PLUS; p < PLAN_COUNT; p++) {
        if (alt[p] < 0)
            continue;
        combo_accept(alt[p], n, grid, o->step, accept);
        plan_eval(&d, accept, alt[p], &plans[p]);
    }

    if (o->json)
        render_json(&e, &x, plans);
    else
        render_text(&e, &x, plans);
    if (e.rc) {
        rc = tq_err(err, e.rc, "calibrate: output too large or out of memory");
        goto cleanup;
    }
    if (fwrite(e.b.data, 1, e.b.len, out) != e.b.len || fflush(out) != 0) {
        rc = tq_err(err, TQ_EIO, "calibrate: write failed");
        goto cleanup;
    }

cleanup:
    free(results);
    cal_data_free(&d);
    buf_free(&e.b);
    return rc;
}
