/* call.h — the unit of work: one logical API call that serves one or more jobs.
 *
 * The scheduler makes a Call from claimed jobs and hands it to the worker pool; the worker sends it
 * (retrying transient failures in-process), records one LedgerRow per HTTP exchange, routes it
 * through the tiers (the same Call is re-sent for the next tier, a sample or a judge; a batch may
 * fork calls for items re-sent alone or escalating together), decides each job's outcome, and hands
 * the finished Call to the writer, which persists rows and outcomes with one statement
 * (queue_write_back) and then frees the Call with call_free. Ownership moves with the Call: exactly
 * one thread touches it at a time. */
#ifndef TQ_CALL_H
#define TQ_CALL_H

#include "buf.h"
#include "config.h"
#include "fifo.h"
#include "openai.h"
#include "ratelimit.h"
#include "job.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CALL_JOB_SHADOW: the job of a shadow call — done already; its answer (result) is compared with the
 * baseline model's, and nothing is written to the job. */
typedef enum { CALL_JOB_PENDING = 0, CALL_JOB_DONE, CALL_JOB_FAIL, CALL_JOB_SHADOW } CallJobOutcome;

/* One job served by a call, and what became of it. Strings are owned (malloc'd). */
typedef struct CallJob {
    QueueJob *job;            /* owned; NULL once the job moved to another call (batch split) */
    CallJobOutcome outcome;
    char *result;             /* DONE: the answer */
    double quality;           /* DONE: score in [0,1], NaN when not scored */
    const char *reason;       /* stable reason string (static) */
    char *error;              /* FAIL: readable message */
    bool retryable;           /* FAIL: back to the queue (until max_attempts) or failed now */
    bool keep_attempt;        /* FAIL, retryable: the job was not at fault (its provider is out of
                               * quota): back to the queue without spending an attempt */
    int64_t retry_after_ms;
    int64_t baseline_pico;    /* DONE: the job's cost on the kind's baseline model */
    int64_t max_tokens;       /* from params or the kind */
    double temperature;
    char **labels;            /* params.labels (owned), overriding the kind's label set */
    int nlabels;
    char **params;            /* values of the kind's declared parameters (owned), NULL entries (or a
                               * NULL array) take the kind's defaults */
    /* Tiered routing: the best answer so far, kept when escalation stops at the budget. */
    char *best_answer;
    double best_score;        /* -1: none yet */
    int best_tier, best_model;
    int answer_tier, answer_model; /* DONE: who answered (0-based tier, model index) */
    int escalations;
    int64_t spent_pico;       /* charged to this job by this call so far */
    int64_t spent_tokens_in, spent_tokens_out; /* ... and the tokens of those charges */
    int64_t compress_tokens_saved, compress_saved_pico; /* input tokens and dollars the shorter context
                               * saved over the requests that carried it */
    bool use_original;        /* an answer said the compressed context lacked it: the original from now on */
    bool cache_hit;           /* DONE: answered from the response cache (or by an identical job's call) */
    int64_t cache_saved_pico; /* ... what that answer cost when it was produced */
    int64_t first_prompt_tokens, first_output_tokens; /* of the first answer: the baseline's basis */
} CallJob;

/* Per-job share of one ledger row. */
typedef struct LedgerCharge {
    int64_t job_id;
    int64_t cost_pico;
    int64_t tokens_in, tokens_cached, tokens_out;
} LedgerCharge;

/* One HTTP exchange (or other billable API call). */
typedef struct LedgerRow {
    char key[96];             /* unique: worker id + sequence; makes the write-back idempotent */
    int tier;                 /* 0-based tier this exchange served */
    int model;                /* model index */
    const char *purpose;      /* "answer", "sample", "judge" */
    char *answer;             /* owned; only kept in all-tiers runs (calibration) */
    char *job_ids;            /* owned: "12,13,14", the jobs this exchange served */
    char *run_name;           /* owned: the jobs' run when they all share one, else NULL */
    int attempt;              /* the first job's attempt number */
    int64_t solo_pico;        /* estimated cost had each job been sent alone (batched calls), 0 if not */
    int64_t solo_tokens_in;   /* the same estimate in input tokens */
    int http_status;          /* 0: no HTTP response (timeout, reset) */
    const char *status;       /* "ok", "retry", "failed", "quota" */
    const char *reason;       /* stable reason (static) */
    char *error;              /* owned, may be NULL */
    int64_t latency_ms;
    int64_t tokens_in, tokens_cached, tokens_out, tokens_reasoning;
    bool estimated;           /* usage missing: tokens estimated from text */
    bool usage_clamped;       /* the provider reported implausible usage, clamped to COST_MAX_TOKENS */
    int64_t cost_pico;
    double score;             /* NaN: not scored */
    unsigned missing_signals; /* CHECK_SIGNAL_* bits: configured soft signals the answer lacked */
    int64_t max_tokens;       /* the output limit sent (0: none) */
    bool max_tokens_capped;   /* ... lower than the job asked for: the model's limits capped it */
    LedgerCharge *charges;    /* owned, ncharges entries (0 when nothing was billed) */
    int ncharges;
} LedgerRow;

/* ANSWER: the tier answers. Then, when the kind asks for them and the answer passed its gates, the
 * signals that need requests of their own: SAMPLE (a second answer, for agreement), JUDGE. */
/* COMPRESS: the call shortens one context for all its jobs (they share it) before any answers; its
 * jobs then go back to the scheduler to be answered. */
typedef enum { CALL_PHASE_ANSWER = 0, CALL_PHASE_SAMPLE, CALL_PHASE_JUDGE, CALL_PHASE_SHADOW, CALL_PHASE_COMPRESS } CallPhase;

/* What a batched call teaches the adaptive batch size: a clean answer lets it grow, a malformed one
 * halves it, and anything else (a failed request, an unbatched call) leaves it alone. */
typedef enum { CALL_BATCH_NEUTRAL = 0, CALL_BATCH_CLEAN, CALL_BATCH_MALFORMED } CallBatchVerdict;

typedef struct Call {
    struct Call *next;        /* intrusive link for the queues between threads */
    CallPhase phase;
    int send_model;           /* model of the request being sent: the tier's, or the judge's */
    char *pending_answer;     /* SAMPLE/JUDGE phases: the answer being verified (owned) */
    char *pending_sample;     /* the second sample's answer (owned), NULL if none */
    double pending_judge;     /* the judge's score in [0,1], NaN if none */
    char *pending_finish;     /* its finish_reason (owned) */
    OaiLogprobs pending_logprobs; /* its token logprobs summary */
    int pending_row;          /* index of its ledger row */
    bool all_tiers;           /* calibration run: every tier answers */
    bool batched;             /* several jobs in one request, answers keyed by item id */
    struct Call *forks;       /* calls split off this one (a ->next list), sent by the worker */
    CallBatchVerdict batch_verdict;
    int64_t sent_max_tokens;  /* the output limit of the request being sent (route_build_body) */
    bool max_tokens_capped;   /* ... lower than the job asked for */
    const TqConfig *cfg;
    const TqKind *kind;
    int tier;                 /* 0-based index into kind->tiers */
    int model;                /* index into cfg->models */
    CallJob *jobs;
    int njobs;
    LedgerRow *rows;
    int nrows, caprows;
    int intent_row;           /* the row recorded (status "sent") for the request about to go or in
                               * flight, -1 when none: written before the request leaves, so a crash
                               * leaves a trace that is settled as "unknown" (queue_settle_orphans) */
    bool intent_durable;      /* that row is in the database: the request may leave */
    bool slot_reserved;       /* the pool counts it in flight already (from parking to sending) */
    bool rl_held;             /* admitted by its model's rate limiter: rl_ticket is settled when the
                               * request ends (worker/ratelimit.h) */
    RateLimitTicket rl_ticket;
    bool rl_prov_held;        /* ... and by its provider's shared limiter (providers' rpm/tpm) */
    RateLimitTicket rl_prov_ticket;
    bool br_probe;            /* the request is its model's half-open probe (worker/breaker.h): its
                               * outcome decides whether the breaker closes */
    bool outage_held;         /* escalating, waiting in its worker for a model's next probe */
    bool model_failed;        /* the last exchange failed in a way its model's breaker counts (5xx,
                               * timeout, connection) */
    int worker;               /* the pool worker that waits for the intent to be written */
    struct Call *parked;      /* intent carriers only: the call waiting for its intent row */
    /* CALL_PHASE_COMPRESS */
    char compress_key[65];    /* tierq.compressed key */
    char *compress_input;     /* the cleaned context (owned) */
    char *compress_question;  /* the jobs' question when the kind's compression is question-aware (owned) */
    char *compress_output;    /* the compressed context (owned); NULL until one came back usable */
    const char *compress_failure; /* why the output was not used (static), NULL when it was */
    int compress_tokens_before, compress_tokens_after;
    bool compress_prompt;     /* the input is the jobs' prompt (compress.prompt), not their context */
    int tries;                /* HTTP attempts so far in this process */
    int64_t due_ms;           /* monotonic time before which it must not be (re)sent */
    void *transfer;           /* worker-private state while in flight */
} Call;

/* A call for a single claimed job on the kind's first tier whose model's context holds the job's
 * input (prompt, context and system prompt, estimated): a job too long for the cheap tier starts
 * higher, and one too long for every tier fails at once (context_too_long) without a request.
 * Takes ownership of job. */
Call *call_new_for_job(const TqConfig *cfg, const TqKind *kind, QueueJob *job);
/* A call for a job about to be completed without a request (a cache hit): its params read, no tier
 * chosen (the job may hold a context only a compression would make fit). Takes ownership of job; NULL
 * when out of memory (job still the caller's). */
Call *call_new_answered(const TqConfig *cfg, const TqKind *kind, QueueJob *job);
/* Estimated input tokens of a job as its kind shows it: prompt, context, system prompt. */
int64_t call_job_input_tokens(const TqKind *kind, const CallJob *cj);
/* Whether a model's context holds input_tokens and leaves room for a minimal answer (a model of
 * unknown context size holds anything). */
bool call_model_fits(const TqModel *m, int64_t input_tokens);
/* A compression call on the kind's compress.model for n >= 1 jobs that share key: input is their
 * cleaned context, question their prompt when question-aware (NULL otherwise). Takes ownership of
 * input and question (freed on failure too) and, on success, of the jobs; NULL when out of memory
 * (the jobs are still the caller's). */
Call *call_new_compress(const TqConfig *cfg, const TqKind *kind, QueueJob **jobs, int n, const char *key, char *input,
                        char *question, int tokens_before, bool prompt);
/* A batched call for n (>= 2) jobs of one kind on its first tier. Takes ownership of the jobs. */
Call *call_new_batch(const TqConfig *cfg, const TqKind *kind, QueueJob **jobs, int n);
/* Move the jobs at idx[0..n) of c into a new call on `tier` (batched when n >= 2); in c their
 * CallJob.job becomes NULL. NULL on allocation failure (c unchanged). */
Call *call_fork(Call *c, const int *idx, int n, int tier);
/* True when every job of the call already has an outcome (e.g. a parameter the kind does not read
 * failed it at creation): nothing is left to send. */
bool call_is_finished(const Call *call);
/* Move the call's ledger rows into a new call that carries only them (no jobs, no outcome), for the
 * writer to record at once while the call goes on (the next tier, a retry): a paid exchange is in
 * the ledger within a flush, not when the whole call ends. NULL when there are none (or no memory:
 * the rows then stay). Only while no row is awaiting its score (phase ANSWER). */
Call *call_take_rows(Call *c);
/* Whether job_id is in a shadow sample of this rate (by a hash of the id: the same jobs whichever
 * process answers them, and a higher rate samples a superset). */
bool call_shadow_sampled(double rate, int64_t job_id);
/* A shadow call for src, a job of c that a tier cheaper than the baseline answered: the same request
 * sent to the kind's baseline model, whose answer is recorded (ledger purpose "shadow", charged to no
 * job) to be compared with src's. NULL when out of memory. */
Call *call_new_shadow(const Call *c, const CallJob *src);
/* A call carrying a copy of c's intent row (c->rows[c->intent_row]) to the writer, with parked = c:
 * the writer writes the row, then hands c back to be sent. NULL on allocation failure. */
Call *call_intent_carrier(Call *c);
/* The prompt and the context a request of c carries for cj's job on c's tier: the compressed one on
 * the first tier (and later ones unless the kind sends them the original), the original once an
 * answer said the compressed one lacked what was asked. *saved_tokens (may be NULL): what the
 * shorter text saves on this request. */
static inline const char *call_job_pick(const Call *c, const CallJob *cj, const char *shorter, const char *original,
                                        int64_t *saved_tokens)
{
    if (saved_tokens)
        *saved_tokens = 0;
    if (!original)
        return shorter;
    if (cj->use_original || (c->tier > 0 && c->kind->compress.escalate_with_original))
        return original;
    if (saved_tokens && cj->job->context_tokens_before > cj->job->context_tokens_after)
        *saved_tokens = cj->job->context_tokens_before - cj->job->context_tokens_after;
    return shorter;
}
static inline const char *call_job_prompt(const Call *c, const CallJob *cj, int64_t *saved_tokens)
{
    return call_job_pick(c, cj, cj->job->prompt, cj->job->original_prompt, saved_tokens);
}
static inline const char *call_job_context(const Call *c, const CallJob *cj, int64_t *saved_tokens)
{
    return call_job_pick(c, cj, cj->job->context, cj->job->original_context, saved_tokens);
}
/* The request of c->intent_row will not go (stopped, failed before sending): the row becomes
 * status "cancelled", reason not_sent, no tokens, no cost. No-op without an intent row. */
void call_cancel_intent(Call *c);
/* Frees jobs, strings, rows. call_free(NULL) does nothing. */
void call_free(Call *call);
/* Append a ledger row (zeroed, with key filled from prefix and seq); NULL on allocation failure. */
LedgerRow *call_add_row(Call *call, const char *key_prefix, uint64_t seq);
/* Set every pending job of the call to FAIL with the same reason/error. */
void call_fail_all(Call *call, const char *reason, const char *error, bool retryable, int64_t retry_after_ms);

/* A FIFO of calls between threads (common/fifo.h, linked through Call.next). */
static inline Fifo *callq_new(void) { return fifo_new(offsetof(Call, next)); }

#endif
