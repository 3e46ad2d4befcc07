/* chat.h — POST /v1/chat/completions (also /chat/completions).
 *
 * Parses the OpenAI request (model, messages, max_tokens / max_completion_tokens, temperature,
 * logprobs, top_logprobs, response_format, n, seed), applies faults, asks answer.c (judge.c for
 * judge requests, batch.c for batch requests) for each choice, and writes the OpenAI response with
 * usage in the model's style. The reply is delayed by the
 * model's latency. */
#ifndef SIM_CHAT_H
#define SIM_CHAT_H

#include "http.h"
#include "reply.h"
#include "sim.h"

int chat_handle(Sim *sim, const HttpReq *req, SimReply *rep);

#endif
