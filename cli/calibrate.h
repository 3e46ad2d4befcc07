/* calibrate.h — `tierq calibrate`: choose each tier's `accept` bar from a labelled all-tiers run.
 *
 * Input: a run made with `tierq run --all-tiers`, in which every tier of the kind answered every
 * job (tierq.calls rows with purpose 'answer', status 'ok', the tier's answer in calls.answer and its
 * quality score in calls.score) and whose jobs carry a gold answer in jobs.expected. Per job and
 * tier it reads the score, whether the answer was right (tierq.normalize_answer(answer) =
 * tierq.normalize_answer(expected), as `tierq report` compares) and what the tier cost for that job:
 * its answer calls and its judge calls (any status, a call serving several jobs split evenly).
 * Only jobs with an expected answer and an answer from every tier count; the rest are reported as
 * skipped. The tiers are the kind's tiers in the configuration; a run whose tier t was answered by
 * another model than jobs/<kind>.json now names is refused, since its scores say nothing about the
 * current model.
 *
 * Model of the cascade, replayed on that data: a job is answered at the first tier t whose score is
 * >= accept_t (a missing score never passes), else at the last tier. Its cost is the answer and
 * judge cost of tiers 1..t-1 plus the answer cost of tier t, plus tier t's judge cost unless t is
 * the last tier (the engine does not judge the final tier's answer, see worker/route.c); it is right
 * when tier t's answer was right. Scores are compared with a tolerance of 1e-6 because the ledger
 * stores them as real (float4) while the engine compared the double.
 *
 * Search: exhaustive over the grid 0, step, 2*step, ..., <= 1 for tiers 1..n-1 (n = number of tiers;
 * at most CALIBRATE_MAX_COMBINATIONS sets). The target accuracy is target_ratio x the last tier's own
 * accuracy. Recommended: the cheapest set whose accuracy reaches the target (ties: the more
 * accurate, then the higher thresholds, which are the more cautious on unseen data); when none
 * reaches it, the most accurate set (ties: the cheaper) with meets_target false. Alternatives: the
 * cheapest set at target + 1 point, at target - 1 point (points of accuracy), and the most accurate
 * set costing no more than the configured bars do now (what the same money could buy).
 *
 * Output, text: the last tier alone, each tier alone, the configured thresholds, the recommended
 * and alternative sets (accuracy, cost per job, cost as % of the last tier alone, share of jobs
 * answered at each tier) and the "tiers" snippet to paste into jobs/<kind>.json. JSON (one object;
 * accuracy as a share 0..1 with 6 decimals, money in USD with 9 decimals, percentages with 2):
 *   {"kind", "run", "target_ratio", "step", "combinations",
 *    "jobs": {"in_run", "with_expected", "used", "skipped", "skipped_no_expected",
 *             "skipped_missing_tier"},
 *    "target_accuracy",
 *    "last_tier": {"tier", "model", "accuracy", "cost_per_job_usd"},
 *    "tiers": [{"tier", "model", "accuracy", "correct", "answer_cost_per_job_usd",
 *               "judge_cost_per_job_usd"}],
 *    "current": PLAN, "recommended": PLAN + "meets_target",
 *    "alternatives": {"target_plus_1pt": PLAN|null, "target_minus_1pt": PLAN|null,
 *                     "most_accurate_at_current_cost": PLAN|null}}
 *   PLAN = {"accept": [x, ...] (tiers 1..n-1), "accuracy", "correct", "cost_per_job_usd",
 *           "cost_pct_of_last_tier" (null when the last tier cost nothing), "share_by_tier_pct": [...],
 *           "tiers": [{"model", "accept"}, ..., {"model"}] (the snippet)}
 *
 * Blocking: two statements in one read-only snapshot (inside the caller's transaction if one is
 * open); the search itself runs on in-memory arrays, no SQL per combination. */
#ifndef TQ_CALIBRATE_H
#define TQ_CALIBRATE_H

#include "config.h"
#include "err.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>

#define CALIBRATE_DEFAULT_TARGET_RATIO 0.98
#define CALIBRATE_DEFAULT_STEP 0.05
#define CALIBRATE_MIN_STEP 0.001
#define CALIBRATE_MAX_COMBINATIONS 200000
#define CALIBRATE_DEFAULT_FOLDS 5
#define CALIBRATE_MAX_FOLDS 20
#define CALIBRATE_MIN_HELD_OUT_JOBS 100 /* fewer labelled jobs of a kind: no cross-validation, no margin */

typedef struct CalibrateOptions {
    const char *kind;     /* one kind: the output is that kind's report alone (JSON: its object) */
    const char *kinds;    /* comma-separated kinds; with kind NULL too: every kind with 2 to 8 tiers */
    const char *run_name; /* the all-tiers run */
    double target_ratio;  /* target accuracy = ratio x the last tier's accuracy; (0, 2] */
    double target_accuracy; /* > 0: an absolute accuracy against expected instead; (0, 1] */
    double step;          /* threshold grid step; [CALIBRATE_MIN_STEP, 0.5] */
    int folds;            /* k of the cross-validation; [2, CALIBRATE_MAX_FOLDS] */
    const char *write_dir; /* write each kind's recommended tiers into write_dir/<kind>.json */
    bool diff;            /* instead of the report, a unified diff of each kind file (its configured path) */
    bool json;            /* JSON instead of the text report */
    bool thresholds_only; /* do not measure the agreement rule (see compare_rules in calibrate.c) */
} CalibrateOptions;

/* Fill o with the defaults (target 0.98, step 0.05, 5 folds, text) and no kind or run. */
void calibrate_default_options(CalibrateOptions *o);

/* Read the run, search the thresholds, write the result to out. Returns 0; TQ_EINVAL for bad
 * options (unknown kind, a kind with one tier, step or ratio out of range, too many combinations)
 * or a run answered by other models than the configured tiers; TQ_ENOTFOUND when the run has no
 * usable jobs (the message says how to make one); TQ_EDB, TQ_ENOMEM, or TQ_EIO when writing to out
 * failed. Everything is built in memory first, so out is untouched on any error but TQ_EIO. */
int calibrate_run(PGconn *c, const TqConfig *cfg, const CalibrateOptions *o, FILE *out, TqErr *err);

#endif
