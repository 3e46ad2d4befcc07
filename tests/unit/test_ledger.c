/* Per-call accounting: usage to tokens to picodollars, estimates when usage is missing, and shares
 * of a batched call that always sum to the call, each priced from its own tokens. */
#include "../check.h"
#include "ledger.h"

#include <stdlib.h>

static const CostPrices PRICES = {100000, 50000, 280000}; /* $0.10 / $0.05 cached / $0.28 per Mtok */

static void test_usage_and_cost(void)
{
    OaiResponse r = {0};
    r.usage.present = true;
    r.usage.prompt_tokens = 1000;
    r.usage.cached_tokens = 400;
    r.usage.completion_tokens = 50;
    r.usage.reasoning_tokens = 20;
    Buf body;
    buf_init(&body, 0);
    LedgerRow row = {0};
    ledger_usage(&PRICES, &r, &body, &row);
    CHECK_INT(row.tokens_in, 1000);
    CHECK_INT(row.tokens_cached, 400);
    CHECK_INT(row.tokens_out, 50);
    CHECK_INT(row.tokens_reasoning, 20);
    CHECK(!row.estimated);
    CHECK_INT(row.cost_pico, 600 * 100000LL + 400 * 50000LL + 50 * 280000LL);
    CHECK_INT(ledger_charge_one(&row, 42), 0);
    CHECK_INT(row.ncharges, 1);
    CHECK_INT(row.charges[0].job_id, 42);
    CHECK_INT(row.charges[0].cost_pico, row.cost_pico);
    free(row.charges);
    buf_free(&body);
}

static void test_missing_usage_is_estimated(void)
{
    OaiResponse r = {0};
    r.content = (char *)"a short answer!!"; /* 16 bytes: 4 tokens */
    r.content_len = 16;
    r.reasoning_bytes = 40; /* 10 tokens of reasoning */
    Buf body;
    buf_init(&body, 0);
    buf_puts(&body, "0123456789012345678901234567890123456789"); /* 40 bytes: 10 tokens */
    LedgerRow row = {0};
    ledger_usage(&PRICES, &r, &body, &row);
    CHECK(row.estimated);
    CHECK_INT(row.tokens_in, 10);
    CHECK_INT(row.tokens_cached, 0);
    CHECK_INT(row.tokens_out, 14);
    CHECK_INT(row.tokens_reasoning, 10);
    CHECK_INT(row.cost_pico, 10 * 100000LL + 14 * 280000LL);
    buf_free(&body);
}

static void test_batch_shares_sum_exactly(void)
{
    /* input shared by prompt size, output by each answer's size; awkward numbers on purpose */
    LedgerRow row = {0};
    row.tokens_in = 1003;
    row.tokens_cached = 517;
    row.tokens_out = 97;
    row.cost_pico = cost_of_call(&PRICES, row.tokens_in, row.tokens_cached, row.tokens_out);
    int64_t ids[3] = {7, 8, 9}, in_w[3] = {100, 100, 301}, out_w[3] = {1, 30, 3}, parts[3];
    CHECK_INT(ledger_charge_shares(&row, &PRICES, ids, in_w, out_w, 3, parts), 0);
    CHECK_INT(row.ncharges, 3);
    int64_t cost = 0, in = 0, cached = 0, out = 0;
    for (int i = 0; i < row.ncharges; i++) {
        const LedgerCharge *c = &row.charges[i];
        cost += c->cost_pico;
        in += c->tokens_in;
        cached += c->tokens_cached;
        out += c->tokens_out;
        CHECK(c->tokens_cached <= c->tokens_in);
        CHECK_INT(c->cost_pico, cost_of_call(&PRICES, c->tokens_in, c->tokens_cached, c->tokens_out));
        CHECK_INT(parts[i], c->cost_pico);
    }
    CHECK_INT(cost, row.cost_pico);
    CHECK_INT(in, 1003);
    CHECK_INT(cached, 517);
    CHECK_INT(out, 97);
    /* output follows the answers, not the prompts: the job with the long answer pays most of it */
    CHECK(row.charges[1].tokens_out > row.charges[0].tokens_out + row.charges[2].tokens_out);
    free(row.charges);
}

/* A provider reporting 2^63-1 tokens: clamped, flagged, charged a bounded (positive) amount. */
static void test_implausible_usage_is_clamped(void)
{
    OaiResponse r = {0};
    r.usage.present = true;
    r.usage.prompt_tokens = INT64_MAX;
    r.usage.cached_tokens = INT64_MAX;
    r.usage.completion_tokens = INT64_MAX;
    r.usage.reasoning_tokens = INT64_MAX;
    Buf body;
    buf_init(&body, 0);
    LedgerRow row = {0};
    ledger_usage(&PRICES, &r, &body, &row);
    CHECK(row.usage_clamped && row.estimated);
    CHECK_INT(row.tokens_in, COST_MAX_TOKENS);
    CHECK_INT(row.tokens_out, COST_MAX_TOKENS);
    CHECK(row.tokens_cached <= row.tokens_in && row.tokens_reasoning <= row.tokens_out);
    CHECK_INT(row.cost_pico, cost_of_call(&PRICES, COST_MAX_TOKENS, COST_MAX_TOKENS, COST_MAX_TOKENS));
    CHECK(row.cost_pico > 0);
    CHECKF(row.error && strstr(row.error, "usage_implausible") != NULL, "%s", row.error ? row.error : "(null)");
    free(row.error);
    /* shares of a clamped batched row still sum exactly */
    int64_t ids[2] = {1, 2}, w[2] = {1, 3}, parts[2];
    CHECK_INT(ledger_charge_shares(&row, &PRICES, ids, w, w, 2, parts), 0);
    CHECK_INT(cost_add(parts[0], parts[1]), row.cost_pico);
    free(row.charges);
    buf_free(&body);
}

int main(void)
{
    RUN(test_implausible_usage_is_clamped);
    RUN(test_usage_and_cost);
    RUN(test_missing_usage_is_estimated);
    RUN(test_batch_shares_sum_exactly);
    return check_done();
}
