/* Routing without a server: a Call made from a job of a shipped kind, its request body, and what
 * each kind of response does to it (accept, escalate, fail with a reason). Pure functions of the
 * call and the response; the shipped jobs/ is the configuration. */
#include "../check.h"
#include "call.h"
#include "config.h"
#include "route.h"

#include <stdlib.h>

static TqConfig *cfg;

/* A claimed job as queue_claim would hand it over (one block: job_free frees it). */
static QueueJob *job_of(const char *kind, const char *prompt, const char *params)
{
    QueueJob *j = calloc(1, sizeof *j);
    j->id = 42;
    j->kind = (char *)kind;
    j->prompt = (char *)prompt;
    j->params = (char *)(params ? params : "{}");
    j->attempt = 1;
    j->max_attempts = 5;
    return j;
}

static Call *call_of(const char *kind, const char *prompt, const char *params)
{
    const TqKind *k = config_kind(cfg, kind);
    CHECKF(k != NULL, "no kind %s in jobs/", kind);
    return k ? call_new_for_job(cfg, k, job_of(kind, prompt, params)) : NULL;
}

/* A chat.completion with one answer; logprob is the one token's (0 = none). */
static OaiResponse response(const char *content, const char *finish, double logprob)
{
    char body[2048];
    char lp[256] = "null";
    if (logprob < 0)
        snprintf(lp, sizeof lp, "{\"content\":[{\"token\":\"%s\",\"logprob\":%.4f}]}", content, logprob);
    snprintf(body, sizeof body,
             "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"logprobs\":%s,"
             "\"finish_reason\":\"%s\"}],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":2}}",
             content, lp, finish);
    OaiResponse r;
    TqErr err = {0};
    CHECKF(oai_parse_response(body, strlen(body), 0, &r, &err) == 0, "%s", err.msg);
    return r;
}

static RouteAction answer(Call *c, const char *content, const char *finish, double logprob)
{
    LedgerRow *row = call_add_row(c, "t", (uint64_t)c->nrows + 1);
    Buf body;
    buf_init(&body, 0);
    TqErr err = {0};
    CHECK_INT(route_build_body(c, &body, &err), 0);
    OaiResponse r = response(content, finish, logprob);
    RouteAction a = route_on_response(c, row, &r, &body);
    oai_response_free(&r);
    buf_free(&body);
    return a;
}

static void test_body_carries_the_jobs_labels_and_cap(void)
{
    Call *c = call_of("classify", "the export button crashes", "{\"labels\": [\"bug\", \"other\"], \"max_tokens\": 5}");
    Buf body;
    buf_init(&body, 0);
    TqErr err = {0};
    CHECK_INT(route_build_body(c, &body, &err), 0);
    CHECKF(strstr(body.data, "one of: bug, other.") != NULL, "%s", body.data);
    CHECKF(strstr(body.data, "\"max_tokens\":5") != NULL, "%s", body.data);
    CHECKF(strstr(body.data, "\"enable_thinking\":false") != NULL, "qwen3-8b's extra_body: %s", body.data);
    CHECK_INT(c->sent_max_tokens, 5);
    CHECK(!c->max_tokens_capped);
    buf_free(&body);
    call_free(c);
    /* translate on Qwen-MT: no system message, the language in translation_options */
    c = call_of("translate", "Bonjour", "{\"target_language\": \"German\"}");
    buf_init(&body, 0);
    CHECK_INT(route_build_body(c, &body, &err), 0);
    CHECKF(strstr(body.data, "\"role\":\"system\"") == NULL, "%s", body.data);
    CHECKF(strstr(body.data, "\"translation_options\":{\"source_lang\":\"auto\",\"target_lang\":\"German\"}") != NULL, "%s",
           body.data);
    buf_free(&body);
    call_free(c);
}

static void test_unknown_param_fails_at_once(void)
{
    Call *c = call_of("chat", "hello", "{\"labels\": [\"a\"]}");
    CHECK(c && call_is_finished(c));
    CHECK(c && c->jobs[0].outcome == CALL_JOB_FAIL && !c->jobs[0].retryable);
    CHECK_STR(c ? c->jobs[0].reason : NULL, "unknown_param");
    CHECKF(c && strstr(c->jobs[0].error, "params.labels is not a parameter of kind chat") != NULL, "%s",
           c ? c->jobs[0].error : "");
    call_free(c);
}

static void test_responses_table(void)
{
    /* simple: qwen3-8b (accept 0.75) -> deepseek-v4-flash (0.6) -> gpt-4o, checks logprobs */
    static const struct {
        const char *name, *content, *finish;
        double logprob;
        RouteAction action;
        int tier_after;           /* c->tier after the response */
        CallJobOutcome outcome;
        const char *reason;       /* the job's, when it has an outcome */
    } rows[] = {
        {"confident", "utils", "stop", -0.01, ROUTE_FINISH, 0, CALL_JOB_DONE, "accepted"},
        {"doubtful", "utils", "stop", -1.5, ROUTE_SEND, 1, CALL_JOB_PENDING, NULL},
        {"no logprobs: missing", "utils", "stop", 0, ROUTE_SEND, 1, CALL_JOB_PENDING, NULL},
        {"truncated", "uti", "length", -0.01, ROUTE_SEND, 1, CALL_JOB_PENDING, NULL},
        {"end_turn is a stop", "utils", "end_turn", -0.01, ROUTE_FINISH, 0, CALL_JOB_DONE, "accepted"},
        {"think block stripped", "<think>hmm</think>utils", "stop", 0, ROUTE_SEND, 1, CALL_JOB_PENDING, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        Call *c = call_of("simple", "which section is bash in?", NULL);
        if (!c)
            continue;
        RouteAction a = answer(c, rows[i].content, rows[i].finish, rows[i].logprob);
        CHECKF(a == rows[i].action && c->tier == rows[i].tier_after && c->jobs[0].outcome == rows[i].outcome,
               "%s: action %d tier %d outcome %d", rows[i].name, (int)a, c->tier, (int)c->jobs[0].outcome);
        if (rows[i].reason)
            CHECKF(c->jobs[0].reason && strcmp(c->jobs[0].reason, rows[i].reason) == 0, "%s: reason %s", rows[i].name,
                   c->jobs[0].reason ? c->jobs[0].reason : "(null)");
        /* every exchange is charged to the job */
        CHECKF(c->jobs[0].spent_pico > 0 && c->rows[0].ncharges == 1, "%s: not charged", rows[i].name);
        call_free(c);
    }
}

static void test_last_tier_never_stores_an_unusable_answer(void)
{
    Call *c = call_of("simple", "which section is bash in?", NULL);
    if (!c)
        return;
    CHECK_INT(answer(c, "uti", "length", -0.01), ROUTE_SEND);       /* tier 1 cut off */
    CHECK_INT(answer(c, "", "stop", -0.01), ROUTE_SEND);             /* tier 2 empty */
    CHECK_INT(answer(c, "", "content_filter", 0), ROUTE_FINISH);     /* tier 3 filtered */
    CHECK(c->jobs[0].outcome == CALL_JOB_FAIL && !c->jobs[0].retryable);
    CHECK_STR(c->jobs[0].reason, "content_filter");
    CHECK(c->jobs[0].result == NULL);
    CHECK_INT(c->jobs[0].escalations, 2);
    call_free(c);
    /* ... but a usable answer from an earlier tier is kept */
    c = call_of("simple", "which section is bash in?", NULL);
    if (!c)
        return;
    CHECK_INT(answer(c, "shells", "stop", -1.5), ROUTE_SEND);  /* usable, under the bar */
    CHECK_INT(answer(c, "sh", "length", -0.01), ROUTE_SEND);
    CHECK_INT(answer(c, "", "stop", 0), ROUTE_FINISH);
    CHECK(c->jobs[0].outcome == CALL_JOB_DONE);
    CHECK_STR(c->jobs[0].result, "shells");
    CHECK_STR(c->jobs[0].reason, "escalation_failed");
    CHECK_INT(c->jobs[0].answer_tier, 0);
    call_free(c);
}

int main(void)
{
    TqErr err = {0};
    const char *dir = getenv("TIERQ_JOBS_DIR") ? getenv("TIERQ_JOBS_DIR") : "jobs";
    if (config_load(dir, &cfg, &err)) {
        printf("# %s\n", err.msg);
        return 1;
    }
    RUN(test_body_carries_the_jobs_labels_and_cap);
    RUN(test_unknown_param_fails_at_once);
    RUN(test_responses_table);
    RUN(test_last_tier_never_stores_an_unusable_answer);
    config_free(cfg);
    return check_done();
}
