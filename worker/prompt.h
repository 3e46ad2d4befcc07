/* prompt.h — what a model is shown for a job, from the kind, the model and the job's params.
 *
 *   system prompt   the job's own system_prompt, else the kind's, with its {parameters} filled in:
 *                   {labels} by the job's params.labels (else the kind's checks.labels) joined with
 *                   ", "; a declared parameter by the job's params.NAME, else its default
 *   extra body      the model's extra_body fields, with the same parameters filled into their
 *                   strings (JSON-escaped), appended to the request object
 *   max_tokens      what the job asks for (params.max_tokens, else the kind's), capped to the
 *                   model's max_output_tokens and to what its context_tokens leaves after the input
 *
 * Pure functions of their arguments: no I/O, any thread, never block. */
#ifndef TQ_PROMPT_H
#define TQ_PROMPT_H

#include "buf.h"
#include "call.h"
#include "config.h"
#include "err.h"

#include <stdbool.h>
#include <stdint.h>

/* Append the job's system prompt, parameters filled in, to out. Leaves out untouched and sets
 * *present = false when neither the job nor the kind has one. Returns 0; TQ_ELIMIT / TQ_ENOMEM. */
int prompt_system(const TqKind *kind, const CallJob *cj, Buf *out, bool *present, TqErr *err);

/* Estimated tokens of the job's system prompt, parameters filled in (0 when there is none). */
int64_t prompt_system_tokens(const TqKind *kind, const CallJob *cj);

/* Append the model's extra_body members as ",\"key\":value..." (ready to go before the request's
 * closing brace), parameters filled in; nothing when the model has none. Returns 0; TQ_EINVAL when
 * the stored extra_body does not parse (config_load prevents it); TQ_ELIMIT / TQ_ENOMEM. */
int prompt_extra_body(const TqModel *model, const TqKind *kind, const CallJob *cj, Buf *out, TqErr *err);

/* The output limit to send: wanted, capped to model->max_output_tokens (a hard limit), then to
 * context_tokens minus input_tokens (an estimate of the prompt) when the model's context size is
 * known — that second cap never goes below PROMPT_MIN_OUTPUT_TOKENS (or the first cap, if smaller),
 * so an estimate that is too high cannot squeeze the answer to nothing. *capped tells whether the
 * result is less than wanted. */
#define PROMPT_MIN_OUTPUT_TOKENS 16
int64_t prompt_max_tokens(const TqModel *model, int64_t wanted, int64_t input_tokens, bool *capped);

#endif
