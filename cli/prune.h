/* prune.h — `tierq prune`: delete finished jobs older than a duration, and the ledger rows that
 * served only them, in short batches (scheduler/retention.h); or, with dry_run, say what would go.
 *
 * Output. Text: one line saying what was (or would be) deleted. JSON (keys and order are a
 * contract): {"dry_run": false, "older_than_s", "states": ["done", ...], "batch_size", "jobs",
 * "calls", "batches"} after a prune; {"dry_run": true, "older_than_s", "states", "batch_size",
 * "jobs", "calls", "cost_usd" (6 decimals)} for a dry run. jobs and calls are what was deleted (a
 * dry run: what a prune now would delete). Blocks on the database. */
#ifndef TQ_PRUNE_H
#define TQ_PRUNE_H

#include "err.h"
#include "report.h"
#include "retention.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct PruneOptions {
    RetentionSpec spec;
    bool dry_run;
    ReportFormat format;
    const char *older_than_text; /* the duration as the user wrote it, for the text line (NULL: seconds) */
} PruneOptions;

/* Prune (or preview) and write the outcome to out. Returns 0, TQ_EINVAL (o refused: nothing ran),
 * TQ_EDB or TQ_EIO. After TQ_EDB in a real prune, err says how many jobs and ledger rows the
 * batches before the failure deleted (they are committed). */
int prune_run(PGconn *c, const PruneOptions *o, FILE *out, TqErr *err);

#endif
