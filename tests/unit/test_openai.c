/* test_openai.c — the OpenAI-compatible protocol module and retry backoff, on bodies shaped like
 * the ones real providers send (OpenAI, DeepSeek, vLLM, Ollama, nginx). No network. */
#include "../check.h"
#include "backoff.h"
#include "json.h"
#include "openai.h"

#include <math.h>
#include <stdlib.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

static OaiRequest base_request(void)
{
    OaiRequest r;
    memset(&r, 0, sizeof r);
    r.model = "gpt-4o-mini";
    r.user = "hello";
    r.temperature = -1;
    return r;
}

/* Decoded string at obj.key in doc, malloc'd; NULL when absent. */
static char *get_str(const JsonDoc *d, int obj, const char *key) { return json_strdup(d, json_get(d, obj, key)); }

static bool is_valid_utf8_cstr(const char *s) { return s && utf8_valid(s, strlen(s)); }

static OaiResponse parse_ok(const char *body)
{
    OaiResponse r;
    memset(&r, 0, sizeof r);
    TqErr err = {0};
    int rc = oai_parse_response(body, strlen(body), 0, &r, &err);
    CHECKF(rc == 0, "parse failed: %s", err.msg);
    return r;
}

/* ---- request ---------------------------------------------------------------------------------- */

static void test_request_fields_and_omissions(void)
{
    OaiRequest q = base_request();
    q.system = "You are terse.";
    q.max_tokens = 256;
    q.max_tokens_field = OAI_MAX_COMPLETION_TOKENS;
    q.temperature = 0.7;
    q.logprobs = true;
    q.top_logprobs = 3;
    q.json_object = true;
    q.has_seed = true;
    q.seed = -42;
    Buf b;
    buf_init(&b, 0);
    TqErr err = {0};
    CHECK_INT(oai_build_request(&q, &b, &err), 0);
    JsonDoc d;
    CHECKF(json_parse(&d, b.data, b.len, 0, &err) == 0, "body is not json: %s", b.data);
    char *model = get_str(&d, 0, "model");
    CHECK_STR(model, "gpt-4o-mini");
    free(model);
    int msgs = json_get(&d, 0, "messages");
    CHECK_INT(json_size(&d, msgs), 2);
    char *r0 = get_str(&d, json_at(&d, msgs, 0), "role");
    char *c0 = get_str(&d, json_at(&d, msgs, 0), "content");
    char *r1 = get_str(&d, json_at(&d, msgs, 1), "role");
    char *c1 = get_str(&d, json_at(&d, msgs, 1), "content");
    CHECK_STR(r0, "system");
    CHECK_STR(c0, "You are terse.");
    CHECK_STR(r1, "user");
    CHECK_STR(c1, "hello");
    free(r0); free(c0); free(r1); free(c1);
    int64_t v = 0;
    CHECK_INT(json_int64(&d, json_get(&d, 0, "max_completion_tokens"), &v), 0);
    CHECK_INT(v, 256);
    CHECK_INT(json_get(&d, 0, "max_tokens"), -1);
    double t = 0;
    CHECK_INT(json_double(&d, json_get(&d, 0, "temperature"), &t), 0);
    CHECK(t == 0.7);
    CHECK_INT(json_int64(&d, json_get(&d, 0, "seed"), &v), 0);
    CHECK_INT(v, -42);
    bool lp = false;
    CHECK_INT(json_bool(&d, json_get(&d, 0, "logprobs"), &lp), 0);
    CHECK(lp);
    CHECK_INT(json_int64(&d, json_get(&d, 0, "top_logprobs"), &v), 0);
    CHECK_INT(v, 3);
    char *rf = get_str(&d, json_get(&d, 0, "response_format"), "type");
    CHECK_STR(rf, "json_object");
    free(rf);
    json_doc_free(&d);

    /* The minimal request carries nothing optional: no system message, no limits, no sampling. */
    OaiRequest m = base_request();
    m.max_tokens = 100; /* default field: max_tokens, for older servers */
    buf_reset(&b);
    CHECK_INT(oai_build_request(&m, &b, &err), 0);
    CHECK_INT(json_parse(&d, b.data, b.len, 0, &err), 0);
    CHECK_INT(json_size(&d, json_get(&d, 0, "messages")), 1);
    CHECK_INT(json_int64(&d, json_get(&d, 0, "max_tokens"), &v), 0);
    CHECK_INT(v, 100);
    CHECK_INT(json_get(&d, 0, "max_completion_tokens"), -1);
    CHECK_INT(json_get(&d, 0, "temperature"), -1);
    CHECK_INT(json_get(&d, 0, "seed"), -1);
    CHECK_INT(json_get(&d, 0, "logprobs"), -1);
    CHECK_INT(json_get(&d, 0, "top_logprobs"), -1);
    CHECK_INT(json_get(&d, 0, "response_format"), -1);
    json_doc_free(&d);

    /* temperature 0 is a real setting (greedy), not "omit". */
    m.temperature = 0;
    m.top_logprobs = 5; /* ignored without logprobs */
    buf_reset(&b);
    CHECK_INT(oai_build_request(&m, &b, &err), 0);
    CHECK_INT(json_parse(&d, b.data, b.len, 0, &err), 0);
    CHECK_INT(json_double(&d, json_get(&d, 0, "temperature"), &t), 0);
    CHECK(t == 0.0);
    CHECK_INT(json_get(&d, 0, "top_logprobs"), -1);
    json_doc_free(&d);
    buf_free(&b);
}

/* The message layout per model, and extra body fields appended as given. */
static void test_request_layout_and_extra_fields(void)
{
    OaiRequest q = base_request();
    q.system = "Translate into French.";
    q.system_as = OAI_SYSTEM_IN_USER;
    q.extra_members = ",\"enable_thinking\":false,\"translation_options\":{\"target_lang\":\"French\"}";
    Buf b;
    buf_init(&b, 0);
    TqErr err = {0};
    CHECK_INT(oai_build_request(&q, &b, &err), 0);
    CHECK_STR(b.data, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":"
                      "\"Translate into French.\\n\\nhello\"}],\"enable_thinking\":false,"
                      "\"translation_options\":{\"target_lang\":\"French\"}}");
    buf_reset(&b);
    q.system_as = OAI_SYSTEM_OMIT;
    q.extra_members = NULL;
    CHECK_INT(oai_build_request(&q, &b, &err), 0);
    CHECK_STR(b.data, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}");
    buf_free(&b);
}

/* choices: [] with a usage block: no answer, but the tokens are reported so the call is charged. */
static void test_parse_empty_choices_keeps_usage(void)
{
    OaiResponse r = parse_ok("{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[],"
                             "\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":0,\"total_tokens\":120}}");
    CHECK(r.no_choice);
    CHECK_STR(r.content, "");
    CHECK(r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 120);
    oai_response_free(&r);
    /* without usage it is what it always was: a body with nothing in it */
    OaiResponse r2;
    memset(&r2, 0, sizeof r2);
    TqErr err = {0};
    CHECK_INT(oai_parse_response("{\"choices\":[]}", 14, 0, &r2, &err), TQ_EPARSE);
    CHECK_STR(err.msg, "response has no choices");
}

/* Reasoning left in the content is cut off, and the answer's confidence comes from its own tokens. */
static void test_parse_strips_think_blocks(void)
{
    const char *body =
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"<think>\\nhmm\\n</think>\\n\\nnet\"},"
        "\"logprobs\":{\"content\":[{\"token\":\"<think>\",\"logprob\":-3.0},{\"token\":\"\\nhmm\\n\",\"logprob\":-4.0},"
        "{\"token\":\"</think>\",\"logprob\":-2.0},{\"token\":\"\\n\\n\",\"logprob\":-0.5},{\"token\":\"net\",\"logprob\":-0.01}]},"
        "\"finish_reason\":\"stop\"}]}";
    OaiResponse r = parse_ok(body);
    CHECK_STR(r.content, "net");
    CHECK_INT((long long)r.content_len, 3);
    CHECK(r.has_reasoning);
    CHECK(r.reasoning_bytes >= 20);
    CHECK(r.logprobs.present);
    CHECK_INT(r.logprobs.n_tokens, 1); /* only "net": the thinking's doubts are not the answer's */
    CHECK(fabs(r.logprobs.min_logprob + 0.01) < 1e-6);
    oai_response_free(&r);
    /* a closing tag whose opening was in the prompt (chat templates that open <think> themselves) */
    r = parse_ok("{\"choices\":[{\"message\":{\"content\":\"thinking...</think>  billing\"},\"finish_reason\":\"stop\"}]}");
    CHECK_STR(r.content, "billing");
    oai_response_free(&r);
    /* an answer that merely mentions the tag later is left alone */
    r = parse_ok("{\"choices\":[{\"message\":{\"content\":\"Use <think> and </think> tags.\"},\"finish_reason\":\"stop\"}]}");
    CHECK_STR(r.content, "Use <think> and </think> tags.");
    CHECK(!r.has_reasoning);
    oai_response_free(&r);
}

static void test_request_escapes_any_input(void)
{
    /* quotes, backslash, newline, tab, CR, other controls, DEL, an emoji, a lone continuation byte,
     * a truncated two-byte sequence, and an embedded NUL */
    static const char user[] = "say \"hi\" \\ now\n\tx\r\x01\x1f\x7f \xF0\x9F\x98\x80 \x80 \xC3 a\0b end";
    const size_t user_len = sizeof user - 1;
    static const char want[] = "say \"hi\" \\ now\n\tx\r\x01\x1f\x7f \xF0\x9F\x98\x80 \xEF\xBF\xBD "
                               "\xEF\xBF\xBD a\xEF\xBF\xBD" "b end";
    static const char system[] = "Rules: \"quote\" </script> \\u0000 stays literal";
    OaiRequest q = base_request();
    q.user = user;
    q.user_len = user_len;
    q.system = system;
    q.model = "my\"model\n";
    Buf b;
    buf_init(&b, 0);
    TqErr err = {0};
    CHECK_INT(oai_build_request(&q, &b, &err), 0);
    CHECK_INT(strlen(b.data), b.len); /* no raw NUL in the body */
    CHECK(utf8_valid(b.data, b.len));
    for (size_t k = 0; k < b.len; k++)
        CHECKF((unsigned char)b.data[k] >= 0x20, "raw control byte 0x%02x at %zu", (unsigned)(unsigned char)b.data[k], k);
    JsonDoc d;
    CHECKF(json_parse(&d, b.data, b.len, 0, &err) == 0, "not json: %s", err.msg);
    int msgs = json_get(&d, 0, "messages");
    char *c0 = get_str(&d, json_at(&d, msgs, 0), "content");
    char *c1 = get_str(&d, json_at(&d, msgs, 1), "content");
    char *model = get_str(&d, 0, "model");
    CHECK_STR(c0, system);
    CHECK_STR(c1, want);
    CHECK_STR(model, "my\"model\n");
    free(c0); free(c1); free(model);
    json_doc_free(&d);
    buf_free(&b);
}

static void test_request_prefix_is_stable(void)
{
    /* Two jobs of one kind: the bytes up to the user message must be identical so the provider's
     * prefix cache can bill the shared system prompt at the cached rate. */
    OaiRequest a = base_request(), c = base_request();
    a.system = c.system = "A long shared system prompt.";
    a.user = "first item";
    c.user = "second item";
    a.max_tokens = c.max_tokens = 50;
    Buf ba, bc;
    buf_init(&ba, 0);
    buf_init(&bc, 0);
    CHECK_INT(oai_build_request(&a, &ba, NULL), 0);
    CHECK_INT(oai_build_request(&c, &bc, NULL), 0);
    const char *ua = strstr(ba.data, "first item");
    const char *uc = strstr(bc.data, "second item");
    CHECK(ua && uc);
    if (ua && uc) {
        CHECK_INT(ua - ba.data, uc - bc.data);
        CHECK(memcmp(ba.data, bc.data, (size_t)(ua - ba.data)) == 0);
        CHECK(strstr(ba.data, "A long shared system prompt.") < ua);
    }
    buf_free(&ba);
    buf_free(&bc);
}

static void test_request_rejects_bad_input_and_respects_cap(void)
{
    Buf b;
    buf_init(&b, 0);
    TqErr err = {0};
    OaiRequest q = base_request();
    q.model = NULL;
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    CHECK(strstr(err.msg, "model") != NULL);
    q = base_request();
    q.model = "";
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    q = base_request();
    q.user = NULL;
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    q = base_request();
    q.max_tokens = -1;
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    q = base_request();
    q.temperature = NAN;
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    q = base_request();
    q.temperature = INFINITY;
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    q = base_request();
    q.logprobs = true;
    q.top_logprobs = 21;
    CHECK_INT(oai_build_request(&q, &b, &err), TQ_EINVAL);
    CHECK_INT(b.len, 0);
    buf_free(&b);

    /* Over the cap: TQ_ELIMIT and the buffer is exactly as before the call. */
    Buf small;
    buf_init(&small, 64);
    buf_puts(&small, "keep:");
    q = base_request();
    q.user = "a user message long enough that the whole body cannot fit in sixty-four bytes";
    CHECK_INT(oai_build_request(&q, &small, &err), TQ_ELIMIT);
    CHECK_INT(small.len, 5);
    CHECK_STR(small.data, "keep:");
    buf_free(&small);
}

/* ---- responses -------------------------------------------------------------------------------- */

/* gpt-4o with logprobs and a cached prefix, as the Chat Completions API returns it. */
static const char OPENAI_4O[] =
    "{\n"
    "  \"id\": \"chatcmpl-BQ3kX9jYwL0pN7tR2vE8sA1mQ5zUc\",\n"
    "  \"object\": \"chat.completion\",\n"
    "  \"created\": 1745832000,\n"
    "  \"model\": \"gpt-4o-2024-08-06\",\n"
    "  \"choices\": [\n"
    "    {\n"
    "      \"index\": 0,\n"
    "      \"message\": {\n"
    "        \"role\": \"assistant\",\n"
    "        \"content\": \"Caf\\u00e9 \\\"ok\\\"\\nyes\",\n"
    "        \"refusal\": null,\n"
    "        \"annotations\": []\n"
    "      },\n"
    "      \"logprobs\": {\n"
    "        \"content\": [\n"
    "          {\"token\": \"Caf\", \"logprob\": -0.25, \"bytes\": [67, 97, 102],\n"
    "           \"top_logprobs\": [{\"token\": \"Caf\", \"logprob\": -0.25, \"bytes\": [67, 97, 102]},\n"
    "                              {\"token\": \"Co\", \"logprob\": -9.5, \"bytes\": [67, 111]}]},\n"
    "          {\"token\": \"\\u00e9\", \"logprob\": -1.5, \"bytes\": [195, 169],\n"
    "           \"top_logprobs\": [{\"token\": \"\\u00e9\", \"logprob\": -1.5, \"bytes\": [195, 169]}]},\n"
    "          {\"token\": \" yes\", \"logprob\": -0.0, \"bytes\": [32, 121, 101, 115], \"top_logprobs\": []}\n"
    "        ],\n"
    "        \"refusal\": null\n"
    "      },\n"
    "      \"finish_reason\": \"stop\"\n"
    "    }\n"
    "  ],\n"
    "  \"usage\": {\n"
    "    \"prompt_tokens\": 2006,\n"
    "    \"completion_tokens\": 300,\n"
    "    \"total_tokens\": 2306,\n"
    "    \"prompt_tokens_details\": {\"cached_tokens\": 1920, \"audio_tokens\": 0},\n"
    "    \"completion_tokens_details\": {\"reasoning_tokens\": 0, \"audio_tokens\": 0,\n"
    "      \"accepted_prediction_tokens\": 0, \"rejected_prediction_tokens\": 0}\n"
    "  },\n"
    "  \"service_tier\": \"default\",\n"
    "  \"system_fingerprint\": \"fp_6b68a8204b\"\n"
    "}\n";

static void test_parse_openai_with_cache_and_logprobs(void)
{
    OaiResponse r = parse_ok(OPENAI_4O);
    CHECK_STR(r.id, "chatcmpl-BQ3kX9jYwL0pN7tR2vE8sA1mQ5zUc");
    CHECK_STR(r.model, "gpt-4o-2024-08-06");
    CHECK_STR(r.content, "Caf\xC3\xA9 \"ok\"\nyes");
    CHECK_INT(r.content_len, strlen("Caf\xC3\xA9 \"ok\"\nyes"));
    CHECK(r.refusal == NULL);
    CHECK_STR(r.finish_reason, "stop");
    CHECK(!r.has_reasoning);
    CHECK(r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 2006);
    CHECK_INT(r.usage.cached_tokens, 1920);
    CHECK_INT(r.usage.completion_tokens, 300);
    CHECK_INT(r.usage.reasoning_tokens, 0);
    CHECK_INT(r.usage.total_tokens, 2306);
    /* Three tokens: the nested top_logprobs alternatives must not be counted. */
    CHECK(r.logprobs.present);
    CHECK_INT(r.logprobs.n_tokens, 3);
    CHECKF(fabs(r.logprobs.sum_logprob - (-1.75)) < 1e-12, "sum %g", r.logprobs.sum_logprob);
    CHECKF(r.logprobs.min_logprob == -1.5, "min %g", r.logprobs.min_logprob);
    oai_response_free(&r);
    CHECK(r.content == NULL && r.id == NULL);
}

/* o4-mini: reasoning tokens are part of completion_tokens and billed as output. */
static const char OPENAI_O4_MINI[] =
    "{\"id\":\"chatcmpl-BRx7Zk2\",\"object\":\"chat.completion\",\"created\":1746000000,"
    "\"model\":\"o4-mini-2025-04-16\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"{\\\"label\\\":\\\"billing\\\"}\",\"refusal\":null,\"annotations\":[]},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":85,\"completion_tokens\":1186,"
    "\"total_tokens\":1271,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":1152,\"audio_tokens\":0,"
    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},"
    "\"service_tier\":\"default\",\"system_fingerprint\":null}";

static void test_parse_openai_reasoning_tokens(void)
{
    OaiResponse r = parse_ok(OPENAI_O4_MINI);
    CHECK_STR(r.content, "{\"label\":\"billing\"}");
    CHECK(r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 85);
    CHECK_INT(r.usage.cached_tokens, 0);
    CHECK_INT(r.usage.completion_tokens, 1186);
    CHECK_INT(r.usage.reasoning_tokens, 1152);
    CHECK(!r.logprobs.present);
    CHECK_INT(r.logprobs.n_tokens, 0);
    oai_response_free(&r);
}

/* DeepSeek (deepseek-reasoner): cache hits in prompt_cache_hit_tokens, no prompt_tokens_details,
 * the chain of thought in message.reasoning_content. */
static const char DEEPSEEK_REASONER[] =
    "{\"id\":\"d1f3c2a8-7b9e-4c5d-9a1b-2e3f4a5b6c7d\",\"object\":\"chat.completion\","
    "\"created\":1738000000,\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"9.11 is smaller than 9.8.\","
    "\"reasoning_content\":\"First, compare the integer parts: both are 9. Then 0.11 < 0.80.\"},"
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1536,"
    "\"completion_tokens\":412,\"total_tokens\":1948,\"completion_tokens_details\":"
    "{\"reasoning_tokens\":380},\"prompt_cache_hit_tokens\":1408,\"prompt_cache_miss_tokens\":128},"
    "\"system_fingerprint\":\"fp_7e73fd9a08\"}";

/* DeepSeek under load: no answer, finish_reason insufficient_system_resource. */
static const char DEEPSEEK_BUSY[] =
    "{\"id\":\"5a6b7c8d\",\"object\":\"chat.completion\",\"created\":1738000100,"
    "\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"insufficient_system_resource\"}],"
    "\"usage\":{\"prompt_tokens\":64,\"completion_tokens\":0,\"total_tokens\":64,"
    "\"prompt_cache_hit_tokens\":0,\"prompt_cache_miss_tokens\":64}}";

static void test_parse_deepseek(void)
{
    OaiResponse r = parse_ok(DEEPSEEK_REASONER);
    CHECK_STR(r.model, "deepseek-reasoner");
    CHECK_STR(r.content, "9.11 is smaller than 9.8.");
    CHECK(r.has_reasoning);
    CHECK(r.reasoning_bytes > 40);
    CHECK(r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 1536);
    CHECK_INT(r.usage.cached_tokens, 1408);
    CHECK_INT(r.usage.completion_tokens, 412);
    CHECK_INT(r.usage.reasoning_tokens, 380);
    CHECK(!r.logprobs.present); /* "logprobs": null */
    oai_response_free(&r);

    r = parse_ok(DEEPSEEK_BUSY);
    CHECK_STR(r.finish_reason, "insufficient_system_resource");
    CHECK_STR(r.content, "");
    CHECK_INT(r.usage.cached_tokens, 0);
    CHECK_INT(r.usage.completion_tokens, 0);
    oai_response_free(&r);
}

/* Ollama's /v1/chat/completions: usage without any token details. */
static const char OLLAMA[] =
    "{\"id\":\"chatcmpl-812\",\"object\":\"chat.completion\",\"created\":1739000000,"
    "\"model\":\"llama3.2:3b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Positive.\"},\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":26,\"completion_tokens\":3,\"total_tokens\":29}}\n";

/* vLLM: details present but null, reasoning_content null, logprobs null. */
static const char VLLM[] =
    "{\"id\":\"chatcmpl-9b2f0e6c4d2a4f7e\",\"object\":\"chat.completion\",\"created\":1739000500,"
    "\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
    "\"assistant\",\"reasoning_content\":null,\"content\":\"negative\",\"tool_calls\":[]},"
    "\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\":"
    "{\"prompt_tokens\":40,\"total_tokens\":42,\"completion_tokens\":2,\"prompt_tokens_details\":null},"
    "\"prompt_logprobs\":null}";

static void test_parse_ollama_and_vllm_without_details(void)
{
    OaiResponse r = parse_ok(OLLAMA);
    CHECK_STR(r.content, "Positive.");
    CHECK_STR(r.finish_reason, "length");
    CHECK(r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 26);
    CHECK_INT(r.usage.cached_tokens, 0);
    CHECK_INT(r.usage.completion_tokens, 3);
    CHECK_INT(r.usage.reasoning_tokens, 0);
    CHECK(!r.has_reasoning);
    oai_response_free(&r);

    r = parse_ok(VLLM);
    CHECK_STR(r.content, "negative");
    CHECK(!r.has_reasoning);
    CHECK(r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 40);
    CHECK_INT(r.usage.cached_tokens, 0);
    CHECK_INT(r.usage.total_tokens, 42);
    oai_response_free(&r);
}

static void test_parse_without_usage(void)
{
    /* Some servers (and proxies in front of them) send no usage at all; others send null. */
    const char *none = "{\"id\":\"x1\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":"
                       "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
                       "\"finish_reason\":\"stop\"}]}";
    OaiResponse r = parse_ok(none);
    CHECK_STR(r.content, "hi");
    CHECK(!r.usage.present);
    CHECK_INT(r.usage.prompt_tokens, 0);
    oai_response_free(&r);

    const char *null_usage = "{\"choices\":[{\"message\":{\"content\":\"hi\"},\"finish_reason\":null}],"
                             "\"usage\":null}";
    r = parse_ok(null_usage);
    CHECK(!r.usage.present);
    CHECK_STR(r.finish_reason, "");
    CHECK_STR(r.id, ""); /* absent id: empty, not NULL */
    CHECK_STR(r.model, "");
    oai_response_free(&r);

    /* A usage block without completion_tokens cannot be billed: treat it as missing. */
    const char *partial = "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":5}}";
    r = parse_ok(partial);
    CHECK(!r.usage.present);
    oai_response_free(&r);

    /* cached above prompt (a buggy server) is clamped so cost arithmetic never goes negative. */
    const char *silly = "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":5,"
                        "\"completion_tokens\":2.0,\"prompt_tokens_details\":{\"cached_tokens\":9},"
                        "\"completion_tokens_details\":{\"reasoning_tokens\":7}}}";
    r = parse_ok(silly);
    CHECK(r.usage.present);
    CHECK_INT(r.usage.cached_tokens, 5);
    CHECK_INT(r.usage.completion_tokens, 2);
    CHECK_INT(r.usage.reasoning_tokens, 2);
    CHECK_INT(r.usage.total_tokens, 7);
    oai_response_free(&r);
}

static void test_parse_refusal_and_content_forms(void)
{
    const char *refusal = "{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion\",\"model\":\"gpt-4o\","
                          "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
                          "\"refusal\":\"I'm sorry, I can't help with that.\"},\"logprobs\":null,"
                          "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
                          "\"completion_tokens\":9,\"total_tokens\":21}}";
    OaiResponse r = parse_ok(refusal);
    CHECK_STR(r.content, "");
    CHECK_INT(r.content_len, 0);
    CHECK_STR(r.refusal, "I'm sorry, I can't help with that.");
    oai_response_free(&r);

    const char *parts = "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"ab\"},"
                        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},{\"type\":\"text\",\"text\":\"cd\"}]},"
                        "\"finish_reason\":\"stop\"}]}";
    r = parse_ok(parts);
    CHECK_STR(r.content, "abcd");
    oai_response_free(&r);

    /* An escaped NUL, a raw invalid byte and a lone surrogate: content stays valid UTF-8 with no
     * NUL, because it is headed for a PostgreSQL text column. */
    const char bad[] = "{\"choices\":[{\"message\":{\"content\":\"a\\u0000b\xff" "c\\ud800d\"}}]}";
    r = parse_ok(bad);
    CHECK_STR(r.content, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD" "d");
    CHECK(is_valid_utf8_cstr(r.content));
    CHECK_INT(r.content_len, strlen(r.content));
    oai_response_free(&r);

    TqErr err = {0};
    const char *number = "{\"choices\":[{\"message\":{\"content\":42}}]}";
    CHECK_INT(oai_parse_response(number, strlen(number), 0, &r, &err), TQ_EPARSE);
}

static void test_parse_failures_leave_output_alone(void)
{
    static const struct {
        const char *body;
        int rc;
        const char *msg;
    } cases[] = {
        {"{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[]}", TQ_EPARSE, "no choices"},
        {"{\"id\":\"x\",\"object\":\"chat.completion\"}", TQ_EPARSE, "no choices"},
        {"{\"choices\":{\"0\":1}}", TQ_EPARSE, "no choices"},
        {"{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}", TQ_EPARSE, "no message"},
        {"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
         "{\"role\":\"assistant\",\"content\":\"The answer", TQ_EPARSE, "truncated json"},
        {"<html><body><h1>502 Bad Gateway</h1></body></html>", TQ_EPARSE, "invalid json"},
        {"[1,2]", TQ_EPARSE, "not a json object"},
        {"{\"error\":{\"message\":\"The server had an error while processing your request.\","
         "\"type\":\"server_error\",\"param\":null,\"code\":null}}", TQ_EPARSE,
         "carries an error: The server had an error"},
        {"", TQ_EPARSE, "empty"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        OaiResponse r;
        memset(&r, 0x5A, sizeof r); /* sentinel: must survive a failed parse */
        OaiResponse before = r;
        TqErr err = {0};
        int rc = oai_parse_response(cases[k].body, strlen(cases[k].body), 0, &r, &err);
        CHECKF(rc == cases[k].rc, "case %zu: rc %d", k, rc);
        CHECKF(strstr(err.msg, cases[k].msg) != NULL, "case %zu: msg \"%s\", want \"%s\"", k, err.msg, cases[k].msg);
        CHECKF(memcmp(&r, &before, sizeof r) == 0, "case %zu: output written on failure", k);
    }
    /* The token cap applies. */
    OaiResponse r;
    TqErr err = {0};
    CHECK_INT(oai_parse_response(OPENAI_4O, strlen(OPENAI_4O), 16, &r, &err), TQ_ELIMIT);
    oai_response_free(NULL);
}

/* ---- errors ----------------------------------------------------------------------------------- */

static void test_error_openai_429s(void)
{
    const char *rate = "{\n    \"error\": {\n        \"message\": \"Rate limit reached for gpt-4o-mini in "
                       "organization org-abc on tokens per min (TPM): Limit 200000, Used 199847, Requested "
                       "520. Please try again in 110ms. Visit https://platform.openai.com/account/rate-limits "
                       "to learn more.\",\n        \"type\": \"tokens\",\n        \"param\": null,\n"
                       "        \"code\": \"rate_limit_exceeded\"\n    }\n}\n";
    OaiError e;
    CHECK_INT(oai_parse_error(429, rate, strlen(rate), &e), 0);
    CHECK(e.json);
    CHECK_INT(e.http_status, 429);
    CHECK_STR(e.code, "rate_limit_exceeded");
    CHECK_STR(e.type, "tokens");
    CHECK_STR(e.param, "");
    CHECK(strncmp(e.message, "Rate limit reached for gpt-4o-mini", 34) == 0);
    CHECK_INT(oai_classify(429, &e), OAI_RETRY);
    CHECK_STR(oai_error_reason(429, &e), "rate_limited");

    const char *quota = "{\n    \"error\": {\n        \"message\": \"You exceeded your current quota, please "
                        "check your plan and billing details. For more information on this error, read the "
                        "docs: https://platform.openai.com/docs/guides/error-codes/api-errors.\",\n"
                        "        \"type\": \"insufficient_quota\",\n        \"param\": null,\n"
                        "        \"code\": \"insufficient_quota\"\n    }\n}\n";
    CHECK_INT(oai_parse_error(429, quota, strlen(quota), &e), 0);
    CHECK_STR(e.code, "insufficient_quota");
    CHECK_INT(oai_classify(429, &e), OAI_QUOTA);
    CHECK_STR(oai_error_reason(429, &e), "quota_exhausted");
    /* Same status without the body: a plain rate limit. */
    CHECK_INT(oai_classify(429, NULL), OAI_RETRY);
}

static void test_error_vllm_integer_code(void)
{
    /* vLLM before 0.9: the error fields at top level, code an integer. */
    const char *old = "{\"object\":\"error\",\"message\":\"The model `llama-3-70b` does not exist.\","
                      "\"type\":\"NotFoundError\",\"param\":null,\"code\":404}";
    OaiError e;
    oai_parse_error(404, old, strlen(old), &e);
    CHECK(e.json);
    CHECK_STR(e.code, "404");
    CHECK_STR(e.type, "NotFoundError");
    CHECK_STR(e.message, "The model `llama-3-70b` does not exist.");
    CHECK_INT(oai_classify(404, &e), OAI_FAIL);

    /* Current vLLM and llama.cpp: wrapped in "error", still an integer code. */
    const char *cur = "{\"error\":{\"message\":\"EngineCore encountered an issue. See stack trace for "
                      "the root cause.\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}";
    oai_parse_error(500, cur, strlen(cur), &e);
    CHECK_STR(e.code, "500");
    CHECK_STR(e.type, "InternalServerError");
    CHECK_INT(oai_classify(500, &e), OAI_RETRY);
    CHECK_STR(oai_error_reason(500, &e), "server_error");

    const char *ctx = "{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens. "
                      "However, you requested 9000 tokens.\",\"type\":\"BadRequestError\",\"param\":null,"
                      "\"code\":\"context_length_exceeded\"}}";
    oai_parse_error(400, ctx, strlen(ctx), &e);
    CHECK_INT(oai_classify(400, &e), OAI_FAIL);
    CHECK_STR(oai_error_reason(400, &e), "context_length_exceeded");
}

static void test_error_other_shapes(void)
{
    OaiError e;
    const char *ollama = "{\"error\":\"model \\\"llama9\\\" not found, try pulling it first\"}";
    oai_parse_error(404, ollama, strlen(ollama), &e);
    CHECK(e.json);
    CHECK_STR(e.message, "model \"llama9\" not found, try pulling it first");
    CHECK_STR(e.code, "");

    const char *gemini = "[{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check "
                         "quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}]";
    oai_parse_error(429, gemini, strlen(gemini), &e);
    CHECK_STR(e.code, "429");
    CHECK_STR(e.type, "RESOURCE_EXHAUSTED");
    CHECK_STR(e.message, "Resource has been exhausted (e.g. check quota).");

    const char *fastapi = "{\"detail\":[{\"loc\":[\"body\",\"messages\"],\"msg\":\"field required\","
                          "\"type\":\"value_error.missing\"}]}";
    oai_parse_error(422, fastapi, strlen(fastapi), &e);
    CHECK_STR(e.message, "field required");
    CHECK_INT(oai_classify(422, &e), OAI_FAIL);

    const char *deepseek402 = "{\"error\":{\"message\":\"Insufficient Balance\",\"type\":\"unknown_error\","
                              "\"param\":null,\"code\":\"invalid_request_error\"}}";
    oai_parse_error(402, deepseek402, strlen(deepseek402), &e);
    CHECK_STR(e.message, "Insufficient Balance");
    CHECK_INT(oai_classify(402, &e), OAI_QUOTA);

    /* Empty body, NULL body. */
    CHECK_INT(oai_parse_error(503, NULL, 0, &e), 0);
    CHECK_STR(e.message, "");
    CHECK(!e.json);
    CHECK_INT(e.http_status, 503);
    CHECK_INT(oai_parse_error(503, "x", 1, NULL), TQ_EINVAL);
}

static void test_error_html_and_plain_bodies(void)
{
    const char *nginx = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                        "</body>\r\n</html>\r\n";
    OaiError e;
    CHECK_INT(oai_parse_error(502, nginx, strlen(nginx), &e), 0);
    CHECK(!e.json);
    CHECK_STR(e.message, "502 Bad Gateway 502 Bad Gateway nginx");
    CHECK_INT(oai_classify(502, &e), OAI_RETRY);

    const char *envoy = "upstream connect error or disconnect/reset before headers.\n\treset reason: "
                        "connection termination\x01\xff";
    oai_parse_error(503, envoy, strlen(envoy), &e);
    CHECK_STR(e.message, "upstream connect error or disconnect/reset before headers. reset reason: "
                         "connection termination \xEF\xBF\xBD");
    CHECK_STR(oai_error_reason(503, &e), "overloaded");

    /* A truncated JSON error falls back to the printable first bytes. */
    const char *cut = "{\"error\":{\"message\":\"Internal";
    oai_parse_error(500, cut, strlen(cut), &e);
    CHECK(!e.json);
    CHECK_STR(e.message, "{\"error\":{\"message\":\"Internal");
}

static void test_error_message_is_bounded_line(void)
{
    /* 300 two-byte characters (600 bytes) with newlines: cut to at most OAI_ERR_MSG_MAX bytes on a
     * character boundary, marked with "...", and still one line. */
    Buf body;
    buf_init(&body, 0);
    buf_puts(&body, "{\"error\":{\"message\":\"");
    for (int k = 0; k < 300; k++)
        buf_puts(&body, k % 50 == 49 ? "\\n" : "\xC3\xA9");
    buf_puts(&body, "\",\"type\":\"invalid_request_error\",\"code\":null}}");
    OaiError e;
    oai_parse_error(400, body.data, body.len, &e);
    size_t n = strlen(e.message);
    CHECKF(n <= OAI_ERR_MSG_MAX + 3 && n >= OAI_ERR_MSG_MAX - 8, "length %zu", n);
    CHECK(n >= 3 && strcmp(e.message + n - 3, "...") == 0);
    CHECK(utf8_valid(e.message, n));
    CHECK(strchr(e.message, '\n') == NULL);
    CHECK_STR(e.code, "");
    buf_free(&body);

    /* A huge non-JSON body only costs the window, and the message is still bounded. */
    Buf big;
    buf_init(&big, 0);
    for (int k = 0; k < 100000; k++)
        buf_putc(&big, (char)('a' + k % 26));
    oai_parse_error(500, big.data, big.len, &e);
    CHECK_INT(strlen(e.message), OAI_ERR_MSG_MAX + 3);
    buf_free(&big);
}

static void test_error_redacts_keys(void)
{
    const char *bad_key = "{\"error\":{\"message\":\"Incorrect API key provided: sk-proj-AbCd1234****"
                          "************WxYz. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.\",\"type\":\"invalid_request_error\","
                          "\"param\":null,\"code\":\"invalid_api_key\"}}";
    OaiError e;
    oai_parse_error(401, bad_key, strlen(bad_key), &e);
    CHECK(strstr(e.message, "AbCd1234") == NULL);
    CHECK(strstr(e.message, "WxYz") == NULL);
    CHECK(strstr(e.message, "provided: sk-***. You can find") != NULL);
    CHECK_STR(e.code, "invalid_api_key");
    CHECK_INT(oai_classify(401, &e), OAI_FAIL);
    CHECK_STR(oai_error_reason(401, &e), "unauthorized");

    const char *echo = "bad header Authorization: Bearer sk-live.abc/def+ghi== and key=AIzaSyA1b2C3d4E5f6 "
                       "and gsk_0123456789abcdef; but a task-based plan and risk-free sk-ok stay";
    oai_parse_error(400, echo, strlen(echo), &e);
    CHECK(strstr(e.message, "abc/def") == NULL);
    CHECK(strstr(e.message, "Bearer ***") != NULL);
    CHECK(strstr(e.message, "SyA1b2") == NULL);
    CHECK(strstr(e.message, "0123456789") == NULL);
    CHECK(strstr(e.message, "task-based plan and risk-free sk-ok stay") != NULL);
}

/* ---- classification --------------------------------------------------------------------------- */

static void test_classify_table(void)
{
    static const struct {
        int status;
        OaiVerdict v;
    } t[] = {
        {200, OAI_OK},    {204, OAI_OK},    {400, OAI_FAIL},  {401, OAI_FAIL},   {403, OAI_FAIL},
        {404, OAI_FAIL},  {422, OAI_FAIL},  {413, OAI_FAIL},  {408, OAI_RETRY},  {409, OAI_RETRY},
        {429, OAI_RETRY}, {500, OAI_RETRY}, {502, OAI_RETRY}, {503, OAI_RETRY},  {504, OAI_RETRY},
        {529, OAI_RETRY}, {402, OAI_QUOTA}, {301, OAI_FAIL},  {0, OAI_RETRY},    {-1, OAI_RETRY},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        CHECKF(oai_classify(t[k].status, NULL) == t[k].v, "status %d gave %s", t[k].status,
               oai_verdict_name(oai_classify(t[k].status, NULL)));

    OaiError e;
    memset(&e, 0, sizeof e);
    strcpy(e.type, "insufficient_quota"); /* some proxies only keep the type */
    CHECK_INT(oai_classify(429, &e), OAI_QUOTA);
    CHECK_INT(oai_classify(200, &e), OAI_OK);

    CHECK_INT(oai_classify_transport(OAI_NET_TIMEOUT), OAI_RETRY);
    CHECK_INT(oai_classify_transport(OAI_NET_CONNECT), OAI_RETRY);
    CHECK_INT(oai_classify_transport(OAI_NET_RESET), OAI_RETRY);
    CHECK_INT(oai_classify_transport(OAI_NET_TLS), OAI_RETRY);
    CHECK_INT(oai_classify_transport(OAI_NET_BAD_BODY), OAI_RETRY);
    CHECK_INT(oai_classify_transport(OAI_NET_TOO_LARGE), OAI_FAIL);
    CHECK_INT(oai_classify_transport(OAI_NET_INVALID), OAI_FAIL);
    CHECK_STR(oai_net_reason(OAI_NET_TIMEOUT), "http_timeout");
    CHECK_STR(oai_net_reason(OAI_NET_RESET), "connection_reset");
    CHECK_STR(oai_verdict_name(OAI_QUOTA), "quota");
    CHECK_STR(oai_error_reason(418, NULL), "http_4xx");
}

/* ---- retry-after, durations, headers ---------------------------------------------------------- */

/* Sun, 06 Nov 1994 08:49:37 GMT, the RFC's own example date. */
#define RFC_EXAMPLE_EPOCH ((time_t)784111777)

static void test_retry_after(void)
{
    time_t now = RFC_EXAMPLE_EPOCH - 30;
    CHECK_INT(oai_retry_after_ms("1500", "20", now), 1500);        /* ms wins */
    CHECK_INT(oai_retry_after_ms(" 110.2 ", NULL, now), 111);       /* rounded up, never sooner */
    CHECK_INT(oai_retry_after_ms("soon", "2", now), 2000);          /* bad ms falls back */
    CHECK_INT(oai_retry_after_ms(NULL, "20", now), 20000);
    CHECK_INT(oai_retry_after_ms(NULL, "0.5", now), 500);
    CHECK_INT(oai_retry_after_ms(NULL, "0", now), 0);
    CHECK_INT(oai_retry_after_ms(NULL, "0.1", now), 100);
    CHECK_INT(oai_retry_after_ms(NULL, "Sun, 06 Nov 1994 08:49:37 GMT", now), 30000);
    CHECK_INT(oai_retry_after_ms(NULL, "Sunday, 06-Nov-94 08:49:37 GMT", now), 30000);
    CHECK_INT(oai_retry_after_ms(NULL, "Sun Nov  6 08:49:37 1994", now), 30000);
    CHECK_INT(oai_retry_after_ms(NULL, "Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_EPOCH + 5), 0);
    CHECK_INT(oai_retry_after_ms(NULL, "Tue, 29 Feb 2028 00:00:00 GMT", (time_t)1835395200 - 7), 7000);
    CHECK_INT(oai_retry_after_ms(NULL, "3600", now), OAI_RETRY_AFTER_CAP_MS);
    CHECK_INT(oai_retry_after_ms("99999999", NULL, now), OAI_RETRY_AFTER_CAP_MS);
    CHECK_INT(oai_retry_after_ms(NULL, "Sun, 06 Nov 2094 08:49:37 GMT", now), OAI_RETRY_AFTER_CAP_MS);
    CHECK_INT(oai_retry_after_ms(NULL, NULL, now), -1);
    CHECK_INT(oai_retry_after_ms("", "", now), -1);
    CHECK_INT(oai_retry_after_ms(NULL, "-5", now), -1);
    CHECK_INT(oai_retry_after_ms(NULL, "1e3", now), -1);
    CHECK_INT(oai_retry_after_ms(NULL, "10 s", now), -1);
    CHECK_INT(oai_retry_after_ms(NULL, "Sun, 06 Foo 1994 08:49:37 GMT", now), -1);
    CHECK_INT(oai_retry_after_ms(NULL, "Sun, 06 Nov 1994 25:49:37 GMT", now), -1);
    /* Dates go through libcurl's curl_getdate, which is lenient where RFC 9110 is strict (31 Feb,
     * trailing words): such a header still yields a time, capped like any other, so the worst a
     * sloppy server gets is the wait it seems to ask for. */
    CHECK(oai_retry_after_ms(NULL, "Sun, 06 Nov 1994 08:49:37 GMT trailing", now) >= 0);
}

static void test_durations(void)
{
    CHECK_INT(oai_duration_ms("1s"), 1000);
    CHECK_INT(oai_duration_ms("6m0s"), 360000);
    CHECK_INT(oai_duration_ms("20ms"), 20);
    CHECK_INT(oai_duration_ms("1h2m3.5s"), 3723500);
    CHECK_INT(oai_duration_ms("0.1s"), 100);
    CHECK_INT(oai_duration_ms("7.66s"), 7660);
    CHECK_INT(oai_duration_ms("1500us"), 2);
    CHECK_INT(oai_duration_ms("250\xC2\xB5s"), 1);
    CHECK_INT(oai_duration_ms("10ns"), 1);
    CHECK_INT(oai_duration_ms("0s"), 0);
    CHECK_INT(oai_duration_ms("2"), 2000);
    CHECK_INT(oai_duration_ms(" 1m30s\r\n"), 90000);
    CHECK_INT(oai_duration_ms(""), -1);
    CHECK_INT(oai_duration_ms(NULL), -1);
    CHECK_INT(oai_duration_ms("s"), -1);
    CHECK_INT(oai_duration_ms("1x"), -1);
    CHECK_INT(oai_duration_ms("1m30"), -1);
    CHECK_INT(oai_duration_ms("-1s"), -1);
    CHECK_INT(oai_duration_ms("1s 2s"), -1);
    CHECK_INT(oai_duration_ms("99999999999h"), -1);
}

static void test_headers_feed(void)
{
    static const char *const lines[] = {
        "HTTP/1.1 100 Continue\r\n",
        "retry-after: 99\r\n", /* belongs to the interim response: must be forgotten */
        "HTTP/2 429 \r\n",
        "date: Tue, 29 Apr 2025 10:00:00 GMT\r\n",
        "content-type: application/json\r\n",
        "X-RateLimit-Limit-Requests: 10000\r\n",
        "x-ratelimit-limit-tokens: 30000000\r\n",
        "x-ratelimit-remaining-requests: 9999\r\n",
        "x-ratelimit-remaining-tokens:29999980\r\n",
        "x-ratelimit-reset-requests: 6ms\r\n",
        "x-ratelimit-reset-tokens: 1m2.5s\r\n",
        "x-request-id: req_4f6b2c0e9a8d7c6b5a4f3e2d1c0b9a8f\r\n",
        "Retry-After-Ms: 250\r\n",
        "retry-after: 1\r\n",
        "set-cookie: __cf_bm=secretcookievalue; path=/\r\n",
        "\r\n",
    };
    OaiHeaders h;
    oai_headers_init(&h);
    CHECK_INT(h.remaining_tokens, -1);
    for (size_t k = 0; k < sizeof lines / sizeof lines[0]; k++)
        oai_headers_feed(&h, lines[k], strlen(lines[k]));
    CHECK_INT(h.limit_requests, 10000);
    CHECK_INT(h.limit_tokens, 30000000);
    CHECK_INT(h.remaining_requests, 9999);
    CHECK_INT(h.remaining_tokens, 29999980);
    CHECK_INT(h.reset_requests_ms, 6);
    CHECK_INT(h.reset_tokens_ms, 62500);
    CHECK_STR(h.request_id, "req_4f6b2c0e9a8d7c6b5a4f3e2d1c0b9a8f");
    CHECK_STR(h.retry_after, "1");
    CHECK_INT(oai_headers_retry_after_ms(&h, 0), 250);

    OaiHeaders g;
    oai_headers_init(&g);
    oai_headers_feed(&g, "retry-after: 3", 14);
    oai_headers_feed(&g, "x-ratelimit-remaining-tokens: lots", 34);
    CHECK_INT(oai_headers_retry_after_ms(&g, 0), 3000);
    CHECK_INT(g.remaining_tokens, -1);
    oai_headers_init(&g);
    CHECK_INT(oai_headers_retry_after_ms(&g, 0), -1);
}

/* ---- backoff ---------------------------------------------------------------------------------- */

static void test_backoff_full_jitter_bounds(void)
{
    uint64_t rng = 12345;
    const int64_t base = 100, cap = 20000;
    for (int attempt = 0; attempt < 12; attempt++) {
        int64_t ceiling = base << attempt;
        if (ceiling > cap)
            ceiling = cap;
        int64_t lo = INT64_MAX, hi = -1;
        double sum = 0;
        const int draws = 4000;
        for (int k = 0; k < draws; k++) {
            int64_t v = backoff_full_jitter_ms(attempt, base, cap, &rng);
            if (v < lo)
                lo = v;
            if (v > hi)
                hi = v;
            sum += (double)v;
        }
        CHECKF(lo >= 0 && hi <= ceiling, "attempt %d: [%lld, %lld] outside [0, %lld]", attempt,
               (long long)lo, (long long)hi, (long long)ceiling);
        CHECKF(lo != hi, "attempt %d: all draws equal %lld", attempt, (long long)lo);
        /* Full jitter, not "half" or "equal" jitter: draws reach both ends of the range. */
        CHECKF(lo <= ceiling / 20 && hi >= ceiling - ceiling / 20, "attempt %d: [%lld, %lld] of %lld",
               attempt, (long long)lo, (long long)hi, (long long)ceiling);
        double mean = sum / draws;
        CHECKF(fabs(mean - (double)ceiling / 2) < (double)ceiling * 0.05, "attempt %d: mean %.1f of %lld",
               attempt, mean, (long long)ceiling);
    }
    /* Huge attempts neither overflow nor exceed the cap. */
    for (int k = 0; k < 1000; k++) {
        int64_t v = backoff_full_jitter_ms(1000000 + k, 500, 60000, &rng);
        CHECK(v >= 0 && v <= 60000);
    }
    CHECK_INT(backoff_full_jitter_ms(3, 0, 1000, &rng), 0);
    CHECK_INT(backoff_full_jitter_ms(3, 100, 0, &rng), 0);
    int64_t neg = backoff_full_jitter_ms(-5, 100, 1000, &rng);
    CHECK(neg >= 0 && neg <= 100);

    /* Same seed, same sequence; different seeds, different sequences (state 0 included). */
    uint64_t a = 7, b = 7, c = 0, d = 1;
    int same = 1, diff = 0;
    for (int k = 0; k < 50; k++) {
        if (backoff_full_jitter_ms(10, 100, 100000, &a) != backoff_full_jitter_ms(10, 100, 100000, &b))
            same = 0;
        if (backoff_full_jitter_ms(10, 100, 100000, &c) != backoff_full_jitter_ms(10, 100, 100000, &d))
            diff++;
    }
    CHECK(same);
    CHECK(diff > 40);
}

static void test_backoff_honours_retry_after(void)
{
    uint64_t rng = 99;
    int64_t lo = INT64_MAX, hi = -1;
    for (int k = 0; k < 2000; k++) {
        int64_t v = backoff_next_ms(0, 1500, 200, 30000, &rng);
        if (v < lo)
            lo = v;
        if (v > hi)
            hi = v;
    }
    CHECKF(lo >= 1500 && hi <= 1700 && lo != hi, "[%lld, %lld]", (long long)lo, (long long)hi);
    /* Longer than our own cap: still honoured. */
    for (int k = 0; k < 100; k++)
        CHECK(backoff_next_ms(2, 600000, 200, 30000, &rng) >= 600000);
    /* No retry-after: plain full jitter. */
    for (int k = 0; k < 100; k++) {
        int64_t v = backoff_next_ms(2, -1, 200, 30000, &rng);
        CHECK(v >= 0 && v <= 800);
    }
    /* retry-after 0 ("now") still gets a small spread, never negative. */
    int64_t z = backoff_next_ms(0, 0, 200, 30000, &rng);
    CHECK(z >= 0 && z <= 200);
    /* Uniform draws: every value of a small range shows up. */
    int seen[4] = {0};
    for (int k = 0; k < 400; k++)
        seen[backoff_rand_upto(&rng, 3)]++;
    CHECK(seen[0] && seen[1] && seen[2] && seen[3]);
    CHECK_INT(backoff_rand_upto(&rng, -3), 0);
}

/* ---- estimates -------------------------------------------------------------------------------- */

/* A job out of tries waits longer in the queue with every attempt: an outage of minutes must not
 * use up five attempts in seconds. */
static void test_requeue_wait_grows_with_attempts(void)
{
    uint64_t rng = 7;
    int64_t lo[] = {15000, 60000, 240000, 900000, 900000, 900000}, hi[] = {30000, 120000, 480000, 1800000, 1800000, 1800000};
    for (int a = 1; a <= 6; a++)
        for (int k = 0; k < 200; k++) {
            int64_t d = backoff_requeue_ms(a, 30000, 0, &rng);
            if (d < lo[a - 1] || d > hi[a - 1]) {
                CHECKF(0, "attempt %d: %lld ms outside [%lld, %lld]", a, (long long)d, (long long)lo[a - 1], (long long)hi[a - 1]);
                break;
            }
        }
    /* never sooner than the server asked */
    CHECK(backoff_requeue_ms(1, 30000, 600000, &rng) == 600000);
    CHECK(backoff_requeue_ms(1, 1000, 0, &rng) <= 1000);
}

static void test_estimate_tokens(void)
{
    CHECK_INT(oai_estimate_tokens("", 0), 1);
    CHECK_INT(oai_estimate_tokens(NULL, 0), 1);
    CHECK_INT(oai_estimate_tokens("abcd", 4), 1);
    CHECK_INT(oai_estimate_tokens("abcde", 5), 2);
    const char *en = "The quick brown fox jumps over the lazy dog."; /* 44 bytes, ~10 tokens */
    CHECK_INT(oai_estimate_tokens(en, strlen(en)), 11);
    /* 4 CJK characters are 12 bytes but about 4 tokens, not 3. */
    const char *zh = "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C";
    CHECK_INT(oai_estimate_tokens(zh, strlen(zh)), 4);
    CHECK_INT(oai_estimate_tokens("a\0b", 3), 1);
}

int main(void)
{
    RUN(test_request_fields_and_omissions);
    RUN(test_request_escapes_any_input);
    RUN(test_request_layout_and_extra_fields);
    RUN(test_parse_empty_choices_keeps_usage);
    RUN(test_parse_strips_think_blocks);
    RUN(test_request_prefix_is_stable);
    RUN(test_request_rejects_bad_input_and_respects_cap);
    RUN(test_parse_openai_with_cache_and_logprobs);
    RUN(test_parse_openai_reasoning_tokens);
    RUN(test_parse_deepseek);
    RUN(test_parse_ollama_and_vllm_without_details);
    RUN(test_parse_without_usage);
    RUN(test_parse_refusal_and_content_forms);
    RUN(test_parse_failures_leave_output_alone);
    RUN(test_error_openai_429s);
    RUN(test_error_vllm_integer_code);
    RUN(test_error_other_shapes);
    RUN(test_error_html_and_plain_bodies);
    RUN(test_error_message_is_bounded_line);
    RUN(test_error_redacts_keys);
    RUN(test_classify_table);
    RUN(test_retry_after);
    RUN(test_durations);
    RUN(test_headers_feed);
    RUN(test_backoff_full_jitter_bounds);
    RUN(test_backoff_honours_retry_after);
    RUN(test_requeue_wait_grows_with_attempts);
    RUN(test_estimate_tokens);
    return check_done();
}
