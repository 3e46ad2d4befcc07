#include "calibrate.h"

#include "buf.h"
#include "db.h"
#include "cost.h"
#include "emit.h"
#include "hash.h"
#include "json.h"
#include "kindfile.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAL_MAX_TIERS 8            /* config.c accepts 1 to 8 tiers */
#define CAL_MAX_BYTES (1u << 20)   /* the report is a few dozen lines */
#define CAL_SCORE_EPS 1e-6         /* scores are stored as float4; see calibrate.h */
#define CAL_COUNT_EPS 1e-7         /* counts are integers; absorbs rounding in ratio x count */
#define CAL_PICO_PER_USD 1e12L
#define CAL_FIXED_SLOTS 16
#define CAL_FIXED_LEN 48
#define CAL_DROP (-1.0)            /* a bar meaning: the tier is left out of the plan (or no agree bar) */
/* A plan's bars: accept[t] for tier t, accept[CAL_AGREE + t] its accept_if_agrees (CAL_DROP: none). */
#define CAL_AGREE CAL_MAX_TIERS
#define CAL_SLOTS (2 * CAL_MAX_TIERS)
#define CAL_MAX_KINDS 64
#define CAL_MAX_FILE_BYTES (1u << 20) /* a kind file to rewrite */
#define CAL_Z95 1.959964

/* Margins (accuracy points on the training folds) tried until the held-out accuracy reaches the
 * target; see calibrate.h. */
static const double CAL_MARGINS[] = {0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05};
#define CAL_NMARGINS ((int)(sizeof CAL_MARGINS / sizeof CAL_MARGINS[0]))

void calibrate_default_options(CalibrateOptions *o)
{
    memset(o, 0, sizeof *o);
    o->target_ratio = CALIBRATE_DEFAULT_TARGET_RATIO;
    o->step = CALIBRATE_DEFAULT_STEP;
    o->folds = CALIBRATE_DEFAULT_FOLDS;
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
    "    c.cost_usd / cardinality(c.job_ids) AS cost_share,"
    "    coalesce(c.tokens_out, 0)::numeric / cardinality(c.job_ids) AS out_share"
    "  FROM tierq.calls c CROSS JOIN LATERAL unnest(c.job_ids) AS u(job_id)"
    "  WHERE c.run_name = $2 AND c.kind = $1 AND c.tier BETWEEN 1 AND $3::int"
    "    AND c.purpose IN ('answer', 'judge')"
    "), a AS ("
    "  SELECT DISTINCT ON (lc.job_id, lc.tier) lc.job_id, lc.tier, lc.model, lc.score::float8 AS score,"
    "    coalesce(tierq.normalize_answer(lc.answer) = tierq.normalize_answer(j.expected), false) AS correct,"
    "    hashtextextended(tierq.normalize_answer(lc.answer), 0) AS answer_hash"
    "  FROM lc JOIN j ON j.id = lc.job_id"
    "  WHERE lc.purpose = 'answer' AND lc.status = 'ok' AND lc.answer IS NOT NULL"
    "  ORDER BY lc.job_id, lc.tier, lc.id DESC"
    "), m AS ("
    "  SELECT lc.job_id, lc.tier,"
    "    round(coalesce(sum(lc.cost_share) FILTER (WHERE lc.purpose = 'answer'), 0) * 1000000000000)::bigint AS answer_pico,"
    "    round(coalesce(sum(lc.cost_share) FILTER (WHERE lc.purpose = 'judge'), 0) * 1000000000000)::bigint AS judge_pico,"
    "    round(coalesce(sum(lc.out_share) FILTER (WHERE lc.purpose = 'answer'), 0))::bigint AS out_tokens"
    "  FROM lc JOIN j ON j.id = lc.job_id GROUP BY lc.job_id, lc.tier"
    ")"
    " SELECT a.job_id, a.tier, a.model, a.score, a.correct, m.answer_pico, m.judge_pico, m.out_tokens, a.answer_hash"
    " FROM a JOIN m USING (job_id, tier) ORDER BY a.job_id, a.tier";

/* How batching shrinks a kind's input, from its batched answer calls in the ledger (last 30 days):
 * a batch of b jobs sends the system prompt once, so its input is about S + b P (S the system
 * prompt's tokens, P an item's) where b jobs alone send b (S + P0). Fitted over the calls: S and P
 * by least squares on (b, tokens_in), S + P0 as solo tokens per job; the largest batch seen; the
 * number of calls; how many batch sizes (a fit needs two). $1 kind. */
static const char *const SQL_CAL_BATCH =
    "SELECT coalesce(regr_intercept(tokens_in, cardinality(job_ids)), 0)::float8,"
    "       coalesce(regr_slope(tokens_in, cardinality(job_ids)), 0)::float8,"
    "       coalesce(sum(solo_tokens_in)::float8 / nullif(sum(cardinality(job_ids)), 0), 0),"
    "       coalesce(sum(tokens_in)::float8 / nullif(sum(solo_tokens_in), 0), 1),"
    "       coalesce(max(cardinality(job_ids)), 1), count(*), count(DISTINCT cardinality(job_ids))"
    " FROM tierq.calls"
    " WHERE kind = $1 AND purpose = 'answer' AND status = 'ok' AND cardinality(job_ids) > 1"
    "   AND solo_tokens_in > 0 AND tokens_in > 0 AND created_at > now() - interval '30 days'";

enum { CR_JOB, CR_TIER, CR_MODEL, CR_SCORE, CR_CORRECT, CR_ANSWER_PICO, CR_JUDGE_PICO, CR_OUT_TOKENS, CR_HASH, CR_NCOLS };

/* Per usable job and tier, row-major [job * ntiers + tier]. */
typedef struct CalData {
    int ntiers;
    long njobs;
    double *score;          /* NAN when the answer was not scored */
    unsigned char *correct; /* 1 when the tier's answer matched expected */
    int64_t *answer_pico;
    int64_t *judge_pico;
    uint64_t *job_hash;     /* per job: a mix of its id, which picks its cross-validation fold */
    long in_run, with_expected;
    int64_t *out_pico;      /* the output part of answer_pico (batching leaves it as it is) */
    int64_t *answer_hash;   /* a hash of the normalised answer: do two tiers agree? */
    /* batching (an all-tiers run sends every job alone): see batch_factor */
    bool batched;           /* the kind batches and the ledger has batched calls of it */
    bool batch_fitted;      /* sys/item fitted from two or more batch sizes; else batch_ratio */
    double batch_sys, batch_item, batch_solo; /* S, P, S + P0 in tokens */
    double batch_ratio;     /* input tokens batched / alone over the calls seen */
    int batch_size;         /* the largest batch seen: what the first tier asked gets */
    long batch_calls;
    int model[CAL_MAX_TIERS];      /* per calibration tier: its model (index in cfg->models) */
    double current[CAL_SLOTS];     /* the configured plan: bars (CAL_DROP if not configured) and agree bars */
} CalData;

static void cal_data_free(CalData *d)
{
    free(d->score);
    free(d->correct);
    free(d->answer_pico);
    free(d->judge_pico);
    free(d->job_hash);
    free(d->out_pico);
    free(d->answer_hash);
}

/* What one threshold set does to the run. */
typedef struct Plan {
    bool set;
    long combo;                      /* index in the search; -1 for the configured set */
    double accept[CAL_SLOTS];        /* tiers 0..ntiers-2, and their agree bars (CAL_AGREE + t) */
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

/* Replay the cascade with these bars over every job. A bar of CAL_DROP leaves its tier out: never
 * asked, never paid. With folds > 0, per_fold[f] gets the jobs of fold f (job_hash mod folds: a
 * hash, so an order in the data — jobs inserted sorted by label — cannot line up with the folds).
 * at may be NULL. */
/* The share of a tier's input a batch of b jobs pays against the same jobs sent alone. */
static double batch_factor(const CalData *d, double b)
{
    if (!d->batched)
        return 1;
    if (!d->batch_fitted)
        return d->batch_ratio;
    if (b < 1)
        b = 1;
    double f = (d->batch_sys / b + d->batch_item) / d->batch_solo;
    return f < 0.01 ? 0.01 : f > 1 ? 1 : f;
}

static int replay_job(const CalData *d, const double *accept, const double *factor, long j, int64_t *cost);

/* Per tier, the share of its input cost the plan pays: batches at a tier hold the jobs a first-tier
 * batch sent up (the engine sends a batch's escalated items on together), so the first tier asked
 * gets full batches and a tier reached by a fraction r of the jobs batches of r x that. */
static void plan_factors(const CalData *d, const double *accept, double *factor)
{
    const int n = d->ntiers;
    long asked[CAL_MAX_TIERS] = {0};
    for (long j = 0; d->batched && j < d->njobs; j++) {
        int64_t unused;
        int answered = replay_job(d, accept, NULL, j, &unused);
        for (int t = 0; t <= answered; t++)
            asked[t] += t == n - 1 || accept[t] != CAL_DROP;
    }
    for (int t = 0; t < n; t++)
        factor[t] = d->batched && d->njobs > 0
                        ? batch_factor(d, (double)d->batch_size * (double)asked[t] / (double)d->njobs)
                        : 1;
}

/* One tier's answer cost for job slot at, its input scaled by the plan's batching factor. */
static int64_t answer_cost(const CalData *d, size_t at, double factor)
{
    if (factor >= 1)
        return d->answer_pico[at];
    int64_t in = d->answer_pico[at] - d->out_pico[at];
    return d->out_pico[at] + (int64_t)llround((double)in * factor);
}

/* One job through the cascade: the tier that answers it (0-based), what it cost. An answer passes
 * its tier's bar, or its lower agree bar when it agrees with the best earlier answer (the highest
 * scored, as the engine keeps it; unscored answers are not kept). factor NULL: costs not wanted. */
static int replay_job(const CalData *d, const double *accept, const double *factor, long j, int64_t *cost)
{
    const int n = d->ntiers;
    const size_t base = (size_t)j * (size_t)n;
    int64_t job_cost = 0;
    bool have_best = false;
    double best_score = 0;
    int64_t best_hash = 0;
    int t = 0;
    for (; t + 1 < n; t++) {
        if (accept[t] == CAL_DROP)
            continue;
        const size_t at = base + (size_t)t;
        if (factor)
            job_cost += answer_cost(d, at, factor[t]) + d->judge_pico[at];
        if (passes(d->score[at], accept[t]) ||
            (accept[CAL_AGREE + t] != CAL_DROP && have_best && best_hash == d->answer_hash[at] &&
             passes(d->score[at], accept[CAL_AGREE + t])))
            break;
        if (!isnan(d->score[at]) && (!have_best || d->score[at] > best_score)) {
            have_best = true;
            best_score = d->score[at];
            best_hash = d->answer_hash[at];
        }
    }
    if (t == n - 1 && factor)
        job_cost += answer_cost(d, base + (size_t)t, factor[t]);
    *cost = job_cost;
    return t;
}

static void replay_folds(const CalData *d, const double *accept, int folds, Outcome *per_fold, long *correct,
                         int64_t *pico, long *at)
{
    const int n = d->ntiers;
    long right = 0;
    int64_t cost = 0;
    double factor[CAL_MAX_TIERS];
    plan_factors(d, accept, factor);
    for (long j = 0; j < d->njobs; j++) {
        const size_t base = (size_t)j * (size_t)n;
        int64_t job_cost;
        int t = replay_job(d, accept, factor, j, &job_cost);
        right += d->correct[base + (size_t)t];
        cost += job_cost;
        if (folds > 0) {
            Outcome *f = &per_fold[d->job_hash[j] % (uint64_t)folds];
            f->correct += d->correct[base + (size_t)t];
            f->pico += job_cost;
        }
        if (at)
            at[t]++;
    }
    *correct = right;
    *pico = cost;
}

static void replay(const CalData *d, const double *accept, long *correct, int64_t *pico, long *at)
{
    replay_folds(d, accept, 0, NULL, correct, pico, at);
}

static void plan_eval(const CalData *d, const double *accept, long combo, Plan *p)
{
    memset(p, 0, sizeof *p);
    p->set = true;
    p->combo = combo;
    for (int t = 0; t + 1 < d->ntiers; t++) {
        p->accept[t] = accept[t];
        p->accept[CAL_AGREE + t] = accept[CAL_AGREE + t];
    }
    replay(d, accept, &p->correct, &p->pico, p->at);
}

/* Grid value k: k * step, never above 1 (a bar above 1 could not be written to jobs/). */
static double grid_value(long k, double step)
{
    double v = (double)k * step;
    return v > 1.0 ? 1.0 : v;
}

/* Search index -> bars; tier 0 is the most significant digit, so a larger index means higher bars
 * on the earlier tiers. Each digit runs 0..grid: grid steps of bars, then CAL_DROP (the tier left
 * out), so the last index drops every tier but the last: the last tier alone. */
static void combo_accept(long combo, int ntiers, int agree, long grid, double step, double *accept)
{
    /* agree bars, the least significant digits, for tiers 1..ntiers-2 when the search has them (the
     * last digit value: none, so the last index is still the last tier alone) */
    for (int t = 0; t < CAL_MAX_TIERS; t++)
        accept[CAL_AGREE + t] = CAL_DROP;
    for (int t = ntiers - 2; agree && t >= 1; t--) {
        long v = combo % (grid + 1);
        accept[CAL_AGREE + t] = v == grid ? CAL_DROP : grid_value(v, step);
        combo /= grid + 1;
    }
    for (int t = ntiers - 2; t >= 0; t--) {
        long v = combo % (grid + 1);
        accept[t] = v == grid ? CAL_DROP : grid_value(v, step);
        combo /= grid + 1;
    }
    /* an agree bar acts only below the tier's own bar and after a tier that was asked: elsewhere it
     * is none (what the kind file could not hold either) */
    bool earlier = false;
    for (int t = 0; t + 1 < ntiers; t++) {
        if (!earlier || accept[t] == CAL_DROP || !(accept[CAL_AGREE + t] < accept[t]))
            accept[CAL_AGREE + t] = CAL_DROP;
        earlier |= accept[t] != CAL_DROP;
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

/* The tiers to calibrate: the run's tiers up to the one answering the kind's last configured tier,
 * matched by model in order. The configured tiers must be the run's or a subsequence of them; a run
 * tier the kind no longer names (one calibrate dropped) is a candidate again, configured as dropped,
 * so calibrating the written plan on the run that chose it searches the same plans and changes
 * nothing. Fills d->ntiers, d->model, d->current and run_tier (1-based, per calibration tier). */
static int calibration_tiers(const PGresult *r, const TqConfig *cfg, const TqKind *kd, const CalibrateOptions *o,
                             CalData *d, int *run_tier, TqErr *err)
{
    const char *run_model[CAL_MAX_TIERS + 1] = {0};
    int top = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int tier = atoi(PQgetvalue(r, i, CR_TIER));
        if (tier < 1 || tier > CAL_MAX_TIERS)
            return tq_err(err, TQ_EDB, "calibrate: unexpected tier %d", tier);
        if (!run_model[tier])
            run_model[tier] = PQgetvalue(r, i, CR_MODEL);
        if (tier > top)
            top = tier;
    }
    int of_config[CAL_MAX_TIERS]; /* configured tier t -> run tier */
    int next = 1;
    for (int t = 0; t < kd->ntiers; t++) {
        const char *want = cfg->models[kd->tiers[t].model].name;
        while (next <= top && !(run_model[next] && strcmp(run_model[next], want) == 0))
            next++;
        if (next > top) {
            const char *got = t + 1 <= top && run_model[t + 1] ? run_model[t + 1] : NULL;
            if (got)
                return tq_err(err, TQ_EINVAL,
                              "run %s answered tier %d of kind %s with %s, but %s now names %s for that tier; "
                              "calibrate on an all-tiers run made with the current tiers (or a subset of them)",
                              o->run_name, t + 1, kd->name, got, kd->file, want);
            top = 0; /* the run lacks it: no job has every tier, reported as such */
            break;
        }
        of_config[t] = next++;
    }
    d->ntiers = 0;
    for (int t = 0; t < CAL_SLOTS; t++)
        d->current[t] = CAL_DROP;
    if (top == 0) { /* nothing of this kind in the run: the configured tiers, for the counts */
        for (int t = 0; t < kd->ntiers; t++) {
            d->model[t] = kd->tiers[t].model;
            d->current[t] = t + 1 < kd->ntiers ? kd->tiers[t].accept : 0;
            run_tier[t] = t + 1;
        }
        d->ntiers = kd->ntiers;
        return 0;
    }
    for (int rt = 1, t = 0; rt <= of_config[kd->ntiers - 1]; rt++) {
        if (!run_model[rt])
            continue;
        int m = config_model_index(cfg, run_model[rt]);
        bool configured = t < kd->ntiers && of_config[t] == rt;
        if (m < 0) {
            if (configured)
                return tq_err(err, TQ_EINVAL, "calibrate: model %s is not defined", run_model[rt]);
            continue; /* a dropped tier whose model is gone: not a candidate */
        }
        int i = d->ntiers++;
        d->model[i] = m;
        d->current[i] = configured ? (t + 1 < kd->ntiers ? kd->tiers[t].accept : 0) : CAL_DROP;
        if (configured && !isnan(kd->tiers[t].accept_if_agrees))
            d->current[CAL_AGREE + i] = kd->tiers[t].accept_if_agrees;
        run_tier[i] = rt;
        if (configured)
            t++;
    }
    return 0;
}

/* Fill d from the rows (sorted by job, tier): a job counts when it has an answer from the run tier of
 * every configured tier; the run's other tiers are left out (never asked, never paid). */
static int load_rows(const PGresult *r, const TqConfig *cfg, const TqKind *kd, const CalibrateOptions *o,
                     CalData *d, TqErr *err)
{
    const long rows = PQntuples(r);
    int run_tier[CAL_MAX_TIERS];
    int rc = calibration_tiers(r, cfg, kd, o, d, run_tier, err);
    if (rc)
        return rc;
    const int n = d->ntiers;
    const size_t cap = (size_t)(rows / n + 1) * (size_t)n;
    d->score = malloc(cap * sizeof *d->score);
    d->correct = malloc(cap * sizeof *d->correct);
    d->answer_pico = malloc(cap * sizeof *d->answer_pico);
    d->judge_pico = malloc(cap * sizeof *d->judge_pico);
    d->job_hash = malloc((size_t)(rows / n + 1) * sizeof *d->job_hash);
    d->out_pico = malloc(cap * sizeof *d->out_pico);
    d->answer_hash = malloc(cap * sizeof *d->answer_hash);
    if (!d->score || !d->correct || !d->answer_pico || !d->judge_pico || !d->job_hash || !d->out_pico ||
        !d->answer_hash)
        return tq_err(err, TQ_ENOMEM, "calibrate: out of memory");

    long i = 0;
    while (i < rows) {
        const char *job = PQgetvalue(r, (int)i, CR_JOB);
        long end = i;
        while (end < rows && strcmp(PQgetvalue(r, (int)end, CR_JOB), job) == 0)
            end++;
        int row_of[CAL_MAX_TIERS], found = 0;
        for (int t = 0; t < n; t++) {
            row_of[t] = -1;
            for (long k = i; k < end; k++) /* one row per tier (the query keeps one answer per tier) */
                if (atoi(PQgetvalue(r, (int)k, CR_TIER)) == run_tier[t] &&
                    strcmp(PQgetvalue(r, (int)k, CR_MODEL), cfg->models[d->model[t]].name) == 0)
                    row_of[t] = (int)k;
            found += row_of[t] >= 0;
        }
        if (found == n) {
            size_t base = (size_t)d->njobs * (size_t)n;
            for (int t = 0; t < n; t++) {
                int row = row_of[t];
                size_t at = base + (size_t)t;
                d->score[at] = PQgetisnull(r, row, CR_SCORE) ? NAN : strtod(PQgetvalue(r, row, CR_SCORE), NULL);
                d->correct[at] = strcmp(PQgetvalue(r, row, CR_CORRECT), "t") == 0;
                int64_t out_tokens = 0;
                if (parse_i64(PQgetvalue(r, row, CR_HASH), &d->answer_hash[at]) ||
                    parse_i64(PQgetvalue(r, row, CR_ANSWER_PICO), &d->answer_pico[at]) ||
                    parse_i64(PQgetvalue(r, row, CR_JUDGE_PICO), &d->judge_pico[at]) ||
                    parse_i64(PQgetvalue(r, row, CR_OUT_TOKENS), &out_tokens))
                    return tq_err(err, TQ_EDB, "calibrate: unexpected cost value");
                /* micro-USD per Mtok is picodollars per token */
                int64_t out = cost_of_call(&cfg->models[d->model[t]].prices, 0, 0, out_tokens);
                d->out_pico[at] = out < d->answer_pico[at] ? out : d->answer_pico[at];
            }
            uint64_t state = strtoull(job, NULL, 10);
            d->job_hash[d->njobs] = hash_splitmix64(&state);
            d->njobs++;
        }
        i = end;
    }
    return 0;
}

/* Read one kind of the run (the caller holds the snapshot). */
static int load_data(PGconn *c, const TqConfig *cfg, const TqKind *kd, const CalibrateOptions *o, CalData *d,
                     TqErr *err)
{
    char ntiers[16];
    snprintf(ntiers, sizeof ntiers, "%d", CAL_MAX_TIERS); /* every tier of the run: see map_tiers */
    const char *params[] = {kd->name, o->run_name, ntiers};
    PGresult *counts = NULL, *rows = NULL, *batch = NULL;
    int rc = 0;
    if (!(counts = db_query(c, "calibrate counts", SQL_CAL_COUNTS, 2, params, err)) ||
        !(rows = db_query(c, "calibrate rows", SQL_CAL_ROWS, 3, params, err))) {
        rc = TQ_EDB;
        goto cleanup;
    }
    if (PQntuples(counts) != 1 || PQnfields(rows) != CR_NCOLS) {
        rc = tq_err(err, TQ_EDB, "calibrate: unexpected result shape");
        goto cleanup;
    }
    d->in_run = atol(PQgetvalue(counts, 0, 0));
    d->with_expected = atol(PQgetvalue(counts, 0, 1));
    if ((rc = load_rows(rows, cfg, kd, o, d, err)))
        goto cleanup;
    if (kd->batch.enabled) {
        if (!(batch = db_query(c, "calibrate batch costs", SQL_CAL_BATCH, 1, params, err))) {
            rc = TQ_EDB;
            goto cleanup;
        }
        if (PQntuples(batch) == 1 && atol(PQgetvalue(batch, 0, 5)) > 0) {
            d->batch_sys = strtod(PQgetvalue(batch, 0, 0), NULL);
            d->batch_item = strtod(PQgetvalue(batch, 0, 1), NULL);
            d->batch_solo = strtod(PQgetvalue(batch, 0, 2), NULL);
            d->batch_ratio = strtod(PQgetvalue(batch, 0, 3), NULL);
            d->batch_size = atoi(PQgetvalue(batch, 0, 4));
            d->batch_calls = atol(PQgetvalue(batch, 0, 5));
            d->batched = d->batch_size > 1 && d->batch_ratio > 0 && d->batch_ratio <= 1;
            d->batch_fitted = atol(PQgetvalue(batch, 0, 6)) >= 2 && d->batch_sys >= 0 && d->batch_item > 0 &&
                              d->batch_solo > 0;
        }
    }

cleanup:
    PQclear(counts);
    PQclear(rows);
    PQclear(batch);
    return rc;
}

/* Search ---------------------------------------------------------------------------------------- */

/* The held-out prediction: k-fold cross-validation of the whole choice (margin included). */
typedef struct HeldOut {
    int folds;            /* 0: too few jobs to hold any out */
    double margin;        /* accuracy added to the target on the training folds */
    long correct;         /* predicted for the chosen set: its in-sample outcome less the optimism */
    int64_t pico;
    /* 95% prediction intervals for a new run of as many jobs: what it will measure, not only where
     * the mean lies, so both this sample's error and the new run's count (twice the variance of a
     * mean of n). Accuracy: p +- 1.96 sqrt(2 p(1-p) / n); cost per job: mean +- 1.96 sqrt(2 v / n),
     * v the variance of one held-out job's cost — wide when a few escalations to a dear tier carry
     * most of the cost, as they do. */
    long cv_correct;      /* the procedure's held-out outcome, every job predicted once */
    int64_t cv_pico;
    double opt_correct, opt_pico; /* optimism of choosing: in-sample minus held-out, summed */
    double acc_var, cost_var;   /* variances of (new run - prediction), accuracy and USD per job */
    double acc_low, acc_high;
    double cost_low, cost_high;
    bool meets;           /* held-out accuracy reaches the target */
} HeldOut;

/* One kind's analysis. */
typedef struct KindCal {
    const TqKind *kd;
    CalData d;
    long combos, grid;
    double target_acc;
    int64_t last_alone_pico; /* the last tier's answer cost summed over the jobs */
    long last_correct;
    Outcome *all;            /* per combination, over every job */
    Outcome *fold;           /* [i * folds + f]: combination i over fold f */
    int agree;               /* the search includes agree bars (tiers 2..n-1 of n >= 3) */
    bool compared;           /* both rules were searched: rule_* hold their held-out figures */
    HeldOut rule_thresholds, rule_agreement;
    HeldOut ho;
    long pick;
} KindCal;

static void kind_cal_free(KindCal *k)
{
    cal_data_free(&k->d);
    free(k->all);
    free(k->fold);
}

/* The target as a count of right answers among jobs with last_correct right on the last tier. */
static double target_count(const CalibrateOptions *o, long jobs, long last_correct, double margin)
{
    double acc = o->target_accuracy > 0 ? o->target_accuracy : o->target_ratio * (double)last_correct / (double)jobs;
    return (acc + margin) * (double)jobs;
}

/* The choice, on one set of outcomes: the cheapest set reaching the target; when none does, the
 * most accurate one costing no more than the last tier alone; and never a set dearer than the last
 * tier alone (the last index). */
static long choose(const Outcome *r, long combos, double need)
{
    const long alone = combos - 1;
    long best = pick_cheapest(r, combos, need);
    if (best < 0)
        best = pick_most_accurate(r, combos, r[alone].pico);
    if (best < 0 || r[best].pico > r[alone].pico)
        best = alone;
    return best;
}

/* Cross-validate the choice with this margin: each fold is predicted by the set chosen on the
 * others. h gets the procedure's held-out outcome (cv_correct, cv_pico) and its optimism: how much
 * better each fold's chosen set did on the folds that chose it than on the fold it predicts, summed
 * over folds in jobs and picodollars. train is scratch of combos entries. */
static void cross_validate(const KindCal *k, const CalibrateOptions *o, double margin, Outcome *train, HeldOut *h)
{
    const CalData *d = &k->d;
    const int folds = o->folds;
    const int n = d->ntiers;
    memset(h, 0, sizeof *h);
    h->folds = folds;
    h->margin = margin;
    for (int f = 0; f < folds; f++) {
        long in_fold = 0, last_in_fold = 0;
        for (long j = 0; j < d->njobs; j++)
            if (d->job_hash[j] % (uint64_t)folds == (uint64_t)f) {
                in_fold++;
                last_in_fold += d->correct[(size_t)j * (size_t)n + (size_t)(n - 1)];
            }
        for (long i = 0; i < k->combos; i++) {
            const Outcome *held = &k->fold[(size_t)i * (size_t)folds + (size_t)f];
            train[i].correct = k->all[i].correct - held->correct;
            train[i].pico = k->all[i].pico - held->pico;
        }
        long ntrain = d->njobs - in_fold;
        if (ntrain <= 0 || in_fold == 0)
            continue;
        long pick = choose(train, k->combos, target_count(o, ntrain, k->last_correct - last_in_fold, margin));
        const Outcome *got = &k->fold[(size_t)pick * (size_t)folds + (size_t)f];
        const double scale = (double)in_fold / (double)ntrain;
        h->cv_correct += got->correct;
        h->cv_pico += got->pico;
        h->opt_correct += (double)train[pick].correct * scale - (double)got->correct;
        h->opt_pico += (double)train[pick].pico * scale - (double)got->pico;
    }
    h->meets = (double)h->cv_correct + CAL_COUNT_EPS >= target_count(o, d->njobs, k->last_correct, 0);
}

/* The prediction for the chosen set: its outcome on every labelled job less the optimism of
 * choosing (cross-validated), with 95% intervals for a new run of as many jobs. */
static void predict(KindCal *k, const CalibrateOptions *o)
{
    const CalData *d = &k->d;
    HeldOut *h = &k->ho;
    const double nj = (double)d->njobs;
    /* the last tier alone has no bar to fit: what it did on these jobs is what it does */
    const bool fitted = k->pick != k->combos - 1;
    double correct = (double)k->all[k->pick].correct - (fitted ? h->opt_correct : 0);
    double pico = (double)k->all[k->pick].pico - (fitted ? h->opt_pico : 0);
    h->correct = correct < 0 ? 0 : correct > nj ? d->njobs : (long)llround(correct);
    h->pico = pico < 0 ? 0 : (int64_t)llround(pico);
    const double p = (double)h->correct / nj;
    h->acc_var = p * (1 - p) * 2 / nj;
    h->acc_low = fmax(0, p - CAL_Z95 * sqrt(h->acc_var));
    h->acc_high = fmin(1, p + CAL_Z95 * sqrt(h->acc_var));
    /* the spread of one job's cost under the chosen set */
    double accept[CAL_SLOTS] = {0}, factor[CAL_MAX_TIERS], sum = 0, sum_sq = 0;
    combo_accept(k->pick, d->ntiers, k->agree, k->grid, o->step, accept);
    plan_factors(d, accept, factor);
    for (long j = 0; j < d->njobs; j++) {
        int64_t c;
        replay_job(d, accept, factor, j, &c);
        sum += (double)c / 1e12;
        sum_sq += ((double)c / 1e12) * ((double)c / 1e12);
    }
    const double var = nj > 1 ? (sum_sq - sum * sum / nj) / (nj - 1) : 0;
    const double mean = (double)h->pico / 1e12 / nj;
    h->cost_var = (var > 0 ? var : 0) * 2 / nj;
    h->cost_low = fmax(0, mean - CAL_Z95 * sqrt(h->cost_var));
    h->cost_high = mean + CAL_Z95 * sqrt(h->cost_var);
    h->meets = (double)h->correct + CAL_COUNT_EPS >= target_count(o, d->njobs, k->last_correct, 0);
}

/* Search one kind: every combination over every job and every fold, the margin, the choice. */
static int search_kind(KindCal *k, const CalibrateOptions *o, TqErr *err)
{
    const CalData *d = &k->d;
    const int n = d->ntiers;
    const int folds = d->njobs >= CALIBRATE_MIN_HELD_OUT_JOBS ? o->folds : 0;
    k->all = calloc((size_t)k->combos, sizeof *k->all);
    k->fold = folds ? calloc((size_t)k->combos * (size_t)folds, sizeof *k->fold) : NULL;
    Outcome *train = folds ? malloc((size_t)k->combos * sizeof *train) : NULL;
    if (!k->all || (folds && (!k->fold || !train))) {
        free(train);
        return tq_err(err, TQ_ENOMEM, "calibrate: out of memory");
    }
    double accept[CAL_SLOTS] = {0};
    for (long i = 0; i < k->combos; i++) {
        combo_accept(i, n, k->agree, k->grid, o->step, accept);
        replay_folds(d, accept, folds, folds ? &k->fold[(size_t)i * (size_t)folds] : NULL, &k->all[i].correct,
                     &k->all[i].pico, NULL);
    }
    double margin = 0;
    if (folds) {
        /* the smallest margin whose held-out accuracy reaches the target; if none does, the one
         * that comes closest (the larger margins only cost more) */
        HeldOut best = {0};
        CalibrateOptions fo = *o;
        fo.folds = folds;
        for (int m = 0; m < CAL_NMARGINS; m++) {
            HeldOut h;
            cross_validate(k, &fo, CAL_MARGINS[m], train, &h);
            /* judged as it will be promised: the plan this margin picks on every job, less the
             * optimism of choosing (see predict) — not the folds' own plans */
            long pick = choose(k->all, k->combos, target_count(o, d->njobs, k->last_correct, CAL_MARGINS[m]));
            double promised = (double)llround((double)k->all[pick].correct - (pick != k->combos - 1 ? h.opt_correct : 0));
            h.meets = promised + CAL_COUNT_EPS >= target_count(o, d->njobs, k->last_correct, 0);
            if (m == 0 || h.cv_correct > best.cv_correct)
                best = h;
            if (h.meets) {
                best = h;
                break;
            }
        }
        k->ho = best;
        margin = best.margin;
    }
    free(train);
    k->pick = choose(k->all, k->combos, target_count(o, d->njobs, k->last_correct, margin));
    if (folds)
        predict(k, o);
    return 0;
}

/* The stronger rule, measured: a later tier's answer may pass a lower bar when it agrees with the best
 * earlier answer (tiers.accept_if_agrees). Searched with the bars (one more digit per middle tier),
 * cross-validated the same way, and kept only if it wins on held-out data: it reaches the target
 * there and costs less than thresholds alone. Needs three tiers, held-out data and a search within
 * CALIBRATE_MAX_COMBINATIONS. */
static int compare_rules(KindCal *k, const CalibrateOptions *o, TqErr *err)
{
    const int n = k->d.ntiers;
    if (o->thresholds_only || !k->ho.folds || n < 3)
        return 0;
    long combos = k->combos;
    for (int t = 1; t + 1 < n; t++) {
        if (combos > CALIBRATE_MAX_COMBINATIONS / (k->grid + 1))
            return 0;
        combos *= k->grid + 1;
    }
    KindCal alt = *k; /* the same data; its own search */
    alt.all = NULL;
    alt.fold = NULL;
    alt.agree = 1;
    alt.combos = combos;
    int rc = search_kind(&alt, o, err);
    if (rc) {
        free(alt.all);
        free(alt.fold);
        return rc;
    }
    k->compared = true;
    k->rule_thresholds = k->ho;
    k->rule_agreement = alt.ho;
    if (alt.ho.meets && (!k->ho.meets || alt.ho.pico < k->ho.pico)) {
        free(k->all);
        free(k->fold);
        k->all = alt.all;
        k->fold = alt.fold;
        k->combos = alt.combos;
        k->agree = 1;
        k->pick = alt.pick;
        k->ho = alt.ho;
    } else {
        free(alt.all);
        free(alt.fold);
    }
    return 0;
}

/* Output ------------------------------------------------------------------------------------- */

static const char *fmt_bar(char *out, size_t cap, double v)
{
    if (v == CAL_DROP) {
        snprintf(out, cap, "drop");
        return out;
    }
    return kindfile_fmt_bar(out, cap, v);
}

typedef struct Ctx {
    const TqConfig *cfg;
    const TqKind *kd;
    const CalibrateOptions *o;
    const CalData *d;
    const KindCal *k;
    long combos;
    double target_acc;
    int64_t last_alone_pico;        /* the last tier's answer cost summed over the jobs */
    long last_correct;
    char slots[CAL_FIXED_SLOTS][CAL_FIXED_LEN];
    int next_slot;
} Ctx;

static const char *tier_model(Ctx *x, int t)
{
    return x->cfg->models[x->d->model[t]].name;
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
        emit(e, "%s%s", t ? ", " : "", p->accept[t] == CAL_DROP ? "null" : fmt_bar(bar, sizeof bar, p->accept[t]));
    emit(e, "], \"accept_if_agrees\": [");
    for (int t = 0; t + 1 < n; t++)
        emit(e, "%s%s", t ? ", " : "",
             p->accept[t] == CAL_DROP || p->accept[CAL_AGREE + t] == CAL_DROP
                 ? "null"
                 : fmt_bar(bar, sizeof bar, p->accept[CAL_AGREE + t]));
    emit(e, "], \"accuracy\": %s, \"correct\": %ld, \"cost_per_job_usd\": %s, \"cost_pct_of_last_tier\": ",
         fixed(x, p->correct, x->d->njobs, 6), p->correct, usd_per_job(x, p->pico));
    if (x->last_alone_pico > 0)
        emit(e, "%s", pct(x, p->pico, x->last_alone_pico, 2));
    else
        emit(e, "null");
    emit(e, ", \"share_by_tier_pct\": [");
    for (int t = 0; t < n; t++)
        emit(e, "%s%s", t ? ", " : "", pct(x, p->at[t], x->d->njobs, 2));
    emit(e, "], \"dropped_tiers\": [");
    for (int t = 0, k = 0; t + 1 < n; t++)
        if (p->accept[t] == CAL_DROP)
            emit(e, "%s%d", k++ ? ", " : "", t + 1);
    emit(e, "], \"tiers\": [");
    for (int t = 0, k = 0; t < n; t++) {
        if (t + 1 < n && p->accept[t] == CAL_DROP)
            continue;
        emit(e, "%s{\"model\": ", k++ ? ", " : "");
        emit_json_str(e, tier_model(x, t));
        if (t + 1 < n)
            emit(e, ", \"accept\": %s", fmt_bar(bar, sizeof bar, p->accept[t]));
        if (t + 1 < n && p->accept[CAL_AGREE + t] != CAL_DROP)
            emit(e, ", \"accept_if_agrees\": %s", fmt_bar(bar, sizeof bar, p->accept[CAL_AGREE + t]));
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

static void json_held_out(Emit *e, Ctx *x)
{
    const HeldOut *h = &x->k->ho;
    if (!h->folds) {
        emit(e, "null");
        return;
    }
    emit(e, "{\"folds\": %d, \"margin_pts\": %.2f, \"accuracy\": %s, \"accuracy_low\": %.6f, \"accuracy_high\": %.6f,",
         h->folds, 100 * h->margin, fixed(x, h->correct, x->d->njobs, 6), h->acc_low, h->acc_high);
    emit(e, " \"ratio_to_last_tier\": ");
    if (x->last_correct > 0)
        emit(e, "%s", fixed(x, h->correct, x->last_correct, 4));
    else
        emit(e, "null");
    emit(e, ", \"cost_per_job_usd\": %s, \"cost_low_usd\": %.9f, \"cost_high_usd\": %.9f, \"cost_pct_of_last_tier\": ",
         usd_per_job(x, h->pico), h->cost_low, h->cost_high);
    if (x->last_alone_pico > 0)
        emit(e, "%s", pct(x, h->pico, x->last_alone_pico, 2));
    else
        emit(e, "null");
    emit(e, ", \"meets_target\": %s}", h->meets ? "true" : "false");
}

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
    if (x->o->target_accuracy > 0)
        emit(e, ", \"target_absolute\": %s", fmt_bar(num, sizeof num, x->o->target_accuracy));
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
    emit(e, "\n ],\n \"batching\": ");
    if (d->batched)
        emit(e, "{\"calls\": %ld, \"fitted\": %s, \"sys_tokens\": %.1f, \"item_tokens\": %.1f, \"solo_tokens\": %.1f,"
                " \"ratio\": %.4f, \"first_tier_batch\": %d}",
             d->batch_calls, d->batch_fitted ? "true" : "false", d->batch_sys, d->batch_item, d->batch_solo,
             d->batch_ratio, d->batch_size);
    else
        emit(e, "null");
    emit(e, ",\n \"current\": ");
    json_plan(e, x, &plans[PLAN_CURRENT], false);
    emit(e, ",\n \"recommended\": ");
    json_plan(e, x, &plans[PLAN_RECOMMENDED], true);
    emit(e, ",\n \"held_out\": ");
    json_held_out(e, x);
    emit(e, ",\n \"rules\": ");
    if (x->k->compared) {
        const HeldOut *r[2] = {&x->k->rule_thresholds, &x->k->rule_agreement};
        const char *name[2] = {"thresholds", "agreement"};
        emit(e, "{");
        for (int i = 0; i < 2; i++)
            emit(e, "\"%s\": {\"accuracy\": %s, \"cost_per_job_usd\": %s, \"meets_target\": %s}, ", name[i],
                 fixed(x, r[i]->correct, x->d->njobs, 6), usd_per_job(x, r[i]->pico), r[i]->meets ? "true" : "false");
        emit(e, "\"kept\": \"%s\"}", x->k->agree ? "agreement" : "thresholds");
    } else {
        emit(e, "null");
    }
    emit(e, ",\n \"alternatives\": {\"target_plus_1pt\": ");
    json_plan(e, x, &plans[PLAN_PLUS], false);
    emit(e, ",\n  \"target_minus_1pt\": ");
    json_plan(e, x, &plans[PLAN_MINUS], false);
    emit(e, ",\n  \"most_accurate_at_current_cost\": ");
    json_plan(e, x, &plans[PLAN_AT_CURRENT_COST], false);
    emit(e, "}}");
}

static void text_plan(Emit *e, Ctx *x, const char *label, const Plan *p, const Plan *rec, int accept_w)
{
    const int n = x->d->ntiers;
    char bars[CAL_MAX_TIERS * 24] = "", bar[32], acc[64];
    if (!p->set) {
        emit(e, "  %-28s (no threshold set qualifies)\n", label);
        return;
    }
    for (int t = 0; t + 1 < n; t++) {
        size_t len = strlen(bars);
        snprintf(bars + len, sizeof bars - len, "%s%s", t ? " " : "", fmt_bar(bar, sizeof bar, p->accept[t]));
        if (p->accept[t] != CAL_DROP && p->accept[CAL_AGREE + t] != CAL_DROP) {
            len = strlen(bars);
            snprintf(bars + len, sizeof bars - len, "/%s", fmt_bar(bar, sizeof bar, p->accept[CAL_AGREE + t]));
        }
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
    if (x->o->target_accuracy > 0)
        emit(e, "target: accuracy %.1f%% against expected\n", 100.0 * x->target_acc);
    else
        emit(e, "target: %s x the last tier's accuracy = %.1f%%\n", fmt_bar(a, sizeof a, x->o->target_ratio),
             100.0 * x->target_acc);
    emit(e, "search: accept 0.00 to %s by %s on tiers 1..%d, or the tier dropped, %ld combinations\n",
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
        emit(e, "  %4d  %-20s %-18s %15s %15s", t + 1, tier_model(x, t), acc, usd_per_job(x, ans),
             usd_per_job(x, judge));
        emit(e, "\n");
    }
    if (d->batched && d->batch_fitted)
        emit(e, "batching (from %ld batched calls in the ledger): a batch of b jobs pays (%.0f/b + %.1f) input tokens a "
                "job against %.1f alone; the first tier asked gets batches of %d, later tiers what is sent up\n",
             d->batch_calls, d->batch_sys, d->batch_item, d->batch_solo, d->batch_size);
    else if (d->batched)
        emit(e, "batching (from %ld batched calls in the ledger, all of one size): input x%.3f of alone on every tier\n",
             d->batch_calls, d->batch_ratio);
    else if (x->kd->batch.enabled)
        emit(e, "batching: no batched calls of this kind in the ledger yet: priced as if alone (an upper bound)\n");
    emit(e, "last tier alone: %s, accuracy %s%%, %s usd/job\n", tier_model(x, n - 1),
         pct(x, x->last_correct, d->njobs, 1), usd_per_job(x, x->last_alone_pico));

    int accept_w = 6;
    for (int p = 0; p < PLAN_COUNT; p++) {
        int w = 0;
        for (int t = 0; plans[p].set && t + 1 < n; t++) {
            w += (t ? 1 : 0) + (int)strlen(fmt_bar(a, sizeof a, plans[p].accept[t]));
            if (plans[p].accept[t] != CAL_DROP && plans[p].accept[CAL_AGREE + t] != CAL_DROP)
                w += 1 + (int)strlen(fmt_bar(a, sizeof a, plans[p].accept[CAL_AGREE + t]));
        }
        if (w > accept_w)
            accept_w = w;
    }
    emit(e, "\nthreshold sets (on every labelled job)\n");
    emit(e, "  %-28s %-*s  %-18s %13s %9s  %s\n", "set", accept_w, "accept", "accuracy", "usd/job", "of last",
         "answered at each tier");
    const Plan *rec = &plans[PLAN_RECOMMENDED];
    text_plan(e, x, "configured (jobs/)", &plans[PLAN_CURRENT], rec, accept_w);
    text_plan(e, x, "recommended", rec, rec, accept_w);
    text_plan(e, x, "target +1pt", &plans[PLAN_PLUS], rec, accept_w);
    text_plan(e, x, "target -1pt", &plans[PLAN_MINUS], rec, accept_w);
    text_plan(e, x, "most accurate, current cost", &plans[PLAN_AT_CURRENT_COST], rec, accept_w);
    if ((double)rec->correct + CAL_COUNT_EPS < x->target_acc * (double)d->njobs)
        emit(e, "note: no threshold set reaches the target; recommended is the most accurate one costing no more than "
                "the last tier alone\n");
    for (int t = 0; t + 1 < n; t++)
        if (rec->accept[t] == CAL_DROP)
            emit(e, "note: tier %d (%s) is dropped: it would pay for answers the plan does not need\n", t + 1,
                 tier_model(x, t));

    const HeldOut *h = &x->k->ho;
    if (h->folds) {
        emit(e, "\nheld-out prediction (this plan on every labelled job, less the optimism of choosing it, measured by %d-fold "
                "cross-validation; margin +%.2f pt; 95%% intervals for a new run of %ld jobs)\n", h->folds, 100 * h->margin, d->njobs);
        emit(e, "  accuracy %s%% (95%% %.1f-%.1f%%) = %s x the last tier's; %s usd/job (95%% %.9f-%.9f) = %s%% of "
                "the last tier alone%s\n",
             pct(x, h->correct, d->njobs, 1), 100 * h->acc_low, 100 * h->acc_high,
             x->last_correct ? fixed(x, h->correct, x->last_correct, 3) : "-", usd_per_job(x, h->pico), h->cost_low,
             h->cost_high, x->last_alone_pico ? pct(x, h->pico, x->last_alone_pico, 1) : "-",
             h->meets ? "" : "  (below the target: more labelled jobs or a lower target)");
    } else {
        emit(e, "\nheld-out prediction: none (%ld jobs; cross-validation needs at least %d)\n", d->njobs,
             CALIBRATE_MIN_HELD_OUT_JOBS);
    }
    if (x->k->compared) {
        const HeldOut *r[2] = {&x->k->rule_thresholds, &x->k->rule_agreement};
        const char *name[2] = {"bars alone", "bars + accept_if_agrees"};
        emit(e, "decision rules, held out: ");
        for (int i = 0; i < 2; i++)
            emit(e, "%s%s %s%% at %s%% of the last tier%s", i ? "; " : "", name[i], pct(x, r[i]->correct, d->njobs, 1),
                 x->last_alone_pico ? pct(x, r[i]->pico, x->last_alone_pico, 1) : "-", r[i]->meets ? "" : " (misses the target)");
        emit(e, " -> kept: %s\n", x->k->agree ? "bars + accept_if_agrees (it reaches the target for less)"
                                              : "bars alone (agreement does not win here)");
    }

    emit(e, "\npaste into %s:\n  \"tiers\": [\n", x->kd->file);
    int last_kept = n - 1;
    for (int t = 0; t < n; t++) {
        if (t + 1 < n && rec->accept[t] == CAL_DROP)
            continue;
        emit(e, "    {\"model\": ");
        emit_json_str(e, tier_model(x, t));
        if (t < last_kept && rec->accept[CAL_AGREE + t] != CAL_DROP)
            emit(e, ", \"accept\": %s, \"accept_if_agrees\": %s},\n", fmt_bar(a, sizeof a, rec->accept[t]),
                 fmt_bar(b, sizeof b, rec->accept[CAL_AGREE + t]));
        else if (t < last_kept)
            emit(e, ", \"accept\": %s},\n", fmt_bar(a, sizeof a, rec->accept[t]));
        else
            emit(e, "}\n");
    }
    emit(e, "  ]\n");
}

/* Writing the kind files ------------------------------------------------------------------------ */

/* The kind file with the recommended tiers (dropped ones left out). */
static int new_kind_text(const KindCal *k, const TqConfig *cfg, const Plan *rec, const Buf *old, Buf *out, TqErr *err)
{
    KindFileTier tiers[CAL_MAX_TIERS];
    int n = 0;
    for (int t = 0; t < k->d.ntiers; t++) {
        if (t + 1 < k->d.ntiers && rec->accept[t] == CAL_DROP)
            continue;
        tiers[n].model = cfg->models[k->d.model[t]].name;
        tiers[n].agree = t + 1 < k->d.ntiers && rec->accept[CAL_AGREE + t] != CAL_DROP ? rec->accept[CAL_AGREE + t] : NAN;
        tiers[n++].accept = t + 1 < k->d.ntiers ? rec->accept[t] : 0;
    }
    TqErr e2 = {0};
    if (kindfile_replace_tiers(old->data, old->len, tiers, n, out, &e2))
        return tq_err(err, TQ_EINVAL, "%s: %s", k->kd->file, e2.msg);
    return 0;
}

/* Written beside it and renamed over it, with the file's own permissions. */
static int write_file_atomic(const char *path, const Buf *text, TqErr *err)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.calibrate.tmp", path);
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return tq_err(err, TQ_EIO, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = fwrite(text->data, 1, text->len, f) == text->len;
    ok = fchmod(fileno(f), mode) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return tq_err(err, TQ_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* Entry ---------------------------------------------------------------------------------------- */

/* The kinds asked for: o->kind, o->kinds (comma-separated), or every kind with 2+ tiers. */
static int pick_kinds(const TqConfig *cfg, const CalibrateOptions *o, const TqKind **out, int *n, bool *explicit,
                      TqErr *err)
{
    *n = 0;
    *explicit = o->kind || o->kinds;
    if (!*explicit) {
        for (int i = 0; i < cfg->nkinds && *n < CAL_MAX_KINDS; i++)
            if (cfg->kinds[i].ntiers >= 2 && cfg->kinds[i].ntiers <= CAL_MAX_TIERS)
                out[(*n)++] = &cfg->kinds[i];
        return 0;
    }
    char bad[256];
    if (config_kind_list(cfg, o->kind ? o->kind : o->kinds, out, CAL_MAX_KINDS, n, bad, sizeof bad))
        return tq_err(err, TQ_EINVAL, "calibrate: unknown kind %s (no such file in %s)", bad, cfg->dir);
    for (int i = 0; i < *n; i++)
        if (out[i]->ntiers < 2 || out[i]->ntiers > CAL_MAX_TIERS)
            return tq_err(err, TQ_EINVAL,
                          "calibrate: kind %s has %d tier(s); only the bars of 2 to %d tiers can be tuned",
                          out[i]->name, out[i]->ntiers, CAL_MAX_TIERS);
    return 0;
}

/* The plans of one searched kind. */
static void kind_plans(KindCal *k, const CalibrateOptions *o, Plan *plans)
{
    const CalData *d = &k->d;
    const int n = d->ntiers;
    double accept[CAL_SLOTS] = {0};
    memset(plans, 0, sizeof(Plan) * PLAN_COUNT);
    for (int t = 0; t < CAL_SLOTS; t++)
        accept[t] = d->current[t];
    plan_eval(d, accept, -1, &plans[PLAN_CURRENT]);
    combo_accept(k->pick, n, k->agree, k->grid, o->step, accept);
    plan_eval(d, accept, k->pick, &plans[PLAN_RECOMMENDED]);
    const double jobs = (double)d->njobs;
    const long alt[] = {
        [PLAN_PLUS] = pick_cheapest(k->all, k->combos, (k->target_acc + 0.01) * jobs),
        [PLAN_MINUS] = pick_cheapest(k->all, k->combos, (k->target_acc - 0.01) * jobs),
        [PLAN_AT_CURRENT_COST] = pick_most_accurate(k->all, k->combos, plans[PLAN_CURRENT].pico),
    };
    for (int p = PLAN_PLUS; p < PLAN_COUNT; p++) {
        if (alt[p] < 0)
            continue;
        combo_accept(alt[p], n, k->agree, k->grid, o->step, accept);
        plan_eval(d, accept, alt[p], &plans[p]);
    }
}

/* The all-kinds summary: per kind and in total, in-sample and held-out. */
typedef struct Totals {
    long jobs, correct, last_correct, ho_jobs, ho_correct, ho_last_correct;
    int64_t pico, last_pico, ho_pico, ho_last_pico;
    double ho_acc_var_n2;  /* sum over kinds of n^2 x the kind's accuracy variance */
    double ho_cost_var_n2; /* the same for USD per job */
} Totals;

/* One kind's (or all kinds') recommended plan as totals. */
static Totals kind_totals(const KindCal *k, const Plan *rec)
{
    Totals t = {.jobs = k->d.njobs, .correct = rec->correct, .last_correct = k->last_correct, .pico = rec->pico,
                .last_pico = k->last_alone_pico};
    if (k->ho.folds) {
        t.ho_jobs = k->d.njobs;
        t.ho_correct = k->ho.correct;
        t.ho_last_correct = k->last_correct;
        t.ho_pico = k->ho.pico;
        t.ho_last_pico = k->last_alone_pico;
        t.ho_acc_var_n2 = (double)k->d.njobs * (double)k->d.njobs * k->ho.acc_var;
        t.ho_cost_var_n2 = (double)k->d.njobs * (double)k->d.njobs * k->ho.cost_var;
    }
    return t;
}

static void totals_add(Totals *sum, const Totals *t)
{
    sum->jobs += t->jobs;
    sum->correct += t->correct;
    sum->last_correct += t->last_correct;
    sum->pico += t->pico;
    sum->last_pico += t->last_pico;
    sum->ho_jobs += t->ho_jobs;
    sum->ho_correct += t->ho_correct;
    sum->ho_last_correct += t->ho_last_correct;
    sum->ho_pico += t->ho_pico;
    sum->ho_last_pico += t->ho_last_pico;
    sum->ho_acc_var_n2 += t->ho_acc_var_n2;
    sum->ho_cost_var_n2 += t->ho_cost_var_n2;
}

static void summary_line(Emit *e, Ctx *x, const char *kind, const Totals *t, bool json)
{
    const double n = (double)t->ho_jobs;
    const double acc = n > 0 ? (double)t->ho_correct / n : 0, acc_sd = n > 0 ? sqrt(t->ho_acc_var_n2) / n : 0;
    const double cost = n > 0 ? (double)t->ho_pico / 1e12 / n : 0, cost_sd = n > 0 ? sqrt(t->ho_cost_var_n2) / n : 0;
    const double acc_lo = fmax(0, acc - CAL_Z95 * acc_sd), acc_hi = fmin(1, acc + CAL_Z95 * acc_sd);
    const double cost_lo = fmax(0, cost - CAL_Z95 * cost_sd), cost_hi = cost + CAL_Z95 * cost_sd;
    if (json) {
        emit(e, "{\"kind\": ");
        emit_json_str(e, kind);
        emit(e, ", \"jobs\": %ld, \"accuracy\": %s, \"last_tier_accuracy\": %s, \"cost_per_job_usd\": %s,", t->jobs,
             fixed(x, t->correct, t->jobs, 6), fixed(x, t->last_correct, t->jobs, 6),
             fixed(x, t->pico, t->jobs * CAL_PICO_PER_USD, 9));
        emit(e, " \"last_tier_cost_per_job_usd\": %s, \"cost_pct_of_last_tier\": %s,",
             fixed(x, t->last_pico, t->jobs * CAL_PICO_PER_USD, 9), t->last_pico ? pct(x, t->pico, t->last_pico, 2) : "null");
        if (t->ho_jobs) {
            emit(e, " \"held_out\": {\"jobs\": %ld, \"accuracy\": %s, \"accuracy_low\": %.6f, \"accuracy_high\": %.6f,",
                 t->ho_jobs, fixed(x, t->ho_correct, t->ho_jobs, 6), acc_lo, acc_hi);
            emit(e, " \"ratio_to_last_tier\": %s, \"cost_per_job_usd\": %.9f, \"cost_low_usd\": %.9f, \"cost_high_usd\": %.9f,",
                 t->ho_last_correct ? fixed(x, t->ho_correct, t->ho_last_correct, 4) : "null", cost, cost_lo, cost_hi);
            emit(e, " \"cost_pct_of_last_tier\": %s}}", t->ho_last_pico ? pct(x, t->ho_pico, t->ho_last_pico, 2) : "null");
        } else {
            emit(e, " \"held_out\": null}");
        }
        return;
    }
    char acc_s[48], ho[160];
    snprintf(acc_s, sizeof acc_s, "%s%% / %s%%", pct(x, t->correct, t->jobs, 1), pct(x, t->last_correct, t->jobs, 1));
    if (t->ho_jobs)
        snprintf(ho, sizeof ho, "%.1f%% (%.1f-%.1f) = %s x last; $%.9f/job (%.9f-%.9f) = %s%%", 100 * acc, 100 * acc_lo,
                 100 * acc_hi, t->ho_last_correct ? fixed(x, t->ho_correct, t->ho_last_correct, 3) : "-", cost, cost_lo,
                 cost_hi, t->ho_last_pico ? pct(x, t->ho_pico, t->ho_last_pico, 1) : "-");
    else
        snprintf(ho, sizeof ho, "(too few jobs)");
    emit(e, "  %-14s %6ld  %-15s %7s%%  %s\n", kind, t->jobs, acc_s, t->last_pico ? pct(x, t->pico, t->last_pico, 1) : "-",
         ho);
}

int calibrate_run(PGconn *c, const TqConfig *cfg, const CalibrateOptions *o, FILE *out, TqErr *err)
{
    if (!c || !cfg || !o || !out || !o->run_name)
        return tq_err(err, TQ_EINVAL, "calibrate: a run is required");
    if (!(o->target_ratio > 0 && o->target_ratio <= 2))
        return tq_err(err, TQ_EINVAL, "calibrate: the target ratio must be above 0 and at most 2");
    if (o->target_accuracy != 0 && !(o->target_accuracy > 0 && o->target_accuracy <= 1))
        return tq_err(err, TQ_EINVAL, "calibrate: the absolute target accuracy must be above 0 and at most 1");
    if (!(o->step >= CALIBRATE_MIN_STEP && o->step <= 0.5))
        return tq_err(err, TQ_EINVAL, "calibrate: the step must be from %.3f to 0.5", CALIBRATE_MIN_STEP);
    if (o->folds < 2 || o->folds > CALIBRATE_MAX_FOLDS)
        return tq_err(err, TQ_EINVAL, "calibrate: the folds must be from 2 to %d", CALIBRATE_MAX_FOLDS);
    if (o->write_dir && o->diff)
        return tq_err(err, TQ_EINVAL, "calibrate: --write and --diff do not go together (--diff shows what --write "
                                      "would change)");
    const TqKind *kinds[CAL_MAX_KINDS];
    int nkinds = 0;
    bool explicit_kinds = false;
    int rc = pick_kinds(cfg, o, kinds, &nkinds, &explicit_kinds, err);
    if (rc)
        return rc;
    const long grid = (long)floor(1.0 / o->step + 1e-9) + 1;
    KindCal *ks = calloc((size_t)(nkinds ? nkinds : 1), sizeof *ks);
    Plan(*plans)[PLAN_COUNT] = calloc((size_t)(nkinds ? nkinds : 1), sizeof *plans);
    Emit e = {.rc = 0};
    buf_init(&e.b, CAL_MAX_BYTES);
    char skipped[1024] = "";
    int used = 0;
    if (!ks || !plans) {
        rc = tq_err(err, TQ_ENOMEM, "calibrate: out of memory");
        goto cleanup;
    }
    for (int i = 0; i < nkinds; i++) {
        long combos = 1;
        for (int t = 0; t + 1 < kinds[i]->ntiers; t++) {
            if (combos > CALIBRATE_MAX_COMBINATIONS / (grid + 1)) {
                rc = tq_err(err, TQ_EINVAL,
                            "calibrate: step %g over %d tiers of kind %s makes more than %d threshold sets; use a "
                            "larger step",
                            o->step, kinds[i]->ntiers - 1, kinds[i]->name, CALIBRATE_MAX_COMBINATIONS);
                goto cleanup;
            }
            combos *= grid + 1;
        }
        ks[i].kd = kinds[i];
        ks[i].combos = combos;
        ks[i].grid = grid;
    }

    /* one snapshot for every kind (or the caller's transaction) */
    int own_tx = PQtransactionStatus(c) == PQTRANS_IDLE;
    if (own_tx && (rc = db_exec(c, "calibrate begin", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err)))
        goto cleanup;
    for (int i = 0; i < nkinds && !rc; i++)
        rc = load_data(c, cfg, kinds[i], o, &ks[i].d, err);
    if (own_tx) {
        if (rc)
            PQclear(PQexec(c, "ROLLBACK"));
        else
            rc = db_exec(c, "calibrate commit", "COMMIT", 0, NULL, err);
    }
    if (rc)
        goto cleanup;

    for (int i = 0; i < nkinds; i++) {
        KindCal *k = &ks[i];
        if (k->d.njobs == 0) {
            if (explicit_kinds) {
                rc = tq_err(err, TQ_ENOTFOUND,
                            "run %s has no jobs of kind %s with expected answers from every tier; make one with tierq "
                            "run --all-tiers (the run has %ld jobs of that kind, %ld with expected)",
                            o->run_name, k->kd->name, k->d.in_run, k->d.with_expected);
                goto cleanup;
            }
            size_t len = strlen(skipped);
            snprintf(skipped + len, sizeof skipped - len, "%s%s", len ? ", " : "", k->kd->name);
            continue;
        }
        const int n = k->d.ntiers;
        k->combos = 1; /* the run may bring back a tier the kind dropped: count again */
        for (int t = 0; t + 1 < n; t++) {
            if (k->combos > CALIBRATE_MAX_COMBINATIONS / (grid + 1)) {
                rc = tq_err(err, TQ_EINVAL,
                            "calibrate: step %g over %d tiers of kind %s makes more than %d threshold sets; use a "
                            "larger step",
                            o->step, n - 1, k->kd->name, CALIBRATE_MAX_COMBINATIONS);
                goto cleanup;
            }
            k->combos *= grid + 1;
        }
        for (long j = 0; j < k->d.njobs; j++) {
            size_t at = (size_t)j * (size_t)n + (size_t)(n - 1);
            k->last_correct += k->d.correct[at];
            k->last_alone_pico += k->d.answer_pico[at];
        }
        k->target_acc = target_count(o, k->d.njobs, k->last_correct, 0) / (double)k->d.njobs;
        if ((rc = search_kind(k, o, err)) || (rc = compare_rules(k, o, err)))
            goto cleanup;
        kind_plans(k, o, plans[i]);
        used++;
    }
    if (used == 0) {
        rc = tq_err(err, TQ_ENOTFOUND,
                    "run %s has no jobs with expected answers from every tier of a kind with two or more tiers; make "
                    "one with tierq run --all-tiers",
                    o->run_name);
        goto cleanup;
    }

    /* kind files: every new text first, then written (or shown as a diff): a file that cannot be read
     * leaves every file as it was */
    Buf diffs;
    buf_init(&diffs, CAL_MAX_BYTES);
    char wrote[2048] = "";
    Buf *nu = calloc((size_t)(nkinds ? nkinds : 1), sizeof *nu);
    char (*paths)[1100] = calloc((size_t)(nkinds ? nkinds : 1), sizeof *paths);
    bool *changed = calloc((size_t)(nkinds ? nkinds : 1), sizeof *changed);
    if (!nu || !paths || !changed)
        rc = tq_err(err, TQ_ENOMEM, "calibrate: out of memory");
    for (int i = 0; i < nkinds && !rc && (o->write_dir || o->diff); i++) {
        if (ks[i].d.njobs == 0)
            continue;
        if (o->write_dir)
            snprintf(paths[i], sizeof paths[i], "%s/%s.json", o->write_dir, ks[i].kd->name);
        else
            snprintf(paths[i], sizeof paths[i], "%s", ks[i].kd->file);
        Buf old;
        if ((rc = kindfile_read(paths[i], CAL_MAX_FILE_BYTES, &old, err)))
            break;
        rc = new_kind_text(&ks[i], cfg, &plans[i][PLAN_RECOMMENDED], &old, &nu[i], err);
        changed[i] = !rc && (old.len != nu[i].len || memcmp(old.data, nu[i].data, old.len) != 0);
        if (!rc && o->diff)
            rc = kindfile_unified_diff(paths[i], old.data, old.len, nu[i].data, nu[i].len, &diffs)
                     ? TQ_ENOMEM
                     : 0;
        buf_free(&old);
    }
    for (int i = 0; i < nkinds && !rc && o->write_dir; i++) {
        if (!changed[i])
            continue;
        rc = write_file_atomic(paths[i], &nu[i], err);
        size_t len = strlen(wrote);
        if (!rc)
            snprintf(wrote + len, sizeof wrote - len, "wrote %s\n", paths[i]);
        else if (len)
            tq_err(err, rc, "%s (already written: %.*s)", err->msg, (int)(len - 1), wrote);
    }
    for (int i = 0; nu && i < nkinds; i++)
        buf_free(&nu[i]);
    free(nu);
    free(paths);
    free(changed);
    if (rc) {
        buf_free(&diffs);
        goto cleanup;
    }

    /* the report */
    Totals tot = {0};
    bool single = o->kind != NULL;
    if (o->json && !single) {
        char num[32];
        emit(&e, "{\"run\": ");
        emit_json_str(&e, o->run_name);
        emit(&e, ", \"target_ratio\": %s", fmt_bar(num, sizeof num, o->target_ratio));
        if (o->target_accuracy > 0)
            emit(&e, ", \"target_absolute\": %s", fmt_bar(num, sizeof num, o->target_accuracy));
        emit(&e, ", \"kinds\": [\n");
    }
    int shown = 0;
    for (int i = 0; i < nkinds; i++) {
        KindCal *k = &ks[i];
        if (k->d.njobs == 0)
            continue;
        Ctx x = {.cfg = cfg, .kd = k->kd, .o = o, .d = &k->d, .k = k, .combos = k->combos,
                 .target_acc = k->target_acc, .last_alone_pico = k->last_alone_pico, .last_correct = k->last_correct};
        if (o->json) {
            emit(&e, "%s", shown ? ",\n" : "");
            render_json(&e, &x, plans[i]);
        } else {
            emit(&e, "%s", shown ? "\n" : "");
            render_text(&e, &x, plans[i]);
        }
        shown++;
        Totals kt = kind_totals(k, &plans[i][PLAN_RECOMMENDED]);
        totals_add(&tot, &kt);
    }
    if (!single) {
        Ctx x = {.cfg = cfg, .o = o};
        if (o->json) {
            emit(&e, "],\n \"skipped_kinds\": [");
            int sk = 0;
            for (int i = 0; i < nkinds; i++)
                if (ks[i].d.njobs == 0) {
                    emit(&e, "%s", sk++ ? ", " : "");
                    emit_json_str(&e, ks[i].kd->name);
                }
            emit(&e, "],\n \"summary\": [");
            int sh = 0;
            for (int i = 0; i < nkinds; i++) {
                KindCal *k = &ks[i];
                if (k->d.njobs == 0)
                    continue;
                emit(&e, "%s", sh++ ? ",\n  " : "\n  ");
                {
                    Totals kt = kind_totals(k, &plans[i][PLAN_RECOMMENDED]);
                    summary_line(&e, &x, k->kd->name, &kt, true);
                }
            }
            emit(&e, "],\n \"total\": ");
            summary_line(&e, &x, "all", &tot, true);
            emit(&e, "}\n");
        } else {
            emit(&e, "\nsummary: recommended plans, run %s (accuracy in-sample / the last tier's; held-out = "
                     "cross-validated)\n", o->run_name);
            emit(&e, "  %-14s %6s  %-15s %8s  %s\n", "kind", "jobs", "accuracy", "cost", "held-out: accuracy, cost (95% for a new run as large)");
            for (int i = 0; i < nkinds; i++) {
                KindCal *k = &ks[i];
                if (k->d.njobs == 0)
                    continue;
                {
                    Totals kt = kind_totals(k, &plans[i][PLAN_RECOMMENDED]);
                    summary_line(&e, &x, k->kd->name, &kt, false);
                }
            }
            summary_line(&e, &x, "all", &tot, false);
            if (skipped[0])
                emit(&e, "skipped (no labelled all-tiers jobs in the run): %s\n", skipped);
        }
    } else if (o->json) {
        emit(&e, "\n");
    }
    if (!o->json && wrote[0])
        emit(&e, "\n%s", wrote);
    if (o->diff) { /* the diffs alone, for patch -p0 */
        buf_reset(&e.b);
        if (diffs.len)
            emit(&e, "%.*s", (int)diffs.len, diffs.data);
    }
    buf_free(&diffs);
    if (e.rc) {
        rc = tq_err(err, e.rc, "calibrate: output too large or out of memory");
        goto cleanup;
    }
    if (fwrite(e.b.data, 1, e.b.len, out) != e.b.len || fflush(out) != 0) {
        rc = tq_err(err, TQ_EIO, "calibrate: write failed");
        goto cleanup;
    }

cleanup:
    for (int i = 0; ks && i < nkinds; i++)
        kind_cal_free(&ks[i]);
    free(ks);
    free(plans);
    buf_free(&e.b);
    return rc;
}
