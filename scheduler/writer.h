/* writer.h — the write-back thread: batches finished calls and persists them.
 *
 * The writer owns batching, retrying and counting; what is written, and the fence that guards it,
 * belong to the queue: each batch (up to 1,000 calls, or what arrived within 20 ms) goes to
 * queue_write_back, one idempotent statement. When the database is unreachable or the statement
 * fails for the moment, the writer keeps the batch and tries again with backoff; nothing is dropped.
 * A batch refused for what it carries is split until the refused call is alone, which fails
 * (unwritable_result) while the rest is written. Stopping with a deadline (writer_stop_by), what
 * still cannot be written when it passes is spilled to a local file (spill.h) that the next run
 * replays. After each write the batch's jobs leave the held set and notify_fd (an eventfd, may be
 * -1) is signalled so the scheduler can claim more. */
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
    int64_t spilled_calls;  /* written to a spill file at shutdown, for the next run to replay */
    int64_t unwritten_calls; /* neither written nor spilled: their jobs' leases expire */
    int64_t unwritten_pico; /* the ledger cost of those */
    WriterFailure failures[WRITER_MAX_REASONS]; /* by reason, in order of first appearance */
    int nfailures;
} WriterStats;

/* Count one failed job under its reason (kept in st->failures). */
void writer_tally_failure(WriterStats *st, const char *reason, const char *error);

typedef struct Writer Writer;

typedef struct WriterOptions {
    /* on_call (optional) sees every finished call (after it is written, before it is freed), on the
     * writer thread — how batch sizes learn from answers, and how jobs whose context was compressed
     * go on to be answered: it may take a job out of the call (CallJob.job set to NULL), which then
     * stays held */
    void (*on_call)(void *ud, Call *c);
    void *ud;
    const char *spill_dir;  /* where writer_stop_by spills; NULL: nowhere (logged as unwritten) */
    /* on_intent (required when calls park for their ledger intent) receives each parked call once
     * its intent carrier is written (or could not be: the call decides), on the writer thread */
    void (*on_intent)(void *ud, Call *parked);
} WriterOptions;

/* opt may be NULL. */
int writer_start(Writer **out, const char *conninfo, const char *owner, Fifo *in, HeldSet *held, int notify_fd,
                 const WriterOptions *opt, TqErr *err);
/* Flush everything queued, then stop the thread and free the writer; final (optional) receives
 * the last statistics. Waits as long as the database takes to come back. */
void writer_stop(Writer *w, WriterStats *final);
/* The same, but once the monotonic clock passes give_up_ms (clock_mono_ms) while the database is out
 * of reach, what is left is spilled (WriterOptions.spill_dir) instead of waited for. */
void writer_stop_by(Writer *w, int64_t give_up_ms, WriterStats *final);
void writer_get_stats(Writer *w, WriterStats *out);

#endif
