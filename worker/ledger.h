/* ledger.h — what one exchange with a provider cost, and who pays for it.
 *
 * Tokens come from the response's usage block; when a provider sends none they are estimated from
 * what was sent and what came back (oai_estimate_tokens) and the row is marked estimated. Cost is
 * exact integer picodollars at the model's prices (cost_of_call). A row's cost is then charged to
 * the jobs it served: all of it to a single job, or apportioned over a batch's jobs — uncached and
 * cached input by each job's share of the prompt, output by each job's share of the answer — so
 * every share is priced from its own tokens and the shares always sum to the row, to the
 * picodollar (the ledger invariant: sum over jobs = sum over calls).
 *
 * Pure functions over the row (they allocate its charges); any thread, never block. */
#ifndef TQ_LEDGER_H
#define TQ_LEDGER_H

#include "buf.h"
#include "call.h"
#include "cost.h"
#include "openai.h"

#include <stdint.h>

/* Fill row's tokens (in, cached, out, reasoning), estimated flag and cost_pico from resp's usage,
 * or from estimates over request_body and the content when resp carries none. Usage beyond
 * COST_MAX_TOKENS is clamped to it and the row marked usage_clamped (and estimated). */
void ledger_usage(const CostPrices *prices, const OaiResponse *resp, const Buf *request_body, LedgerRow *row);

/* Charge the whole row to one job. Returns 0 or TQ_ENOMEM (row->charges stays NULL: the cost is
 * then in the ledger row but no job's share, which the writer reports). */
int ledger_charge_one(LedgerRow *row, int64_t job_id);

/* Charge the row to n >= 1 jobs: input (uncached and cached separately) in proportion to
 * in_weights, output in proportion to out_weights (equal shares where all weights are 0). Fills
 * parts[i] (if not NULL) with job i's cost share. Returns 0 or TQ_ENOMEM. */
int ledger_charge_shares(LedgerRow *row, const CostPrices *prices, const int64_t *job_ids, const int64_t *in_weights,
                         const int64_t *out_weights, int n, int64_t *parts);

#endif
