/* writer.h — the write-back thread: persists finished calls in batches.
 *
 * One flush = one transaction on the writer's own connection: the ledger rows and each job's share
 * of their cost (one statement; idempotent through tierq.calls.call_key, so a flush retried after a
 * lost connection charges nothing twice), then completions and failures, fenced by (attempt, lease
 * owner) — a write for a lease that was lost changes nothing and is counted as lease_lost. When the
 * database is unreachable the writer keeps the batch and retries with backoff; nothing is dropped.
 * After a flush the jobs leave the held set and notify_fd (an eventfd, may be -1) is signalled so
 * the scheduler can claim more. */
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

int writer_start(Writer **out, const char *conninfo, const char *owner, CallQueue *in,
                 HeldSet *held, int notify_fd, TqErr *err);
/* Flush everything queued, then stop the thread and free the writer; final (optional) receives
 * the last statistics. */
void writer_stop(Writer *w, WriterStats *final);
void writer_get_stats(Writer *w, WriterStats *out);

#endif
