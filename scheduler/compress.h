/* compress.h — context compression before the first answer (issue 10; README "Context compression").
 *
 * For a job of a kind with compress.enabled whose context is over compress.threshold_tokens
 * (estimated): the context is cleaned for free (preclean.h); if that brings it under the threshold,
 * the cleaned text is what the tiers see and no model is paid. Otherwise it needs compressing to
 * about compress.target_tokens by compress.model, once per key — a SHA-256 over (the cleaned context,
 * the compressor's definition, the target, and the job's prompt when the compression is
 * question-aware) — stored in tierq.compressed and reused by every job, run and process that meets
 * the key. The scheduler asks one lookup per claim; misses become compression calls (call.h
 * call_new_compress) for all the claim's jobs of one key.
 *
 * Blocking calls are the scheduler's (lookups) and the writer's; the rest is pure. */
#ifndef TQ_COMPRESS_H
#define TQ_COMPRESS_H

#include "buf.h"
#include "call.h"
#include "config.h"
#include "err.h"
#include "job.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* What a job needs. */
typedef struct CompressNeed {
    bool needed;              /* a compressed context is wanted: key, cleaned, tokens_before are set */
    char key[65];
    char *cleaned;            /* the cleaned context (owned), the compressor's input */
    bool prompt;              /* it is the job's prompt, not its context (compress.prompt) */
    int tokens_before;        /* estimated tokens of the cleaned context */
} CompressNeed;

/* Decide for *job: nothing to do (need->needed false; *job may have been replaced by a copy whose
 * context is the cleaned one, JOB_COMPRESSION_CLEANED, when cleaning was enough), or a compression
 * is needed (need filled). Returns 0 or TQ_ENOMEM (the job is left as it was). */
int compress_prepare(const TqConfig *cfg, const TqKind *kind, QueueJob **job, CompressNeed *need);
void compress_need_free(CompressNeed *need);

/* The job answered with context text (compressed, or the cleaned original when the compression
 * failed): a copy of job with context = text and original_context = job's own (with prompt: the
 * prompt and original_prompt), the state and the token counts set, and cost_so_far_pico raised by
 * spent (its share of the compression call: its budget counts it). Frees job. NULL when out of
 * memory (job freed too). */
QueueJob *compress_apply(QueueJob *job, const char *text, bool prompt, int compression, int tokens_before,
                         int tokens_after, int64_t spent_pico);

/* ONE read-only statement for the claim's needed keys (and one more, counting the uses, only when
 * something was found): texts[i] (malloc'd) and after[i] for each needs[i] whose key is stored and
 * servable (valid UTF-8, not empty, shorter than the cleaned context); NULL otherwise. A stored entry
 * that is not servable is warned about and deleted. */
int compress_lookup(PGconn *c, const TqConfig *cfg, QueueJob *const *jobs, const CompressNeed *needs, int n,
                    char **texts, int *after, TqErr *err);

/* Upkeep of tierq.compressed: entries unused for their kind's cache.ttl_s are deleted, up to limit. */
int compress_upkeep(PGconn *c, int limit, int64_t *deleted, TqErr *err);

#endif
