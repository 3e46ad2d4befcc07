/* test_check.c — quality checks (worker/check.c): every hard gate and soft signal on chat completion
 * bodies as providers send them, parsed by oai_parse_response; the judge prompt and reply parsing;
 * normalisation against the cases of tierq.normalize_answer (sql/002_report.sql). No network. */
#include "../check.h"
#include "buf.h"
#include "check.h"
#include "json.h"
#include "openai.h"

#include <math.h>
#include <stdlib.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

/* A chat.completion in OpenAI's shape around the given JSON fragments (content and finish_reason
 * as JSON values, logprobs as a JSON value or NULL for none). */
static char *body(const char *content_json, const char *finish_json, const char *logprobs_json)
{
    Buf b;
    buf_init(&b, 0);
    buf_printf(&b,
               "{\"id\":\"chatcmpl-C1qW7tYk\",\"object\":\"chat.completion\",\"created\":1767000000,"
               "\"model\":\"qwen3-8b\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
               "\"content\":%s,\"refusal\":null},\"logprobs\":%s,\"finish_reason\":%s}],"
               "\"usage\":{\"prompt_tokens\":412,\"completion_tokens\":3,\"total_tokens\":415,"
               "\"prompt_tokens_details\":{\"cached_tokens\":384}}}",
               content_json, logprobs_json ? logprobs_json : "null", finish_json);
    return buf_take(&b);
}

static OaiResponse parse(const char *text)
{
    OaiResponse r;
    memset(&r, 0, sizeof r);
    TqErr err = {0};
    int rc = oai_parse_response(text, strlen(text), 0, &r, &err);
    CHECKF(rc == 0, "body does not parse: %s", err.msg);
    return r;
}

static TqChecks no_checks(void)
{
    TqChecks c;
    memset(&c, 0, sizeof c);
    c.judge_model = -1;
    return c;
}

/* Run check_answer on a response body. tmpl supplies checks, labels, judge and second sample;
 * content, finish_reason and logprobs come from the body. Returns check_answer's code. */
static int check_body(const char *text, CheckInput tmpl, CheckResult *res)
{
    OaiResponse r = parse(text);
    tmpl.content = r.content;
    tmpl.content_len = r.content_len;
    tmpl.finish_reason = r.finish_reason;
    tmpl.logprobs = &r.logprobs;
    tmpl.refusal = r.refusal;
    tmpl.has_reasoning = r.has_reasoning;
    TqErr err = {0};
    memset(res, 0, sizeof *res);
    int rc = check_answer(&tmpl, res, &err);
    oai_response_free(&r);
    return rc;
}

static CheckInput input(const TqChecks *ck)
{
    CheckInput in;
    memset(&in, 0, sizeof in);
    in.checks = ck;
    in.judge_score = CHECK_NO_JUDGE;
    return in;
}

static void check_norm(const char *in, const char *want)
{
    Buf b;
    buf_init(&b, 0);
    CHECK_INT(check_normalize(in, strlen(in), &b), 0);
    CHECKF(strcmp(b.data ? b.data : "", want) == 0, "normalize(\"%s\") = \"%s\", want \"%s\"", in,
           b.data ? b.data : "", want);
    buf_free(&b);
}

static bool near(double a, double b) { return fabs(a - b) < 1e-4; }

/* A subset of the Debian archive sections of jobs/classify.json. */
static char *sections[] = {(char *)"admin", (char *)"cli-mono", (char *)"devel", (char *)"gnu-r",
                           (char *)"libs",  (char *)"net",      (char *)"utils", (char *)"x11"};

static TqChecks classify_checks(void)
{
    TqChecks c = no_checks();
    c.labels = sections;
    c.nlabels = (int)(sizeof sections / sizeof sections[0]);
    c.logprobs = true;
    return c;
}

/* qwen3-8b classifying a package, with logprobs (the nested top_logprobs must not count). */
static const char UTILS_BODY[] =
    "{\"id\":\"chatcmpl-9f2c1e\",\"object\":\"chat.completion\",\"created\":1767000123,\"model\":\"qwen3-8b\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Utils.\"},"
    "\"logprobs\":{\"content\":["
    "{\"token\":\"Util\",\"logprob\":-0.0123,\"bytes\":[85,116,105,108],"
    "\"top_logprobs\":[{\"token\":\"Util\",\"logprob\":-0.0123,\"bytes\":[85,116,105,108]},"
    "{\"token\":\"Admin\",\"logprob\":-4.71,\"bytes\":[65,100,109,105,110]}]},"
    "{\"token\":\"s\",\"logprob\":-0.0004,\"bytes\":[115],\"top_logprobs\":[]},"
    "{\"token\":\".\",\"logprob\":-0.031,\"bytes\":[46],\"top_logprobs\":[]}]},"
    "\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":431,\"completion_tokens\":3,\"total_tokens\":434,"
    "\"prompt_tokens_details\":{\"cached_tokens\":384}}}";

/* The same model unsure of itself, answering outside the label set. */
static const char UTILITIES_LOW_BODY[] =
    "{\"id\":\"chatcmpl-9f2c1f\",\"object\":\"chat.completion\",\"created\":1767000124,\"model\":\"qwen3-8b\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Utilities\"},"
    "\"logprobs\":{\"content\":[{\"token\":\"Util\",\"logprob\":-1.2,\"bytes\":[85,116,105,108],\"top_logprobs\":[]},"
    "{\"token\":\"ities\",\"logprob\":-0.9,\"bytes\":[105,116,105,101,115],\"top_logprobs\":[]}]},"
    "\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":431,\"completion_tokens\":2,\"total_tokens\":433}}";

/* DeepSeek reasoner: reasoning_content, no logprobs, DeepSeek cache fields. */
static const char DEEPSEEK_BODY[] =
    "{\"id\":\"3f8a2b1c-7d4e\",\"object\":\"chat.completion\",\"created\":1767000200,"
    "\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"net\",\"reasoning_content\":\"The package is an SSH client, so it belongs to net.\"},"
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":431,"
    "\"completion_tokens\":57,\"total_tokens\":488,\"prompt_cache_hit_tokens\":384,"
    "\"prompt_cache_miss_tokens\":47,\"completion_tokens_details\":{\"reasoning_tokens\":56}},"
    "\"system_fingerprint\":\"fp_7e0991cad4_prod0820_fp8_kvcache\"}";

/* ---- normalisation (mirrors tierq.normalize_answer) ------------------------------------------- */

static void test_normalize_sql_examples(void)
{
    /* The examples in sql/002_report.sql and the brief. */
    check_norm(" \"Billing.\" ", "billing");
    check_norm("Hello,   World!", "hello world");
    check_norm("  Hello,   World! ", "hello world");
    check_norm("(yes)", "yes");
    check_norm("3.14", "3.14");
    check_norm("\"utils\"", "utils");
    check_norm("e-mail.", "e-mail");
    check_norm("a.b.,", "a.b");
    check_norm("a . b", "a b");
    check_norm("**Utils**", "utils");
    check_norm("`x11`", "x11");
    check_norm("_x_", "x");
    check_norm("$5", "5");
    check_norm("GNU-R.", "gnu-r");
    check_norm("a\tb\n\nc\r\n", "a b c");
    check_norm("a\vb\fc", "a b c");
    check_norm("...", "");
    check_norm("", "");
    check_norm("   ", "");
    check_norm("- item one\n- item two", "item one item two");
}

static void test_normalize_unicode_like_postgres(void)
{
    /* Results of tierq.normalize_answer in the test database (C.UTF-8), checked with psql. */
    check_norm("\xC3\x89" "COLE", "\xC3\xA9" "cole");                          /* ÉCOLE -> école */
    check_norm("\xE2\x80\xA6" "wait" "\xE2\x80\xA6", "wait");                  /* …wait… */
    check_norm("\xE2\x80\x94" "dash" "\xE2\x80\x94", "dash");                  /* —dash— */
    check_norm("\xC2\xBF" "qu\xC3\xA9?", "qu\xC3\xA9");                        /* ¿qué? */
    check_norm("\xE2\x82\xAC" "5", "5");                                       /* €5 */
    check_norm("\xC2\xAB" "x" "\xC2\xBB", "x");                                /* «x» */
    check_norm("\xE2\x80\x9C" "Billing." "\xE2\x80\x9D", "billing");           /* “Billing.” */
    check_norm("\xE2\x80\x9E" "ja" "\xE2\x80\x9C", "ja");                      /* „ja“ */
    check_norm("it\xE2\x80\x99s", "it\xE2\x80\x99s");                          /* inner ’ stays */
    check_norm("a\xE2\x80\x83" "b", "a b");                                    /* em space separates */
    check_norm("\xCE\xA3" "k", "\xCF\x83" "k");                                /* Σk -> σk */
    /* Bytes that are not UTF-8 (PostgreSQL cannot store them) are kept, never dropped or merged. */
    check_norm("A\xFF" "B", "a\xFF" "b");
    check_norm("\xC3", "\xC3");
}

static void test_normalize_restores_buffer_at_cap(void)
{
    Buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "ab"), 0);
    CHECK_INT(check_normalize("Hello, World!", 13, &b), TQ_ELIMIT);
    CHECK_INT(b.len, 2);
    CHECK_STR(b.data, "ab");
    CHECK_INT(check_normalize("  OK. ", 6, &b), 0);
    CHECK_STR(b.data, "abok");
    buf_free(&b);
}

/* ---- hard gates --------------------------------------------------------------------------------- */

static void test_gate_finish_length(void)
{
    /* A summary cut at max_tokens: the text looks fine but is incomplete. */
    char *t = body("\"The package provides a set of command-line utilities for manipul\"", "\"length\"", NULL);
    TqChecks ck = no_checks();
    CheckResult res;
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK(res.score == 0);
    CHECK_STR(res.reason, "truncated");
    CHECKF(strstr(res.detail, "length") != NULL && strstr(res.detail, "cut off") != NULL, "detail: %s", res.detail);
    CHECK(res.canonical == NULL);
    check_result_free(&res);
    free(t);
}

static void test_gate_finish_filter_and_others(void)
{
    TqChecks ck = no_checks();
    CheckResult res;
    /* Content filter: content null. The finish gate names the cause, not "empty". */
    char *t = body("null", "\"content_filter\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK_STR(res.reason, "content_filter");
    free(t);
    /* DeepSeek out of capacity. */
    t = body("\"Utils\"", "\"insufficient_system_resource\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "provider_interrupted");
    free(t);
    /* A tool call instead of an answer. */
    t = body("null", "\"tool_calls\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "tool_calls");
    free(t);
    /* finish_reason null, eos_token, end_turn (servers that say "I ended" differently): a normal
     * stop when there is content. */
    static const char *const normal[] = {"null", "\"eos_token\"", "\"end_turn\"", "\"eos\"", "\"stop_sequence\""};
    for (size_t i = 0; i < sizeof normal / sizeof normal[0]; i++) {
        t = body("\"utils\"", normal[i], NULL);
        CHECK_INT(check_body(t, input(&ck), &res), 0);
        CHECKF(!res.gate_failed && strcmp(res.reason, "passed") == 0, "finish %s: %s", normal[i], res.reason);
        free(t);
    }
    /* ... but not without content. */
    t = body("\"\"", "null", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "empty");
    free(t);
    /* An unknown value: a stable reason, the value itself in the detail. */
    t = body("\"utils\"", "\"abort\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "finish_other");
    CHECKF(strstr(res.detail, "abort") != NULL, "detail: %s", res.detail);
    free(t);
    /* "stop" passes. */
    t = body("\"utils\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    CHECK_STR(res.reason, "passed");
    free(t);
}

static void test_gate_empty(void)
{
    TqChecks ck = no_checks();
    CheckResult res;
    char *t = body("null", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK(res.score == 0);
    CHECK_STR(res.reason, "empty");
    free(t);
    t = body("\"  \\n\\t \\r\\n\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "empty");
    free(t);
    /* Punctuation is not whitespace: "." is an answer (the label gate may still reject it). */
    t = body("\".\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    free(t);
}

static void test_gate_length_bounds(void)
{
    /* "Héllo wörld" is 11 characters and 13 bytes; surrounding whitespace does not count. */
    char *t = body("\"\\n  H\\u00e9llo w\\u00f6rld \\n\"", "\"stop\"", NULL);
    TqChecks ck = no_checks();
    CheckResult res;
    ck.min_chars = 11;
    ck.max_chars = 11;
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECKF(!res.gate_failed, "%s: %s", res.reason, res.detail);
    ck.max_chars = 10;
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK_STR(res.reason, "too_long");
    CHECKF(strstr(res.detail, "11") != NULL, "detail: %s", res.detail);
    ck.max_chars = 0;
    ck.min_chars = 12;
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "too_short");
    free(t);
}

static void test_gate_labels_canonical(void)
{
    TqChecks ck = classify_checks();
    CheckResult res;
    CHECK_INT(check_body(UTILS_BODY, input(&ck), &res), 0);
    CHECKF(!res.gate_failed, "%s: %s", res.reason, res.detail);
    CHECK_STR(res.reason, "passed");
    CHECK_STR(res.canonical, "utils"); /* stored as the label, not as "Utils." */
    check_result_free(&res);
    CHECK(res.canonical == NULL);

    CHECK_INT(check_body(UTILITIES_LOW_BODY, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK(res.score == 0);
    CHECK_STR(res.reason, "label_not_allowed");
    CHECK(res.canonical == NULL);
    CHECKF(strstr(res.detail, "Utilities") != NULL && strstr(res.detail, "8 labels") != NULL, "detail: %s",
           res.detail);
    /* The confidence is still reported for the ledger. */
    CHECK(near(res.confidence, 0.332871));
}

static void test_gate_labels_variants(void)
{
    TqChecks ck = classify_checks();
    ck.logprobs = false;
    static const struct {
        const char *content_json, *canonical; /* NULL: not allowed */
    } cases[] = {
        {"\"**Utils**\"", "utils"},
        {"\"\\\"UTILS\\\"\"", "utils"},
        {"\"utils\\n\"", "utils"},
        {"\"`x11`\"", "x11"},
        {"\"GNU-R.\"", "gnu-r"},
        {"\"Cli-Mono\"", "cli-mono"},
        {"\"\\u201cnet\\u201d\"", "net"},
        {"\"utilities\"", NULL},
        {"\"The answer is utils\"", NULL},
        {"\"utils, net\"", NULL},
        {"\"gnur\"", NULL},
        {"\"cli mono\"", NULL},
        {"\"...\"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = body(cases[i].content_json, "\"stop\"", NULL);
        CheckResult res;
        CHECK_INT(check_body(t, input(&ck), &res), 0);
        if (cases[i].canonical) {
            CHECKF(!res.gate_failed && res.canonical && strcmp(res.canonical, cases[i].canonical) == 0,
                   "%s: %s %s canonical %s", cases[i].content_json, res.reason, res.detail,
                   res.canonical ? res.canonical : "(null)");
        } else {
            CHECKF(res.gate_failed && strcmp(res.reason, "label_not_allowed") == 0 && !res.canonical,
                   "%s should be rejected: %s", cases[i].content_json, res.reason);
        }
        check_result_free(&res);
        free(t);
    }
}

static void test_gate_labels_job_override_and_as_written(void)
{
    /* params.labels replaces the kind's set: "utils" is a kind label but not one of the job's. */
    TqChecks ck = classify_checks();
    ck.logprobs = false;
    const char *const job_labels[] = {"Billing", "Shipping", "Other"};
    CheckInput in = input(&ck);
    in.labels = job_labels;
    in.nlabels = 3;
    CheckResult res;
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK(res.gate_failed);
    CHECK_STR(res.reason, "label_not_allowed");
    CHECKF(strstr(res.detail, "3 labels") != NULL, "detail: %s", res.detail);
    /* canonical is the label as the job wrote it. */
    char *t = body("\"billing.\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, in, &res), 0);
    CHECK(!res.gate_failed);
    CHECK_STR(res.canonical, "Billing");
    check_result_free(&res);
    free(t);
    /* A label whose normal form is longer than the label itself ("ȺB" -> "ⱥb", 3 -> 4 bytes). */
    const char *const grow[] = {"x11", "\xC8\xBA" "B"};
    in.labels = grow;
    in.nlabels = 2;
    t = body("\"\\u2c65b\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, in, &res), 0);
    CHECKF(!res.gate_failed, "%s: %s", res.reason, res.detail);
    CHECK_STR(res.canonical, "\xC8\xBA" "B");
    check_result_free(&res);
    free(t);
    /* Job labels apply even for a call without kind checks. */
    CheckInput bare = input(NULL);
    bare.labels = job_labels;
    bare.nlabels = 3;
    CHECK_INT(check_body(UTILS_BODY, bare, &res), 0);
    CHECK_STR(res.reason, "label_not_allowed");
    /* nlabels == 0: the kind's set applies. */
    in.labels = NULL;
    in.nlabels = 0;
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK_STR(res.canonical, "utils");
    check_result_free(&res);
}

static void test_gate_labels_huge_answer(void)
{
    /* A model that rambles for 2 MB matches no label; the work stops at the longest label. */
    size_t n = 2u << 20;
    char *content = malloc(n + 1);
    CHECK(content != NULL);
    if (!content)
        return;
    memset(content, 'u', n);
    content[n] = '\0';
    TqChecks ck = classify_checks();
    CheckInput in = input(&ck);
    in.content = content;
    in.content_len = n;
    in.finish_reason = "stop";
    CheckResult res;
    TqErr err = {0};
    CHECK_INT(check_answer(&in, &res, &err), 0);
    CHECK_STR(res.reason, "label_not_allowed");
    CHECK(strlen(res.detail) < sizeof res.detail);
    /* 2 MB of punctuation and then a label still matches: the bound is on the normalised length,
     * not the raw one. */
    memset(content, '.', n - 6);
    memcpy(content + n - 6, " utils", 6);
    CHECK_INT(check_answer(&in, &res, &err), 0);
    CHECK_STR(res.canonical, "utils");
    check_result_free(&res);
    free(content);
}

/* The JSON gate is strict: what jsmn alone lets through is not JSON, and a keyless "object" does not
 * carry its keys. */
static void test_gate_json_strict_table(void)
{
    TqChecks ck = no_checks();
    char *keys[] = {(char *)"name"};
    ck.json_keys = keys;
    ck.njson_keys = 1;
    static const char *const bad[] = {"{\"name\":1,}", "[1 2]", "{\"a\"}", "{\"name\",\"x\"}", "{\"name\" 1}",
                                      "{\"name\":1}}", "{\"name\": tru}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CheckInput in = input(&ck);
        in.content = bad[i];
        in.content_len = strlen(bad[i]);
        in.finish_reason = "stop";
        CheckResult res;
        TqErr err = {0};
        CHECK_INT(check_answer(&in, &res, &err), 0);
        CHECKF(res.gate_failed && (strcmp(res.reason, "invalid_json") == 0 || strcmp(res.reason, "json_key_missing") == 0),
               "%s passed the gate (%s)", bad[i], res.reason);
        check_result_free(&res);
    }
}

static void test_gate_json(void)
{
    TqChecks ck = no_checks();
    char *keys[] = {(char *)"section", (char *)"reason"};
    ck.json_keys = keys;
    ck.njson_keys = 2;
    CheckResult res;
    /* json_object response_format: a compact object with both keys. */
    char *t = body("\"{\\\"section\\\": \\\"utils\\\", \\\"reason\\\": \\\"command-line tools\\\"}\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECKF(!res.gate_failed, "%s: %s", res.reason, res.detail);
    free(t);
    /* A key missing. */
    t = body("\"{\\\"section\\\": \\\"utils\\\"}\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK_STR(res.reason, "json_key_missing");
    CHECKF(strstr(res.detail, "\"reason\"") != NULL, "detail: %s", res.detail);
    free(t);
    /* Valid JSON, but an array. */
    t = body("\"[\\\"utils\\\", \\\"command-line tools\\\"]\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "json_key_missing");
    CHECKF(strstr(res.detail, "array") != NULL, "detail: %s", res.detail);
    free(t);
    /* The common failure without json mode: JSON inside a markdown fence. */
    t = body("\"```json\\n{\\\"section\\\": \\\"utils\\\", \\\"reason\\\": \\\"x\\\"}\\n```\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK_STR(res.reason, "invalid_json");
    CHECKF(strstr(res.detail, "fence") != NULL, "detail: %s", res.detail);
    free(t);
    /* Truncated object (finish_reason said stop, but the JSON is cut). */
    t = body("\"{\\\"section\\\": \\\"utils\\\", \\\"reason\\\": \\\"comm\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "invalid_json");
    free(t);
    /* Two values in a row. */
    t = body("\"{\\\"section\\\": 1, \\\"reason\\\": 2} {}\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "invalid_json");
    free(t);
    /* json without keys: any single JSON value. */
    ck.json_keys = NULL;
    ck.njson_keys = 0;
    ck.json = true;
    t = body("\" [1, 2, 3]\\n\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECKF(!res.gate_failed, "%s: %s", res.reason, res.detail);
    free(t);
    t = body("\"{'section': 'utils'}\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "invalid_json");
    free(t);
}

static void test_gate_regex(void)
{
    TqChecks ck = no_checks();
    ck.regex = (char *)"^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
    CheckResult res;
    /* Matched against the trimmed answer: the trailing newline does not break ^...$. */
    char *t = body("\"2024-03-15\\n\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECKF(!res.gate_failed, "%s: %s", res.reason, res.detail);
    free(t);
    t = body("\"The date is 2024-03-15.\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK(res.score == 0);
    CHECK_STR(res.reason, "regex_mismatch");
    /* Unanchored patterns search. */
    ck.regex = (char *)"[0-9]{4}-[0-9]{2}";
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    /* A pattern that does not compile is an error, and the result is left alone. */
    ck.regex = (char *)"([0-9]";
    OaiResponse r = parse(t);
    CheckInput in = input(&ck);
    in.content = r.content;
    in.content_len = r.content_len;
    in.finish_reason = r.finish_reason;
    CheckResult untouched;
    memset(&untouched, 0x5A, sizeof untouched);
    TqErr err = {0};
    CHECK_INT(check_answer(&in, &untouched, &err), TQ_EINVAL);
    CHECKF(strstr(err.msg, "regex") != NULL, "err: %s", err.msg);
    CHECK(((unsigned char *)&untouched)[0] == 0x5A && untouched.detail[10] == 0x5A);
    oai_response_free(&r);
    free(t);
}

/* Refusals, reasoning-only replies and inline <think> blocks: never an answer. */
static void test_gate_refusal_and_reasoning(void)
{
    TqChecks ck = no_checks();
    CheckResult res;
    /* OpenAI structured outputs: content null, the refusal in its own field. */
    const char *refused = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
                          "\"refusal\":\"I'm sorry, I can't help with that request.\"},\"finish_reason\":\"stop\"}],"
                          "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":10}}";
    CHECK_INT(check_body(refused, input(&ck), &res), 0);
    CHECK(res.gate_failed);
    CHECK_STR(res.reason, "refusal");
    CHECKF(strstr(res.detail, "can't help with that request") != NULL, "detail: %s", res.detail);
    check_result_free(&res);
    /* A reasoning model that spent its budget thinking: reasoning_content, empty content. */
    const char *thinking = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\","
                           "\"reasoning_content\":\"Let me think about the sections...\"},\"finish_reason\":\"stop\"}]}";
    CHECK_INT(check_body(thinking, input(&ck), &res), 0);
    CHECK_STR(res.reason, "empty");
    CHECKF(strstr(res.detail, "only reasoning") != NULL, "detail: %s", res.detail);
    check_result_free(&res);
    /* Qwen3 without a reasoning parser: the <think> block is not the answer. */
    char *t = body("\"<think>\\nThe user wants a section.\\n</think>\\n\\nutils\"", "\"stop\"", NULL);
    OaiResponse r = parse(t);
    CHECK_STR(r.content, "utils");
    CHECK(r.has_reasoning);
    oai_response_free(&r);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    check_result_free(&res);
    free(t);
    /* ... cut off while thinking: nothing is left, and the finish says why. */
    t = body("\"<think>\\nThe user wants a section. Maybe net, maybe\"", "\"length\"", NULL);
    r = parse(t);
    CHECK_STR(r.content, "");
    oai_response_free(&r);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "truncated");
    check_result_free(&res);
    free(t);
}

static void test_gate_order(void)
{
    /* Several gates would fail; the first in the documented order decides. */
    TqChecks ck = classify_checks();
    ck.min_chars = 3;
    ck.regex = (char *)"^x$";
    CheckResult res;
    char *t = body("null", "\"length\"", NULL); /* finish and empty */
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "truncated");
    free(t);
    t = body("\"ut\"", "\"stop\"", NULL); /* too short, not a label, no regex match */
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "too_short");
    free(t);
    t = body("\"utilities\"", "\"stop\"", NULL); /* not a label, no regex match */
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "label_not_allowed");
    free(t);
    t = body("\"utils\"", "\"stop\"", NULL); /* a label, no regex match: no canonical either */
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "regex_mismatch");
    CHECK(res.canonical == NULL);
    free(t);
}

/* ---- soft signals ------------------------------------------------------------------------------ */

static void test_logprob_confidence_formula(void)
{
    OaiResponse r = parse(UTILS_BODY);
    CHECK_INT(r.logprobs.n_tokens, 3);
    /* exp((sum + min) / (n + 1)) = exp((-0.0437 - 0.031) / 4) */
    double c = check_logprob_confidence(&r.logprobs);
    CHECKF(near(c, 0.981498), "confidence %.6f", c);
    oai_response_free(&r);
    r = parse(UTILITIES_LOW_BODY);
    c = check_logprob_confidence(&r.logprobs); /* exp(-3.3 / 3) */
    CHECKF(near(c, 0.332871), "confidence %.6f", c);
    oai_response_free(&r);
    /* No logprobs in the body, or no struct: NaN. */
    r = parse(DEEPSEEK_BODY);
    CHECK(!r.logprobs.present);
    CHECK(isnan(check_logprob_confidence(&r.logprobs)));
    CHECK(isnan(check_logprob_confidence(NULL)));
    oai_response_free(&r);
}

/* A body whose logprobs.content has ntok tokens of logprob -0.01 and one of -2.5. */
static char *one_doubtful_token_body(int ntok)
{
    Buf lp;
    buf_init(&lp, 0);
    buf_puts(&lp, "{\"content\":[");
    for (int i = 0; i < ntok; i++)
        buf_printf(&lp, "{\"token\":\" w%d\",\"logprob\":%s,\"bytes\":[32,119],\"top_logprobs\":[]},", i,
                   i == ntok / 2 ? "-2.5" : "-0.01");
    lp.data[lp.len - 1] = ']';
    buf_puts(&lp, "}");
    char *t = body("\"some words\"", "\"stop\"", lp.data);
    buf_free(&lp);
    return t;
}

static void test_logprob_confidence_short_vs_long(void)
{
    /* One doubtful token decides a two-token label, but not a 60-token answer. */
    char *t = one_doubtful_token_body(2);
    OaiResponse r = parse(t);
    double shortc = check_logprob_confidence(&r.logprobs);
    double mean = exp(r.logprobs.sum_logprob / r.logprobs.n_tokens);
    CHECKF(near(shortc, exp((-2.51 - 2.5) / 3)), "short %.6f", shortc);
    CHECKF(shortc < mean, "short %.4f should be under exp(mean) %.4f", shortc, mean);
    oai_response_free(&r);
    free(t);
    t = one_doubtful_token_body(60);
    r = parse(t);
    double longc = check_logprob_confidence(&r.logprobs);
    CHECKF(near(longc, exp((-0.59 - 2.5 - 2.5) / 61)), "long %.6f", longc);
    CHECKF(longc > 0.9 && longc > 10 * exp(-2.5), "long %.4f", longc);
    oai_response_free(&r);
    free(t);
}

static void test_score_logprobs_signal(void)
{
    TqChecks ck = classify_checks();
    CheckResult res;
    /* Confident label: score is the confidence. */
    CHECK_INT(check_body(UTILS_BODY, input(&ck), &res), 0);
    CHECKF(near(res.score, 0.981498), "score %.6f", res.score);
    CHECK(near(res.confidence, res.score));
    CHECKF(strstr(res.detail, "logprobs 0.981") != NULL, "detail: %s", res.detail);
    check_result_free(&res);
    /* A label answered with low logprobs: passes the gates, scores under a 0.8 bar. */
    char *t = body("\"Net\"", "\"stop\"",
                   "{\"content\":[{\"token\":\"Net\",\"logprob\":-0.6931,\"bytes\":[78,101,116],\"top_logprobs\":[]}]}");
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    CHECKF(near(res.score, 0.5), "score %.6f", res.score); /* one token: exp(min) = 0.5 */
    CHECK_STR(res.canonical, "net");
    check_result_free(&res);
    /* Kind without the logprobs check: confidence reported, not counted. */
    ck.logprobs = false;
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(res.score == 1.0);
    CHECK(near(res.confidence, 0.5));
    check_result_free(&res);
    free(t);
    /* The provider returned no logprobs (deepseek-reasoner, Ollama, many gateways): the signal is
     * missing, and a missing signal is never a pass — the answer scores 0 and escalates. */
    ck.logprobs = true;
    CHECK_INT(check_body(DEEPSEEK_BODY, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    CHECK(res.score == 0);
    CHECK(res.missing == CHECK_SIGNAL_LOGPROBS);
    CHECKF(strstr(res.detail, "logprobs missing") != NULL, "detail: %s", res.detail);
    CHECK(isnan(res.confidence));
    CHECK_STR(res.canonical, "net");
    check_result_free(&res);
    /* missing_signal other_checks: the other signals decide, and with none present it is still 0. */
    ck.missing_signal = CHECK_MISSING_OTHER_CHECKS;
    CHECK_INT(check_body(DEEPSEEK_BODY, input(&ck), &res), 0);
    CHECK(res.score == 0);
    CHECK(res.missing == CHECK_SIGNAL_LOGPROBS);
    check_result_free(&res);
    ck.judge_model = 0;
    CheckInput judged = input(&ck);
    judged.judge_score = 0.7;
    CHECK_INT(check_body(DEEPSEEK_BODY, judged, &res), 0);
    CHECKF(near(res.score, 0.7), "score %.4f", res.score);
    CHECK(res.missing == CHECK_SIGNAL_LOGPROBS);
    check_result_free(&res);
    /* A signal the caller did not ask for on purpose counts neither way. */
    ck.missing_signal = CHECK_MISSING_ESCALATE;
    ck.judge_model = -1;
    CheckInput skip = input(&ck);
    skip.not_asked = CHECK_SIGNAL_LOGPROBS;
    CHECK_INT(check_body(DEEPSEEK_BODY, skip, &res), 0);
    CHECK(res.score == 1.0 && res.missing == 0);
    check_result_free(&res);
}

static void test_no_signal_scores_one(void)
{
    TqChecks ck = no_checks();
    ck.min_chars = 2;
    ck.max_chars = 2000;
    CheckResult res;
    char *t = body("\"Paris is the capital of France.\"", "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK(!res.gate_failed);
    CHECK(res.score == 1.0);
    CHECK_STR(res.reason, "passed");
    CHECKF(strstr(res.detail, "no soft signal") != NULL, "detail: %s", res.detail);
    CHECK(res.canonical == NULL); /* not a label kind */
    free(t);
    /* No checks at all: only the finish and empty gates. */
    t = body("\"anything\"", "\"stop\"", NULL);
    CheckInput in = input(NULL);
    CHECK_INT(check_body(t, in, &res), 0);
    CHECK(res.score == 1.0);
    free(t);
}

/* ---- judge ----------------------------------------------------------------------------------- */

static void test_judge_prompt_exact(void)
{
    Buf sys, user;
    buf_init(&sys, 0);
    buf_init(&user, 0);
    CHECK_INT(check_judge_prompt("Which Debian section holds openssh-client?", "net", &sys, &user), 0);
    CHECK_STR(sys.data, "You grade answers. Reply with one integer from 0 to 10: how likely the answer is correct "
                        "and complete. Reply with the number only.");
    CHECK_STR(user.data, "Question:\nWhich Debian section holds openssh-client?\n\nAnswer:\nnet");
    CHECK(strncmp(sys.data, "You grade answers.", 18) == 0); /* what the simulator matches on */
    /* Multi-line question and answer, passed through byte for byte. */
    buf_reset(&sys);
    buf_reset(&user);
    CHECK_INT(check_judge_prompt("Line 1\n\nLine 2 \"q\"", " a\tb \n", &sys, &user), 0);
    CHECK_STR(user.data, "Question:\nLine 1\n\nLine 2 \"q\"\n\nAnswer:\n a\tb \n");
    CHECK_INT(check_judge_prompt(NULL, "x", &sys, &user), TQ_EINVAL);
    buf_free(&sys);
    buf_free(&user);
    /* A capped buffer: nothing half-written stays behind. */
    Buf small;
    buf_init(&small, 20);
    buf_init(&user, 0);
    CHECK_INT(buf_puts(&user, "keep"), 0);
    CHECK(check_judge_prompt("q", "a", &small, &user) == TQ_ELIMIT);
    CHECK_INT(small.len, 0);
    CHECK_STR(user.data, "keep");
    buf_free(&small);
    buf_free(&user);
}

static void test_judge_parse_accepts(void)
{
    static const struct {
        const char *reply;
        double want;
    } ok[] = {
        {"7", 0.7},         {"7/10", 0.7},           {"Score: 7", 0.7},      {"**8**", 0.8},
        {" 9.\n", 0.9},     {"10", 1.0},             {"0", 0.0},             {"8.5", 0.85},
        {"{\"score\": 6}", 0.6}, {"7 / 10", 0.7},    {"4/5", 0.8},           {"8 out of 10", 0.8},
        {"Score: 3/10.\n\nThe answer names the wrong section.", 0.3},       {"`9`", 0.9},
        {"<think>\nThe answer lists 3 of 4 steps; 1 is wrong.\n</think>\n\n6", 0.6},
        {"<think>\n\n</think>\n\n9", 0.9},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double s = -1;
        int rc = check_parse_judge(ok[i].reply, &s);
        CHECKF(rc == 0 && near(s, ok[i].want), "\"%s\": rc %d score %g, want %g", ok[i].reply, rc, s, ok[i].want);
    }
}

static void test_judge_parse_rejects(void)
{
    static const char *const bad[] = {
        "",          "N/A",      "I cannot grade this.", "11",        "-3",  "7 or 8",
        "0 to 10: 7", "12/10",   "3/0",                  "100",       "seven",
        "Score: 7. The answer covers 2 of 3 points.",
        "<think>\nI would say 7.\n</think>", /* nothing after the thinking */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double s = 0.123;
        int rc = check_parse_judge(bad[i], &s);
        CHECKF(rc == TQ_EPARSE && s == 0.123, "\"%s\" should be rejected: rc %d score %g", bad[i], rc, s);
    }
    double s = 0.5;
    CHECK_INT(check_parse_judge(NULL, &s), TQ_EINVAL);
}

static void test_judge_reply_bodies(void)
{
    /* The judge model's replies as they arrive. */
    char *t = body("\"8\"", "\"stop\"", NULL);
    OaiResponse r = parse(t);
    double s = -1;
    CHECK_INT(check_parse_judge(r.content, &s), 0);
    CHECK(near(s, 0.8));
    oai_response_free(&r);
    free(t);
    t = body("\"{\\\"score\\\":2}\"", "\"stop\"", NULL); /* json_object mode */
    r = parse(t);
    CHECK_INT(check_parse_judge(r.content, &s), 0);
    CHECK(near(s, 0.2));
    oai_response_free(&r);
    free(t);
    t = body("null", "\"content_filter\"", NULL); /* refused: "" */
    r = parse(t);
    CHECK_INT(check_parse_judge(r.content, &s), TQ_EPARSE);
    oai_response_free(&r);
    free(t);
}

static void test_score_judge_signal(void)
{
    TqChecks ck = classify_checks();
    ck.judge_model = 0;
    CheckInput in = input(&ck);
    CheckResult res;
    /* Confident tokens, doubtful judge: the minimum. */
    in.judge_score = 0.3;
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK(!res.gate_failed);
    CHECKF(near(res.score, 0.3), "score %.4f", res.score);
    CHECKF(strstr(res.detail, "judge 0.300") != NULL && strstr(res.detail, "logprobs") != NULL, "detail: %s",
           res.detail);
    check_result_free(&res);
    /* Doubtful tokens, confident judge: still the minimum. */
    in.judge_score = 0.9;
    char *t = body("\"Net\"", "\"stop\"",
                   "{\"content\":[{\"token\":\"Net\",\"logprob\":-0.6931,\"bytes\":[78,101,116],\"top_logprobs\":[]}]}");
    CHECK_INT(check_body(t, in, &res), 0);
    CHECK(near(res.score, 0.5));
    check_result_free(&res);
    free(t);
    /* The judge alone (no logprobs from deepseek-reasoner: missing, so 0 unless other_checks). */
    in.judge_score = 0.7;
    CHECK_INT(check_body(DEEPSEEK_BODY, in, &res), 0);
    CHECK(res.score == 0 && res.missing == CHECK_SIGNAL_LOGPROBS);
    check_result_free(&res);
    ck.missing_signal = CHECK_MISSING_OTHER_CHECKS;
    CHECK_INT(check_body(DEEPSEEK_BODY, in, &res), 0);
    CHECK(near(res.score, 0.7));
    check_result_free(&res);
    /* No judge score either (call failed, reply unreadable): both missing, never a pass. */
    in.judge_score = CHECK_NO_JUDGE;
    CHECK_INT(check_body(DEEPSEEK_BODY, in, &res), 0);
    CHECK(res.score == 0);
    CHECK(res.missing == (CHECK_SIGNAL_LOGPROBS | CHECK_SIGNAL_JUDGE));
    check_result_free(&res);
    /* A kind without a judge ignores a judge score (a zeroed CheckInput carries 0). */
    ck.judge_model = -1;
    ck.logprobs = false;
    in.judge_score = 0;
    CHECK_INT(check_body(DEEPSEEK_BODY, in, &res), 0);
    CHECK(res.score == 1.0);
    check_result_free(&res);
    ck.logprobs = true;
    ck.missing_signal = CHECK_MISSING_ESCALATE;
    /* Out of range is the caller's bug. */
    ck.judge_model = 0;
    in.judge_score = 7;
    CHECK_INT(check_body(DEEPSEEK_BODY, in, &res), TQ_EINVAL);
    /* A failed gate is 0 whatever the judge says. */
    in.judge_score = 1.0;
    CHECK_INT(check_body(UTILITIES_LOW_BODY, in, &res), 0);
    CHECK(res.gate_failed && res.score == 0);
}

/* ---- agreement --------------------------------------------------------------------------------- */

static void test_samples_agree(void)
{
    CHECK(check_samples_agree("Utils.", "utils"));
    CHECK(check_samples_agree("  Paris ", "\"paris\""));
    CHECK(check_samples_agree("Hello,   World!", "hello world"));
    CHECK(check_samples_agree("\xC3\x89" "cole", "\xC3\xA9" "COLE."));
    CHECK(!check_samples_agree("utils", "net"));
    CHECK(!check_samples_agree("3.14", "314"));
    CHECK(!check_samples_agree("hello world", "helloworld"));
    CHECK(!check_samples_agree("utils", "utils net"));
    CHECK(!check_samples_agree("utils", NULL));
    CHECK(check_samples_agree("", "..."));
}

static void test_score_agreement_signal(void)
{
    TqChecks ck = classify_checks();
    ck.agreement = true;
    CheckInput in = input(&ck);
    CheckResult res;
    /* Agreement does not lift the score above the logprob confidence... */
    in.second_sample = "utils";
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK(near(res.score, 0.981498));
    CHECKF(strstr(res.detail, "agreement 1") != NULL, "detail: %s", res.detail);
    check_result_free(&res);
    /* ...and disagreement vetoes: score 0, though no gate failed. */
    in.second_sample = "admin";
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK(!res.gate_failed);
    CHECK(res.score == 0);
    CHECK_STR(res.reason, "passed");
    CHECKF(strstr(res.detail, "agreement 0") != NULL, "detail: %s", res.detail);
    check_result_free(&res);
    /* Agreement alone. */
    ck.logprobs = false;
    in.second_sample = "\"UTILS\"";
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK(res.score == 1.0);
    check_result_free(&res);
    /* The kind does not ask for agreement: a second sample is ignored. */
    ck.agreement = false;
    in.second_sample = "admin";
    CHECK_INT(check_body(UTILS_BODY, in, &res), 0);
    CHECK(res.score == 1.0);
    check_result_free(&res);
}

/* ---- results ----------------------------------------------------------------------------------- */

/* No C0 or C1 control character, no U+2028/U+2029: one line on any terminal or log viewer. */
static bool printable_line(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7F || (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) ||
            (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)))
            return false;
    }
    return true;
}

static void test_detail_is_one_bounded_line(void)
{
    TqChecks ck = classify_checks();
    CheckResult res;
    char *t = body("\"I think\\nthe\\u0085section\\u2028\\tis \\u00abutils\\u00bb but it could also be admin or devel, "
                   "depending on how you look at it; the package ships tools and a library\"",
                   "\"stop\"", NULL);
    CHECK_INT(check_body(t, input(&ck), &res), 0);
    CHECK_STR(res.reason, "label_not_allowed");
    CHECK(strlen(res.detail) < sizeof res.detail);
    CHECKF(printable_line(res.detail), "detail: %s", res.detail);
    CHECKF(utf8_valid(res.detail, strlen(res.detail)), "detail: %s", res.detail);
    CHECKF(strstr(res.detail, "...") != NULL, "detail: %s", res.detail);
    free(t);
    /* The excerpt is cut on a character boundary and stays short, whatever the character widths. */
    static const char *const wide[] = {"\\u00e9", "\\u20ac", "\\ud83d\\ude00"}; /* 2, 3, 4 bytes */
    for (int w = 0; w < 3; w++) {
        for (int lead = 0; lead < 4; lead++) {
            Buf b;
            buf_init(&b, 0);
            buf_puts(&b, "\"");
            for (int i = 0; i < lead; i++)
                buf_puts(&b, "x");
            for (int i = 0; i < 100; i++)
                buf_puts(&b, wide[w]);
            buf_puts(&b, "\"");
            t = body(b.data, "\"stop\"", NULL);
            CHECK_INT(check_body(t, input(&ck), &res), 0);
            CHECKF(utf8_valid(res.detail, strlen(res.detail)), "detail: %s", res.detail);
            const char *q1 = strchr(res.detail, '"'), *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
            CHECKF(q1 && q2 && q2 - q1 - 1 <= 71, "excerpt of %d bytes: %s", q1 && q2 ? (int)(q2 - q1 - 1) : -1,
                   res.detail);
            buf_free(&b);
            free(t);
        }
    }
}

static void test_errors_leave_result_alone(void)
{
    TqChecks ck = no_checks();
    CheckInput in = input(&ck);
    CheckResult res;
    memset(&res, 0x5A, sizeof res);
    TqErr err = {0};
    CHECK_INT(check_answer(NULL, &res, &err), TQ_EINVAL);
    CHECK_INT(check_answer(&in, NULL, &err), TQ_EINVAL);
    in.content = NULL;
    in.content_len = 3;
    CHECK_INT(check_answer(&in, &res, &err), TQ_EINVAL);
    in.content_len = 0;
    in.nlabels = 2; /* labels NULL */
    CHECK_INT(check_answer(&in, &res, &err), TQ_EINVAL);
    CHECK(((unsigned char *)&res)[0] == 0x5A && res.detail[0] == 0x5A);
    check_result_free(NULL);
    CheckResult zero;
    memset(&zero, 0, sizeof zero);
    check_result_free(&zero);
    CHECK(zero.canonical == NULL);
}

int main(void)
{
    RUN(test_normalize_sql_examples);
    RUN(test_normalize_unicode_like_postgres);
    RUN(test_normalize_restores_buffer_at_cap);
    RUN(test_gate_finish_length);
    RUN(test_gate_finish_filter_and_others);
    RUN(test_gate_refusal_and_reasoning);
    RUN(test_gate_empty);
    RUN(test_gate_length_bounds);
    RUN(test_gate_labels_canonical);
    RUN(test_gate_labels_variants);
    RUN(test_gate_labels_job_override_and_as_written);
    RUN(test_gate_labels_huge_answer);
    RUN(test_gate_json);
    RUN(test_gate_json_strict_table);
    RUN(test_gate_regex);
    RUN(test_gate_order);
    RUN(test_logprob_confidence_formula);
    RUN(test_logprob_confidence_short_vs_long);
    RUN(test_score_logprobs_signal);
    RUN(test_no_signal_scores_one);
    RUN(test_judge_prompt_exact);
    RUN(test_judge_parse_accepts);
    RUN(test_judge_parse_rejects);
    RUN(test_judge_reply_bodies);
    RUN(test_score_judge_signal);
    RUN(test_samples_agree);
    RUN(test_score_agreement_signal);
    RUN(test_detail_is_one_bounded_line);
    RUN(test_errors_leave_result_alone);
    return check_done();
}
