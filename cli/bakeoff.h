/* bakeoff.h — `tierq bakeoff`: the same jobs of one kind, answered by each of several models alone,
 * compared side by side from the database, with the kind-file change the comparison recommends.
 *
 * Enqueue (bakeoff_enqueue): the jobs of kind K in run A (not cancelled; --sample N: the N with the
 * lowest md5 of their id, the same N on every rerun) are copied once per model into run
 * "<prefix>-<model>" (default prefix "bakeoff-<A>-<K>"), each copy pinned to its model
 * (params.model, sql/015_model_pin.sql): answered by that model alone, no escalation, no response
 * cache, no shadow call, its checks and judge still run and recorded. One transaction
 * (reprocess_enqueue); refused when a bake-off run already has jobs (--report-only re-prints it).
 * The model "baseline" is the kind's baseline model, named as such in its run.
 *
 * Process (bakeoff_process): `tierq run --drain --run R --no-cache` in this process for each run in
 * turn (run_main); the runs' own summaries go to stderr so stdout carries only the table.
 *
 * Report (bakeoff_report), one statement over tierq.jobs and tierq.calls per bake-off:
 *   jobs, done, failed (failed or dead), pending (queued or running) — from the jobs;
 *   cost — the sum of cost_usd of every ledger row of the run (answers, judge, samples and
 *     compression), and of it the compression calls; $ per 1,000 jobs = cost / jobs x 1000;
 *   latency p50 / p95 — percentile_disc of calls.latency_ms over the run's answer calls that
 *     returned (status ok): the model's own latency, judge calls excluded;
 *   quality — accuracy against jobs.expected when the jobs have it: normalised exact match
 *     (tierq.normalize_answer, as tierq report and calibrate compare), over every job with an
 *     expected answer (a failed job is a wrong one); else the pass rate: done jobs whose score
 *     (jobs.quality: the kind's checks, judge included) is at least the kind's first accept bar.
 * Recommendation: the cheapest model (cost per job without compression, which is paid once per
 * document by whichever run meets it first) whose quality is within `margin` (default 1 point) of
 * the best model's; ties go to the better quality, then to the order given. It becomes the kind's
 * first tier (its bar kept; later tiers whose model is not dearer per token than it are dropped:
 * escalating to a cheaper model buys nothing), shown as "set tiers[0].model to X" and a unified
 * diff of jobs/<K>.json. None while a run has pending jobs or no job was done.
 *
 * Every call blocks on c; none may be inside a transaction. */
#ifndef TQ_BAKEOFF_H
#define TQ_BAKEOFF_H

#include "config.h"
#include "err.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>

#define BAKEOFF_MAX_MODELS 16
#define BAKEOFF_DEFAULT_MARGIN 0.01

typedef struct BakeoffOptions {
    const char *from_run;
    const char *kind;
    const char *models[BAKEOFF_MAX_MODELS]; /* model names or "baseline", as given */
    int nmodels;
    long sample;             /* > 0: that many jobs of the run; 0: all */
    const char *run_prefix;  /* NULL: "bakeoff-<from_run>-<kind>" */
    double margin;           /* quality within this of the best counts as a tie (0.01 = 1 point) */
    bool json;
} BakeoffOptions;

/* The bake-off as resolved against the configuration: the kind, each model's index and run. */
typedef struct Bakeoff {
    const TqKind *kind;
    int model[BAKEOFF_MAX_MODELS];
    char run[BAKEOFF_MAX_MODELS][201];
    int n;
} Bakeoff;

/* Resolve o against cfg. TQ_EINVAL with a message naming the argument: unknown kind or model, fewer
 * than two models, a model given twice, a run name longer than 200 characters. No database. */
int bakeoff_resolve(const TqConfig *cfg, const BakeoffOptions *o, Bakeoff *b, TqErr *err);

/* Enqueue the copies (see above) and print per run how many were enqueued on out (text) or nothing
 * (json). Returns 0, TQ_EINVAL (refused), TQ_EDB, TQ_ENOMEM. */
int bakeoff_enqueue(PGconn *c, const TqConfig *cfg, const BakeoffOptions *o, const Bakeoff *b, FILE *out,
                    TqErr *err);

/* Process the runs in this process; returns the worst RUN_EXIT_* other than "nothing done" (a model
 * that got nothing right is a result, not an error). */
int bakeoff_process(const TqConfig *cfg, const Bakeoff *b);

/* Print the table and the recommendation (text or JSON) on out. Returns 0, TQ_EINVAL (no bake-off
 * run has jobs), TQ_EDB, TQ_EIO. */
int bakeoff_report(PGconn *c, const TqConfig *cfg, const BakeoffOptions *o, const Bakeoff *b, FILE *out, TqErr *err);

#endif
