#include "ledger.h"

#include <stdlib.h>
#include <string.h>

void ledger_usage(const CostPrices *prices, const OaiResponse *resp, const Buf *request_body, LedgerRow *row)
{
    int64_t in = resp->usage.prompt_tokens, cached = resp->usage.cached_tokens, out = resp->usage.completion_tokens;
    int64_t reasoning = resp->usage.reasoning_tokens;
    if (!resp->usage.present) {
        in = oai_estimate_tokens(request_body->data ? request_body->data : "", request_body->len);
        cached = 0;
        /* what came back: the answer, and the reasoning it was charged for (~4 bytes a token) */
        reasoning = (int64_t)(resp->reasoning_bytes / 4);
        out = (resp->content_len ? oai_estimate_tokens(resp->content, resp->content_len) : 0) + reasoning;
        row->estimated = true;
    }
    /* A provider can report anything: usage beyond any model's reach is clamped (and said so), so
     * one bogus number cannot charge a job millions or overflow a sum. */
    if (in > COST_MAX_TOKENS || out > COST_MAX_TOKENS || cached > COST_MAX_TOKENS || reasoning > COST_MAX_TOKENS) {
        row->usage_clamped = true;
        row->estimated = true;
        in = in > COST_MAX_TOKENS ? COST_MAX_TOKENS : in;
        out = out > COST_MAX_TOKENS ? COST_MAX_TOKENS : out;
        cached = cached > in ? in : cached;
        reasoning = reasoning > out ? out : reasoning;
        if (!row->error)
            row->error = strdup("usage_implausible: the provider reported more tokens than any model takes or writes; "
                                "clamped to 100000000 each");
    }
    row->tokens_in = in;
    row->tokens_cached = cached;
    row->tokens_out = out;
    row->tokens_reasoning = reasoning;
    row->cost_pico = cost_of_call(prices, in, cached, out);
}

int ledger_charge_one(LedgerRow *row, int64_t job_id)
{
    row->charges = calloc(1, sizeof *row->charges);
    if (!row->charges)
        return TQ_ENOMEM;
    row->ncharges = 1;
    row->charges[0] = (LedgerCharge){job_id, row->cost_pico, row->tokens_in, row->tokens_cached, row->tokens_out};
    return 0;
}

int ledger_charge_shares(LedgerRow *row, const CostPrices *prices, const int64_t *job_ids, const int64_t *in_weights,
                         const int64_t *out_weights, int n, int64_t *parts)
{
    int64_t cached = row->tokens_cached < row->tokens_in ? row->tokens_cached : row->tokens_in;
    if (cached < 0)
        cached = 0;
    int64_t uncached = row->tokens_in - cached;
    int64_t *share = calloc((size_t)n * 3, sizeof *share);
    row->charges = calloc((size_t)n, sizeof *row->charges);
    if (!share || !row->charges) {
        free(share);
        free(row->charges);
        row->charges = NULL;
        return TQ_ENOMEM;
    }
    /* Token counts are apportioned like money (cost_apportion is exact for any integer total). */
    cost_apportion(uncached, in_weights, share, n);
    cost_apportion(cached, in_weights, share + n, n);
    cost_apportion(row->tokens_out, out_weights, share + 2 * n, n);
    int k = 0;
    for (int i = 0; i < n; i++) {
        int64_t u = share[i], c = share[n + i], o = share[2 * n + i];
        /* Priced per share: cost is linear in tokens, so the shares sum to the row's cost. */
        int64_t cost = cost_of_call(prices, u + c, c, o);
        if (parts)
            parts[i] = cost;
        row->charges[k++] = (LedgerCharge){job_ids[i], cost, u + c, c, o};
    }
    row->ncharges = k;
    free(share);
    return 0;
}
