/* writer.h — the write-back thread: batches finished calls and persists them.
 *
 * The writer owns batching, retrying and counting; what is written, and the fence that guards it,
 * belong to the queue: each batch (up to 1,000 calls, or what arrived within 20 ms) goes to
 * queue_write_back, one idempotent statement. When the database is unreachable or the statement
 * fails, the writer keeps the batch and tries again with backoff; nothing is dropped (a batch that
 * keeps failing while stopping is left to lease expiry). After each write the batch's jobs leave the
 * held set and notify_fd (an eventfd, may be -1) is signalled so the scheduler can claim more. */
#ifndef TQ_WRITER_H
#define TQ_WRITER_H

#include "call.h"
#include "err.h"
#include "held.h"

#include <stdint.h>

#define WRITER_MAX_REASONS 8

/* Jobs that failed (or went back to the queue after an error) for one stable reason. */
typedef struct WriterFailure {
    char reason[48];
    char sample[240];       /* the first such job's error message */
    int64_t count;
} WriterFailure;

typedef struct WriterStats {
    int64_t calls;          /* ledger rows written */
    int64_t jobs_done;
    int64_t jobs_failed;    /* failed or dead for good */
    int64_t jobs_retry;     /* sent back to the queue for a later attempt */
    int64_t lease_lost;     /* fenced writes that changed nothing */
    int64_t cost_pico;      /* sum of ledger costs written */
    int64_t baseline_pico;  /* sum of baseline costs of completed jobs */
    int64_t flushes;
    int64_t statements;     /* database statements executed, BEGIN/COMMIT included */
    int64_t db_errors;
    WriterFailure failures[WRITER_MAX_REASONS]; /* by reason, in order of first appearance */
    int nfailures;
} WriterStats;

/* Count one failed job under its reason (kept in st->failures). */
void writer_tally_failure(WriterStats *st, const char *reason, const char *error);

typedef struct Writer Writer;

/* Optional hooks: on_call sees every finished call (after it is written, before it is freed), on
 * the writer thread — how batch sizes learn from answers. */
typedef struct WriterHooks {
    void (*on_call)(void *ud, const Call *c);
    void *ud;
} WriterHooks;

/* hooks may be NULL. */
int writer_start(Writer **out, const char *conninfo, const char *owner, Fifo *in, HeldSet *held, int notify_fd,
                 const WriterHooks *hooks, TqErr *err);
/* Flush everything queued, then stop the thread and free the writer; final (optional) receives
 * the last statistics. */
void writer_stop(Writer *w, WriterStats *final);
void writer_get_stats(Writer *w, WriterStats *out);

#endif
