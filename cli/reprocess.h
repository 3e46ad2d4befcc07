/* reprocess.h — `tierq reprocess`: enqueue the jobs of an earlier run again, into a new run (a
 * dataset pass after a prompt or model-map change), and the copy `tierq bakeoff` makes per model.
 *
 * What is copied: every job of run A except cancelled ones (A's dataset: a job that failed or died
 * in A is part of it and deserves its second pass; a cancelled one was taken out of it on purpose),
 * optionally only some kinds, in id order: kind, prompt, system_prompt, context, params, expected,
 * priority, max_attempts and max_budget_usd (what the producer decided about the job, not what
 * happened to it). The copies are queued now, in run B, with nothing of A's outcome.
 *
 * params.model: REPROCESS_MAP_KEEP copies params unchanged; REPROCESS_MAP_TIERED removes any
 * params.model (the kind file decides); REPROCESS_MAP_MODEL sets params.model to `model` (a model
 * name, or "baseline"), which pins every copy to that model (sql/015_model_pin.sql).
 *
 * One transaction: the copy of every kind (and, for a bake-off, of every model) commits together or
 * not at all. Refused (TQ_EINVAL, err says why; nothing inserted): A has no jobs to copy (of those
 * kinds); a target run already has jobs (unless append); A has jobs of a kind jobs/ no longer
 * defines (unless the kinds list leaves it out). An advisory lock per target run keeps two
 * reprocesses into the same run from both seeing it empty.
 *
 * Blocking: statements on c, which must not be inside a transaction. */
#ifndef TQ_REPROCESS_H
#define TQ_REPROCESS_H

#include "config.h"
#include "err.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef enum { REPROCESS_MAP_KEEP = 0, REPROCESS_MAP_TIERED, REPROCESS_MAP_MODEL } ReprocessMap;

/* One copy of the selection into one run. */
typedef struct ReprocessTarget {
    const char *run;         /* run B */
    ReprocessMap map;
    const char *model;       /* REPROCESS_MAP_MODEL: a model name or "baseline" */
} ReprocessTarget;

typedef struct ReprocessOptions {
    const char *from_run;    /* run A */
    const char *const *kinds; /* only these kinds (NULL: every kind of A) */
    int nkinds;
    long sample;             /* > 0: at most this many jobs per kind, the same ones on every call: the
                              * lowest md5 of their id (a fixed pseudo-random sample of A) */
    bool append;             /* a target run may already have jobs */
    bool dry_run;            /* count, then roll back */
    const char *taken_hint;  /* what to do when a target run has jobs already (NULL: the reprocess
                              * command's own advice, another run name or --append) */
} ReprocessOptions;

/* Per target and kind: how many jobs were (or, dry run, would be) enqueued. */
typedef struct ReprocessCount {
    int target;              /* index into the targets */
    char kind[64];
    long jobs;
} ReprocessCount;

/* Copy the selection into each of the n targets. On success *counts (malloc'd, the caller frees)
 * holds *ncounts rows ordered by target then kind. Returns 0, TQ_EINVAL (refused: see above), TQ_EDB
 * or TQ_ENOMEM; nothing is inserted on error. */
int reprocess_enqueue(PGconn *c, const TqConfig *cfg, const ReprocessOptions *o, const ReprocessTarget *targets,
                      int n, ReprocessCount **counts, int *ncounts, TqErr *err);

#endif
