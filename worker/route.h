/* route.h — tiered routing: what happens to a call after each response.
 *
 * A job starts on its kind's first tier. Each answer is scored by the kind's checks (worker/check.h:
 * hard gates, logprob confidence, an optional second sample that must agree, an optional LLM judge
 * call on a cheap model); at or above the
 * tier's `accept` bar the answer is kept, under it the job escalates to the next tier in the same
 * process at once (it keeps its place in the run; nothing is requeued). The last tier's answer is
 * final. Escalation stops early when the next tier's estimated cost would exceed what is left of the
 * job's budget (jobs.max_budget_usd, else the kind's max_budget_usd): the best answer so far is kept
 * with reason "budget". In an all-tiers run (calibration) every tier answers and every answer is kept
 * in the ledger.
 *
 * These functions run on a worker thread and never block. They fill the ledger row of the exchange
 * (tokens, cost, the per-job charge, score, reason) and either finish the call (every job has an
 * outcome) or reset it for another request (ROUTE_SEND: the next tier, or the judge). */
#ifndef TQ_ROUTE_H
#define TQ_ROUTE_H

#include "buf.h"
#include "call.h"
#include "err.h"
#include "openai.h"

/* FINISH: hand the call to the writer. SEND: send it again (next tier, sample, judge). FORK: hand it
 * to the writer and send the calls in c->forks (batch items re-sent alone, halves of an unparsable
 * batch, items escalating together). */
typedef enum { ROUTE_FINISH = 0, ROUTE_SEND, ROUTE_FORK, ROUTE_FAIL } RouteAction;

/* Build the request body for the call's current phase (answer on its tier, sample, or judge): the
 * system prompt with the job's parameters filled in, the model's message layout and extra fields,
 * max_tokens capped to the model's limits (recorded in c->sent_max_tokens for the ledger). */
int route_build_body(Call *c, Buf *out, TqErr *err);

/* A 2xx response parsed. request_body is what was sent (to estimate tokens when usage is missing). */
RouteAction route_on_response(Call *c, LedgerRow *row, OaiResponse *resp, const Buf *request_body);

/* The current request failed for good (after in-process retries, or a permanent error), for the
 * stable reason given. A batch whose failure is transient (retryable) goes back to the queue whole
 * (ROUTE_FAIL); otherwise it goes out again (ROUTE_FORK): in halves when it may fare better smaller
 * (context, payload or response too large), else every item alone, so no job fails for a
 * neighbour's sake; the adaptive batch size is left alone (a failure is not a malformed answer). A judge or sample request that failed leaves its signal missing and the
 * answer is scored without it (ROUTE_SEND or ROUTE_FINISH). A job escalating past tier 1 asks the
 * next tier instead (ROUTE_SEND); on the last tier it keeps the best usable earlier answer (reason
 * escalation_failed, ROUTE_FINISH). Otherwise ROUTE_FAIL: the caller fails the call's jobs with the
 * error. */
RouteAction route_on_failure(Call *c, const char *reason, bool retryable);

/* A 2xx response without an answer to route (choices: [], or the provider interrupted the answer):
 * charge its usage to the call's jobs in row; the caller retries. */
void route_charge_unanswered(Call *c, LedgerRow *row, const OaiResponse *resp, const Buf *request_body);

#endif
