/* fuzz_response.c — a provider's response body, as worker/openai.c reads it.
 *
 * The same bytes go through oai_parse_response and oai_parse_response_tokens (default token cap and
 * a small one, so the cap's error path runs too), then what the worker does next with a parsed
 * answer: the logprobs of byte ranges (a batch item's confidence) and the ledger row's tokens and
 * dollars at gpt-4o prices. They also go through oai_parse_error, as the body of a failed call,
 * and its classification. Checked contracts (openai.h): strings valid UTF-8 without NUL and
 * content_len = strlen(content); cached <= prompt and reasoning <= completion; error fields one
 * printable line with key-like substrings redacted. */
#include "fuzz.h"

#include "json.h"
#include "ledger.h"
#include "openai.h"
#include "utf8.h"

#include <strings.h>

static int is_alnum_ascii(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* Length of the run at s of characters a secret is made of, '*' (the mask) excluded. */
static size_t secret_run(const char *s, int bearer)
{
    size_t n = 0;
    while (is_alnum_ascii(s[n]) || s[n] == '-' || s[n] == '_' ||
           (bearer && (s[n] == '=' || s[n] == '+' || s[n] == '/')))
        n++;
    return n;
}

/* Whether clean text still shows a key openai.h promises to redact: "sk-", "sk_", "gsk_", "AIza"
 * or "Bearer " at a word start, followed by 4 or more key characters (the redactor leaves
 * "<prefix>***"; fewer than 4 characters are prose or a cut, not a key). */
static int shows_key(const char *s)
{
    static const char *const prefixes[] = {"sk-", "sk_", "gsk_", "AIza"};
    for (size_t k = 0; s[k]; k++) {
        if (k > 0 && is_alnum_ascii(s[k - 1]))
            continue;
        if (strncasecmp(s + k, "bearer ", 7) == 0) {
            size_t j = k + 7;
            while (s[j] == ' ')
                j++;
            if (secret_run(s + j, 1) >= 4)
                return 1;
        }
        for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
            size_t m = strlen(prefixes[p]);
            if (strncmp(s + k, prefixes[p], m) == 0 && secret_run(s + k + m, 0) >= 4)
                return 1;
        }
    }
    return 0;
}

static void check_clean_field(const char *f, size_t cap, const char *what)
{
    FUZZ_ASSERT(fuzz_terminated(f, cap), what);
    size_t n = strlen(f);
    FUZZ_ASSERT(utf8_valid(f, n), what);
    FUZZ_ASSERT(fuzz_one_line(f, n), what);
    /* crashes/response/bearer_*: a control character after "Bearer " once hid the token */
    FUZZ_ASSERT(!shows_key(f), what);
}

static void check_response(const OaiResponse *r, bool tokens)
{
    FUZZ_ASSERT(r->id && r->model && r->content && r->finish_reason, "strings are never NULL");
    FUZZ_ASSERT(strlen(r->content) == r->content_len, "content_len is strlen(content)");
    FUZZ_ASSERT(utf8_valid(r->content, r->content_len), "content is valid UTF-8 without NUL");
    FUZZ_ASSERT(utf8_valid(r->id, strlen(r->id)) && utf8_valid(r->model, strlen(r->model)) &&
                    utf8_valid(r->finish_reason, strlen(r->finish_reason)),
                "id, model, finish_reason are valid UTF-8");
    FUZZ_ASSERT(!r->refusal || (r->refusal[0] && utf8_valid(r->refusal, strlen(r->refusal))),
                "refusal is NULL or non-empty valid UTF-8");
    if (r->choice_error)
        check_clean_field(r->choice_error, strlen(r->choice_error) + 1, "choice_error is one clean line");
    const OaiUsage *u = &r->usage;
    if (u->present) {
        FUZZ_ASSERT(u->prompt_tokens >= 0 && u->completion_tokens >= 0, "token counts are not negative");
        FUZZ_ASSERT(u->cached_tokens >= 0 && u->cached_tokens <= u->prompt_tokens, "cached clamped to prompt");
        FUZZ_ASSERT(u->reasoning_tokens >= 0 && u->reasoning_tokens <= u->completion_tokens,
                    "reasoning clamped to completion");
    } else {
        FUZZ_ASSERT(u->prompt_tokens == 0 && u->completion_tokens == 0 && u->cached_tokens == 0 &&
                        u->reasoning_tokens == 0,
                    "absent usage has zero counts");
    }
    const OaiLogprobs *lp = &r->logprobs;
    FUZZ_ASSERT(lp->present == (lp->n_tokens > 0), "logprobs present iff tokens counted");
    FUZZ_ASSERT(!lp->present || (lp->sum_logprob <= 0 && lp->min_logprob <= 0), "logprobs are <= 0");
    FUZZ_ASSERT(r->ntokens >= 0 && (r->ntokens == 0 || r->tokens), "token array matches its count");
    if (!tokens)
        FUZZ_ASSERT(!r->tokens && r->ntokens == 0, "no token array without oai_parse_response_tokens");
    if (r->no_choice)
        FUZZ_ASSERT(r->content_len == 0, "no choice, no content");
}

/* What the worker does with a parsed answer: a batch item's confidence over a byte range, and the
 * ledger row (tokens, estimated or reported, and their price). */
static void use_response(const OaiResponse *r, const uint8_t *data, size_t size)
{
    OaiLogprobs lp;
    size_t a = size ? data[0] : 0, b = size > 1 ? data[size - 1] : r->content_len;
    oai_logprobs_in_range(r, a < b ? a : b, a < b ? b : a, &lp);
    FUZZ_ASSERT(lp.present == (lp.n_tokens > 0) && lp.n_tokens <= r->ntokens, "range logprobs count tokens");
    oai_logprobs_in_range(r, 0, r->content_len, &lp);

    static const CostPrices gpt4o = {2500000, 1250000, 10000000}; /* jobs/models.json */
    Buf request;
    buf_init(&request, 0);
    LedgerRow row;
    memset(&row, 0, sizeof row);
    ledger_usage(&gpt4o, r, &request, &row);
    FUZZ_ASSERT(row.tokens_in >= 0 && row.tokens_out >= 0 && row.cost_pico >= 0, "a call never costs less than 0");
    free(row.error);
}

static void check_error(const OaiError *e, int status)
{
    FUZZ_ASSERT(e->http_status == status, "status kept");
    check_clean_field(e->type, sizeof e->type, "error.type is one clean line");
    check_clean_field(e->code, sizeof e->code, "error.code is one clean line");
    check_clean_field(e->param, sizeof e->param, "error.param is one clean line");
    check_clean_field(e->message, sizeof e->message, "error.message is one clean line");
    FUZZ_ASSERT(strlen(e->message) <= OAI_ERR_MSG_MAX + 3, "message bounded");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    OaiResponse r;
    TqErr err;
    if (oai_parse_response(body, size, 0, &r, &err) == 0) {
        check_response(&r, false);
        use_response(&r, data, size);
        oai_response_free(&r);
    }
    if (oai_parse_response_tokens(body, size, 0, &r, &err) == 0) {
        check_response(&r, true);
        use_response(&r, data, size);
        oai_response_free(&r);
    }
    /* a small token cap: TQ_ELIMIT for most bodies, and the growth path for the rest */
    if (oai_parse_response_tokens(body, size, 40, &r, &err) == 0) {
        check_response(&r, true);
        oai_response_free(&r);
    }
    oai_response_free(NULL);

    static const int statuses[] = {400, 429, 500, 200};
    int status = statuses[size % 4];
    OaiError e;
    FUZZ_ASSERT(oai_parse_error(status, body, size, &e) == 0, "oai_parse_error never fails on content");
    check_error(&e, status);
    OaiVerdict v = oai_classify(status, &e);
    FUZZ_ASSERT(v == OAI_OK || v == OAI_RETRY || v == OAI_FAIL || v == OAI_QUOTA, "a verdict");
    FUZZ_ASSERT(oai_error_reason(status, &e) != NULL && oai_verdict_name(v) != NULL, "reasons are never NULL");
    return 0;
}
