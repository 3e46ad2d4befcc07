/* retention.h — pruning finished jobs and the ledger rows that served only them (sql/014:
 * tierq.prune_batch), for `tierq prune` and for a schedule in the daemon.
 *
 * A prune is many short transactions, one per batch: each deletes at most spec.batch jobs in one of
 * spec.states finished more than spec.older_than_s ago (finished_at; created_at for a job cancelled
 * without one), oldest first, skipping rows another transaction holds (it never waits on the queue),
 * then the ledger rows that serve no job left; their sums go into tierq.daily_totals and
 * tierq.daily_call_totals in the same transaction. Queued and running jobs are never touched.
 * The age is measured from each batch's own now(), so a long prune also takes jobs that cross the
 * line while it runs.
 *
 * Every call here blocks on the database; the connection must not be inside a transaction (each
 * batch must commit on its own). Nothing is allocated that the caller frees. */
#ifndef TQ_RETENTION_H
#define TQ_RETENTION_H

#include "err.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* The finished states, as a bit set. */
enum {
    RETENTION_DONE = 1,
    RETENTION_FAILED = 2,
    RETENTION_DEAD = 4,
    RETENTION_CANCELLED = 8,
    RETENTION_ALL = 15,
};

#define RETENTION_DEFAULT_BATCH 5000
#define RETENTION_MAX_BATCH 100000

typedef struct RetentionSpec {
    long older_than_s; /* > 0 */
    unsigned states;   /* RETENTION_* bits, not 0 */
    int batch;         /* jobs per batch, 1..RETENTION_MAX_BATCH */
} RetentionSpec;

/* Parse "done,failed,dead,cancelled" (any non-empty subset, any order, no spaces; a state named twice
 * is fine). Returns 0 and sets *states, or TQ_EINVAL with err naming the word that is not a finished
 * state ("queued" and "running" get a message of their own: they are never pruned). */
int retention_parse_states(const char *csv, unsigned *states, TqErr *err);

/* "done,failed" for the set bits, in the order done, failed, dead, cancelled. */
void retention_states_text(unsigned states, char *out, size_t cap);

/* 0, or TQ_EINVAL with err saying which field is wrong, in command-line terms (--older-than,
 * --states, --batch). tierq.prune_batch refuses the same values itself. */
int retention_check(const RetentionSpec *s, TqErr *err);

/* For a caller with its own loop (PQsendQueryParams): the statement of one batch, its parameters
 * as text, and the reading of its one-row result. */
extern const char *const RETENTION_SQL_BATCH;
#define RETENTION_BATCH_NPARAMS 3
typedef struct RetentionParams {
    char older_than_s[24], states[64], batch[16];
    const char *values[RETENTION_BATCH_NPARAMS]; /* point into this struct: do not copy it */
} RetentionParams;
void retention_batch_params(const RetentionSpec *s, RetentionParams *p);
/* Read a RETENTION_SQL_BATCH result: 0 with *jobs and *calls deleted, or TQ_EDB on a bad shape. */
int retention_batch_result(const PGresult *r, int64_t *jobs, int64_t *calls, TqErr *err);

/* One batch, committed on its own. *jobs = 0 means nothing (unlocked) is left to prune. Returns 0,
 * TQ_EINVAL (retention_check refused s: nothing ran) or TQ_EDB (nothing of this batch deleted). */
int retention_prune_batch(PGconn *c, const RetentionSpec *s, int64_t *jobs, int64_t *calls, TqErr *err);

typedef struct RetentionTotals {
    int64_t jobs, calls, batches; /* batches that deleted something */
} RetentionTotals;

/* Batches until one deletes nothing, or max_batches have deleted something (0 = no limit: a
 * schedule passes a limit to take its turn and come back). *out always holds what was deleted, also
 * after an error (the batches before it are committed). Returns 0, TQ_EINVAL or TQ_EDB. */
int retention_prune(PGconn *c, const RetentionSpec *s, int64_t max_batches, RetentionTotals *out, TqErr *err);

/* What a prune with s would delete now (s->batch is not used): jobs, their cost_usd (decimal text
 * from PostgreSQL, 6 decimals) and the ledger rows serving only them. Reads only; a real prune later may
 * delete a little more (time moves on) or less (rows locked by the queue). */
typedef struct RetentionPreview {
    int64_t jobs, calls;
    char cost_usd[64];
} RetentionPreview;
int retention_preview(PGconn *c, const RetentionSpec *s, RetentionPreview *out, TqErr *err);

#endif
