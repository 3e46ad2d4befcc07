/* What a model is shown for a job: templates filled from the job's params (else the kind's
 * defaults), the model's extra body fields, the output limit capped to the model's. */
#include "../check.h"
#include "prompt.h"
#include "template.h"

#include <stdlib.h>

static const char *lookup(const char *name, size_t len, void *ud)
{
    (void)ud;
    if (len == 4 && memcmp(name, "lang", 4) == 0)
        return "French";
    return NULL;
}

static void test_template_expand(void)
{
    static const struct {
        const char *in, *out;
    } rows[] = {
        {"Translate into {lang}.", "Translate into French."},
        {"{lang}{lang}", "FrenchFrench"},
        {"Reply as {\"answer\": 1} in {lang}", "Reply as {\"answer\": 1} in French"},
        {"nested {\"a\": {\"b\": 1}}", "nested {\"a\": {\"b\": 1}}"},
        {"literal {{lang}} stays", "literal {lang} stays"},
        {"{ lang } {Lang} {} {9x}", "{ lang } {Lang} {} {9x}"},
        {"no placeholders", "no placeholders"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        Buf b;
        buf_init(&b, 0);
        TqErr err = {0};
        CHECK_INT(template_expand(rows[i].in, strlen(rows[i].in), lookup, NULL, &b, &err), 0);
        CHECK_STR(b.data ? b.data : "", rows[i].out);
        buf_free(&b);
    }
    Buf b;
    buf_init(&b, 0);
    TqErr err = {0};
    buf_puts(&b, "kept");
    CHECK_INT(template_expand("say {tone}", 10, lookup, NULL, &b, &err), TQ_EINVAL);
    CHECK_STR(err.msg, "unknown placeholder {tone}");
    CHECK_STR(b.data, "kept"); /* nothing half-written */
    buf_free(&b);
    CHECK(template_has("a {b_1} c", 9));
    CHECK(!template_has("a {{b}} {B} { b}", 16));
}

static TqKind kind_with(const char *system_prompt, TqParam *params, int nparams, char **labels, int nlabels)
{
    TqKind k;
    memset(&k, 0, sizeof k);
    k.name = (char *)"k";
    k.system_prompt = (char *)system_prompt;
    k.params = params;
    k.nparams = nparams;
    k.checks.labels = labels;
    k.checks.nlabels = nlabels;
    k.reads_labels = nlabels > 0;
    k.checks.judge_model = -1;
    return k;
}

static void test_system_prompt_from_params(void)
{
    TqParam params[] = {{(char *)"target_language", (char *)"English", NULL}};
    char *kind_labels[] = {(char *)"admin", (char *)"net"};
    TqKind k = kind_with("Into {target_language}; one of: {labels}.", params, 1, kind_labels, 2);
    QueueJob job;
    memset(&job, 0, sizeof job);
    CallJob cj;
    memset(&cj, 0, sizeof cj);
    cj.job = &job;
    Buf b;
    buf_init(&b, 0);
    bool present = false;
    CHECK_INT(prompt_system(&k, &cj, &b, &present, NULL), 0);
    CHECK(present);
    CHECK_STR(b.data, "Into English; one of: admin, net.");
    /* the job's own values win */
    char *job_labels[] = {(char *)"billing", (char *)"bug", (char *)"other"};
    char *values[] = {(char *)"Brazilian Portuguese"};
    cj.labels = job_labels;
    cj.nlabels = 3;
    cj.params = values;
    buf_reset(&b);
    CHECK_INT(prompt_system(&k, &cj, &b, &present, NULL), 0);
    CHECK_STR(b.data, "Into Brazilian Portuguese; one of: billing, bug, other.");
    /* a job's own system prompt is filled the same way */
    job.system_prompt = (char *)"Only {labels}!";
    buf_reset(&b);
    CHECK_INT(prompt_system(&k, &cj, &b, &present, NULL), 0);
    CHECK_STR(b.data, "Only billing, bug, other!");
    /* no system prompt at all */
    TqKind bare = kind_with(NULL, NULL, 0, NULL, 0);
    job.system_prompt = NULL;
    buf_reset(&b);
    CHECK_INT(prompt_system(&bare, &cj, &b, &present, NULL), 0);
    CHECK(!present && b.len == 0);
    buf_free(&b);
}

static void test_extra_body(void)
{
    TqParam params[] = {{(char *)"target_language", (char *)"English", NULL}};
    TqKind k = kind_with("x {target_language}", params, 1, NULL, 0);
    TqModel m;
    memset(&m, 0, sizeof m);
    m.name = (char *)"qwen-mt-turbo";
    m.extra_body = (char *)"{\"translation_options\": {\"source_lang\": \"auto\", \"target_lang\": \"{target_language}\"},"
                           " \"enable_thinking\": false, \"n\\u00e9\": [1, \"{target_language}\", null]}";
    QueueJob job;
    memset(&job, 0, sizeof job);
    CallJob cj;
    memset(&cj, 0, sizeof cj);
    cj.job = &job;
    char *values[] = {(char *)"Fr\"ench"};
    cj.params = values;
    Buf b;
    buf_init(&b, 0);
    TqErr err = {0};
    CHECK_INT(prompt_extra_body(&m, &k, &cj, &b, &err), 0);
    CHECK_STR(b.data, ",\"translation_options\":{\"source_lang\":\"auto\",\"target_lang\":\"Fr\\\"ench\"},"
                      "\"enable_thinking\":false,\"n\\u00e9\":[1,\"Fr\\\"ench\",null]");
    buf_free(&b);
    m.extra_body = NULL;
    buf_init(&b, 0);
    CHECK_INT(prompt_extra_body(&m, &k, &cj, &b, &err), 0);
    CHECK(b.len == 0);
    buf_free(&b);
}

static void test_max_tokens_cap(void)
{
    TqModel m;
    memset(&m, 0, sizeof m);
    bool capped = true;
    CHECK_INT(prompt_max_tokens(&m, 4096, 100000, &capped), 4096); /* nothing known: as asked */
    CHECK(!capped);
    m.max_output_tokens = 1024;
    CHECK_INT(prompt_max_tokens(&m, 4096, 10, &capped), 1024);
    CHECK(capped);
    CHECK_INT(prompt_max_tokens(&m, 8, 10, &capped), 8);
    CHECK(!capped);
    m.max_output_tokens = 0;
    m.context_tokens = 8192;
    CHECK_INT(prompt_max_tokens(&m, 4096, 6000, &capped), 2192); /* what the context leaves */
    CHECK(capped);
    CHECK_INT(prompt_max_tokens(&m, 4096, 9000, &capped), PROMPT_MIN_OUTPUT_TOKENS); /* a floor, not 0 */
    CHECK_INT(prompt_max_tokens(&m, 8, 9000, &capped), 8);
    m.max_output_tokens = 4;
    CHECK_INT(prompt_max_tokens(&m, 8, 9000, &capped), 4); /* the model's hard limit wins over the floor */
}

int main(void)
{
    RUN(test_template_expand);
    RUN(test_system_prompt_from_params);
    RUN(test_extra_body);
    RUN(test_max_tokens_cap);
    return check_done();
}
