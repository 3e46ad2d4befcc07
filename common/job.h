/* job.h — a claimed job, as the scheduler hands it to the worker.
 *
 * The scheduler's claim (queue_claim) builds it from a row of tierq.jobs; the worker reads it to
 * build requests and never writes it. One allocation holds the struct and its strings. */
#ifndef TQ_JOB_H
#define TQ_JOB_H

#include <stddef.h>
#include <stdint.h>

/* A claimed job. Allocated as one block with its strings (freed by job_free; job_free(NULL) does
 * nothing). */
typedef struct QueueJob {
    int64_t id;
    char *kind;
    char *prompt;
    char *system_prompt;   /* NULL: the kind's */
    char *context;         /* NULL: none */
    char *params;          /* JSON object text, never NULL */
    char *run_name;        /* NULL: none */
    int attempt;           /* this claim's attempt number (1 = first) */
    int max_attempts;
    int priority;
    int64_t max_budget_micro; /* 0: the kind's default */
    int64_t cost_so_far_pico; /* spent on earlier attempts */
    /* the response cache (scheduler/cache.h): the job's key and what the cache may do for it */
    char cache_key[65];    /* 64 hex digits; "" when the cache is off for the job */
    unsigned cache_flags;  /* JOB_CACHE_* */
    /* context compression (scheduler/compress.h): context is then the text the first tier sees and
     * original_context the job's own (NULL when context is the job's own) */
    char *original_context;
    char *original_prompt; /* the same for a kind that compresses long prompts (compress.prompt) */
    int compression;       /* JOB_COMPRESSION_* */
    int context_tokens_before, context_tokens_after; /* estimated; 0 when not compressed */
} QueueJob;

/* What compression did to a job's context (tierq.jobs.compression). */
enum {
    JOB_COMPRESSION_NONE = 0, /* short enough, or the kind does not compress */
    JOB_COMPRESSION_CLEANED,  /* the free clean-up alone brought it under the threshold */
    JOB_COMPRESSION_COMPRESSED, /* a compression call made for it (and the jobs sharing its key) */
    JOB_COMPRESSION_REUSED,   /* a compression stored earlier, or made for another job in flight */
    JOB_COMPRESSION_FAILED,   /* the compressor's output was unusable: the cleaned context was sent */
};
/* "none", "cleaned", ... as in tierq.jobs.compression. */
const char *job_compression_name(int compression);

enum {
    JOB_CACHE_LOOKUP = 1u, /* its answer may come from the cache (or an identical job in flight) */
    JOB_CACHE_STORE = 2u,  /* its answer may be stored, if it passed its bar */
    JOB_CACHE_LEADS = 4u,  /* identical jobs of this process wait on its answer (single flight) */
};

void job_free(QueueJob *job);
/* A copy in one block of its own (NULL when out of memory). */
QueueJob *job_dup(const QueueJob *job);
/* A copy whose context is context[0..len) and whose original_context is job's own (job's
 * original_context when it has one, else its context). NULL when out of memory. */
QueueJob *job_with_context(const QueueJob *job, const char *context, size_t len);
/* The same for the prompt (original_prompt). */
QueueJob *job_with_prompt(const QueueJob *job, const char *prompt, size_t len);
/* Bytes of the job's input text (prompt, context, system prompt): what holding it costs. */
int64_t job_input_bytes(const QueueJob *job);

#endif
