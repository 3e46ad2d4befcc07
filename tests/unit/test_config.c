/* jobs/ loading: the shipped configuration is valid, and every kind of mistake is reported with the
 * file and the key path. No database, no network. */
#include "../check.h"
#include "config.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *jobs_dir(void)
{
    const char *d = getenv("TIERQ_JOBS_DIR");
    return d ? d : "jobs";
}

static char tmpdir[256];

/* A scratch copy of jobs/ in which one file is replaced. */
static void scratch_with(const char *file, const char *content)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tq_cfg_XXXXXX");
    if (!mkdtemp(tmpdir))
        return;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp '%s'/*.json '%s/'", jobs_dir(), tmpdir);
    if (system(cmd) != 0)
        printf("# copy failed\n");
    if (file) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmpdir, file);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(content, f);
            fclose(f);
        }
    }
}

static void scratch_done(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
}

/* Load and return the error message (empty on success). */
static int load_msg(char *msg, size_t cap)
{
    TqConfig *cfg = NULL;
    TqErr err = {0};
    int rc = config_load(tmpdir, &cfg, &err);
    snprintf(msg, cap, "%s", rc ? err.msg : "");
    config_free(cfg);
    return rc;
}

static void test_shipped_config_is_valid(void)
{
    TqConfig *cfg = NULL;
    TqErr err = {0};
    CHECKF(config_load(jobs_dir(), &cfg, &err) == 0, "%s", err.msg);
    if (!cfg)
        return;
    const char *kinds[] = {"chat", "code", "simple", "reasoning", "classify", "translate", "summarize"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        CHECKF(config_kind(cfg, kinds[i]) != NULL, "kind %s missing", kinds[i]);
    const TqKind *k = config_kind(cfg, "classify");
    CHECK(k && k->ntiers == 3 && k->checks.nlabels > 10);
    CHECK_STR(k ? cfg->models[k->tiers[0].model].name : NULL, "qwen3-8b");
    CHECK_STR(k ? cfg->models[k->baseline_model].name : NULL, "gpt-4o");
    int gpt = config_model_index(cfg, "gpt-4o");
    CHECK(gpt >= 0);
    if (gpt >= 0) {
        CHECK_INT(cfg->models[gpt].prices.input, 2500000);   /* $2.50 per M */
        CHECK_INT(cfg->models[gpt].prices.output, 10000000); /* $10 per M */
    }
    int q = config_model_index(cfg, "qwen3-8b");
    CHECK(q >= 0 && cfg->models[q].prices.output == 10000); /* $0.01 per M */
    config_free(cfg);
}

static void test_undefined_tier_model_names_file_and_path(void)
{
    scratch_with("summarize.json",
                 "{\"system_prompt\": \"s\", \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8}, {\"model\": \"foo\"}]}");
    char msg[600];
    CHECK(load_msg(msg, sizeof msg) != 0);
    char want[700];
    snprintf(want, sizeof want, "%s/summarize.json: tiers[1].model \"foo\" is not defined in %s/models.json", tmpdir, tmpdir);
    CHECK_STR(msg, want);
    scratch_done();
}

static void test_mistakes_are_named(void)
{
    struct {
        const char *file, *content, *expect;
    } cases[] = {
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\", \"accept\": 1.5}]}", "chat.json: tiers[0].accept must be a number from 0 to 1"},
        {"chat.json", "{\"tiers\": []}", "chat.json: tiers must be an array of 1 to 8"},
        {"chat.json", "{\"system_prompt\": \"x\"}", "chat.json: tiers is required"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"max_tokns\": 5}", "chat.json: \"max_tokns\" is not a known key"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"checks\": {\"regex\": \"(\"}}", "chat.json: checks.regex does not compile"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"batch\": {\"max_items\": 0}}", "chat.json: batch.max_items must be an integer from 1 to 100"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-5\"}", "chat.json: baseline_model \"gpt-5\" is not defined"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}],", "chat.json: truncated json"},
        {"chat.json", "[1]", "chat.json: the top level must be a JSON object"},
        {"Bad-Name.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}]}", "must be lowercase letters"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"ftp://x\"}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "models.json: providers.p.base_url must start with http:// or https://"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\"}}, \"models\": {\"m\": {\"provider\": \"q\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "models.json: models.m.provider \"q\" is not defined under providers"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\"}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": -1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "models.json: models.m.input_usd_per_mtok must be a non-negative price"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\"}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 0.0000001, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "at most 6 decimals"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\", \"headers\": {\"Content-Type\": \"text/plain\"}}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "providers.p.headers.Content-Type is set by tierq itself"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\", \"headers\": {\"X-Key\": 5}}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "providers.p.headers.X-Key must be a string or {\"env\""},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\", \"headers\": {\"bad header\": \"v\"}}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "is not a valid header name"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\", \"api_key_env\": \"K\", \"headers\": {\"Authorization\": \"Basic x\"}}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "conflicts with api_key_env"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\", \"query\": {\"api-version\": 3}}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}}}", "providers.p.query.api-version must be a string"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\"}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1, \"extra_body\": {\"temperature\": 1}}}}", "models.m.extra_body.temperature is set by tierq itself"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\"}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1, \"extra_body\": [1]}}}", "models.m.extra_body must be a JSON object"},
        {"models.json", "{\"providers\": {\"p\": {\"base_url\": \"http://x\"}}, \"models\": {\"m\": {\"provider\": \"p\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1, \"system_prompt_as\": \"developer\"}}}", "models.m.system_prompt_as must be"},
        {"chat.json", "{\"system_prompt\": \"Say {tone} things\", \"tiers\": [{\"model\": \"gpt-4o\"}]}", "system_prompt names {tone}, which is not a parameter of this kind"},
        {"chat.json", "{\"system_prompt\": \"x\", \"params\": {\"tone\": {\"default\": \"kind\"}}, \"tiers\": [{\"model\": \"gpt-4o\"}]}", "params.tone is declared but used nowhere"},
        {"chat.json", "{\"system_prompt\": \"{labels}\", \"params\": {\"labels\": {\"default\": \"a\"}}, \"tiers\": [{\"model\": \"gpt-4o\"}]}", "params.labels is built in"},
        {"chat.json", "{\"system_prompt\": \"{Tone}\", \"params\": {\"Tone\": {\"default\": \"a\"}}, \"tiers\": [{\"model\": \"gpt-4o\"}]}", "params.Tone is not a valid parameter name"},
        {"chat.json", "{\"system_prompt\": \"{tone}\", \"params\": {\"tone\": {\"description\": \"a\"}}, \"tiers\": [{\"model\": \"gpt-4o\"}]}", "params.tone.default is required"},
        {"chat.json", "{\"system_prompt\": \"Pick one.\", \"tiers\": [{\"model\": \"gpt-4o\"}], \"checks\": {\"labels\": [\"a\", \"b\"]}}", "checks.labels is set but system_prompt does not show the labels"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"checks\": {\"missing_signal\": \"ignore\"}}", "checks.missing_signal must be"},
        {"chat.json", "{\"system_prompt\": \"into {target_language}\", \"params\": {\"target_language\": {\"default\": \"fr\"}}, \"tiers\": [{\"model\": \"qwen-mt-turbo\"}], \"batch\": {\"enabled\": true}}", "batch is enabled but tiers[0].model qwen-mt-turbo takes no system prompt"},
        {"chat.json", "{\"system_prompt\": \"x\", \"tiers\": [{\"model\": \"qwen-mt-turbo\"}]}", "model qwen-mt-turbo (used by this kind) has {target_language} in its extra_body"},
        {"chat.json", "{\"system_prompt\": \"For {team}: ask {team about it\", \"params\": {\"team\": {\"default\": \"ops\"}}, \"tiers\": [{\"model\": \"gpt-4o\"}]}", "chat.json: system_prompt has {team without its closing brace"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"max_tokens\": 50 \"temperature\": 0}", "chat.json: invalid json near byte 50: expected ',' or '}'"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"max_tokens\": 50,, \"temperature\": 0}", "chat.json: invalid json near byte 50: expected a key"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}],}", "chat.json: invalid json near byte 32: expected a key"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}]},", "chat.json: invalid json near byte 32: expected the end of the document"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"max_tokens\": 50, \"max_tokens\": 60}", "chat.json: \"max_tokens\" is given twice"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\", \"model\": \"gpt-4o-mini\"}]}", "chat.json: tiers[0]: \"model\" is given twice"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"shadow\": {\"rate\": 0.02, \"boost\": 0.5}}", "chat.json: shadow.boost must be a number from 1 to 100"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"shadow\": {\"rate\": 0.02, \"bost\": 5}}", "\"bost\" is not a known key"},
        {"chat.json", "{\"tiers\": [{\"model\": \"gpt-4o\"}], \"shadow\": {\"min_agreement\": 0.9, \"boost\": 5}}",
         "chat.json: shadow has no \"rate\": no shadow call is made without one"},
        {"chat.json", "{\"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8, \"accept_if_agrees\": 0.5}, {\"model\": \"gpt-4o\"}]}", "tiers[0].accept_if_agrees is not possible on the first tier"},
        {"chat.json", "{\"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.8}, {\"model\": \"gpt-4o\", \"accept_if_agrees\": 0.5}]}", "tiers[1].accept_if_agrees is not possible on the last tier"},
        {"chat.json", "{\"tiers\": [{\"model\": \"qwen3-8b\"}, {\"model\": \"qwen3-32b\", \"accept\": 0.7, \"accept_if_agrees\": 0.7}, {\"model\": \"gpt-4o\"}]}", "tiers[1].accept_if_agrees must be below the tier's accept"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        scratch_with(cases[i].file, cases[i].content);
        char msg[600];
        int rc = load_msg(msg, sizeof msg);
        CHECKF(rc != 0 && strstr(msg, cases[i].expect) != NULL, "case %zu: want \"%s\", got \"%s\"", i, cases[i].expect, msg);
        scratch_done();
    }
}

static void test_base_url_override_from_environment(void)
{
    scratch_with(NULL, NULL);
    setenv("TIERQ_BASE_URL", "http://127.0.0.1:9/v1/", 1);
    TqConfig *cfg = NULL;
    TqErr err = {0};
    CHECK_INT(config_load(tmpdir, &cfg, &err), 0);
    for (int i = 0; cfg && i < cfg->nproviders; i++)
        CHECK_STR(cfg->providers[i].base_url, "http://127.0.0.1:9/v1");
    config_free(cfg);
    unsetenv("TIERQ_BASE_URL");
    /* one provider's own variable wins over the global one */
    setenv("TIERQ_OPENAI_BASE_URL", "http://127.0.0.1:10/v1", 1);
    CHECK_INT(config_load(tmpdir, &cfg, &err), 0);
    for (int i = 0; cfg && i < cfg->nproviders; i++) {
        if (strcmp(cfg->providers[i].name, "openai") == 0)
            CHECK_STR(cfg->providers[i].base_url, "http://127.0.0.1:10/v1");
        else
            CHECK(strncmp(cfg->providers[i].base_url, "https://", 8) == 0);
    }
    config_free(cfg);
    unsetenv("TIERQ_OPENAI_BASE_URL");
    /* an override is held to the same rule as base_url: the web only */
    setenv("TIERQ_BASE_URL", "file:///etc/passwd", 1);
    cfg = NULL;
    CHECK(config_load(tmpdir, &cfg, &err) != 0);
    CHECKF(strstr(err.msg, "TIERQ_BASE_URL=\"file:///etc/passwd\" must start with http:// or https://") != NULL, "%s", err.msg);
    config_free(cfg);
    unsetenv("TIERQ_BASE_URL");
    scratch_done();
}

/* Gateways: extra headers (literal or from the environment), a base URL with its own query string
 * and extra query parameters joined after the path, per-model body fields and message layout. */
static void test_gateway_settings(void)
{
    scratch_with("models.json",
                 "{\"providers\": {\"gw\": {\"base_url\": \"https://gw.example/openai/deployments/d1?api-version=2024-10-21#x\","
                 " \"headers\": {\"x-portkey-provider\": \"openai\", \"x-portkey-api-key\": {\"env\": \"PORTKEY_KEY\"}},"
                 " \"query\": {\"tag\": \"night run&co\"}}},"
                 " \"models\": {\"gpt-4o\": {\"provider\": \"gw\", \"input_usd_per_mtok\": 2.5, \"cached_input_usd_per_mtok\": 1.25,"
                 " \"output_usd_per_mtok\": 10, \"max_output_tokens\": 4096, \"system_prompt_as\": \"user\","
                 " \"extra_body\": {\"user\": \"tierq\", \"metadata\": {\"lang\": \"{target_language}\"}}},"
                 " \"qwen-mt-turbo\": {\"provider\": \"gw\", \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 1,"
                 " \"output_usd_per_mtok\": 1, \"system_prompt_as\": \"omit\"}}}");
    /* only translate declares target_language; every other shipped kind must not use gpt-4o's {target_language} */
    char path[512];
    const char *drop[] = {"chat", "classify", "code", "qa", "reasoning", "simple", "summarize"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.json", tmpdir, drop[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/translate.json", tmpdir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"system_prompt\": \"Translate into {target_language}.\", \"params\": {\"target_language\": {\"default\": \"English\"}},"
              " \"tiers\": [{\"model\": \"qwen-mt-turbo\", \"accept\": 0.5}, {\"model\": \"gpt-4o\"}]}", f);
        fclose(f);
    }
    TqConfig *cfg = NULL;
    TqErr err = {0};
    CHECKF(config_load(tmpdir, &cfg, &err) == 0, "%s", err.msg);
    if (cfg) {
        const TqProvider *p = &cfg->providers[0];
        CHECK_STR(p->base_url, "https://gw.example/openai/deployments/d1");
        CHECK_STR(p->url_query, "api-version=2024-10-21&tag=night%20run%26co");
        CHECK_INT(p->nheaders, 2);
        CHECK_STR(p->headers[0].value, "openai");
        CHECK(p->headers[1].value == NULL);
        CHECK_STR(p->headers[1].value_env, "PORTKEY_KEY");
        int m = config_model_index(cfg, "gpt-4o");
        CHECK(m >= 0 && cfg->models[m].system_as == TQ_SYSTEM_AS_USER && cfg->models[m].max_output_tokens == 4096);
        CHECK(m >= 0 && strstr(cfg->models[m].extra_body, "{target_language}") != NULL);
        const TqKind *k = config_kind(cfg, "translate");
        CHECK(k && k->nparams == 1 && strcmp(k->params[0].fallback, "English") == 0);
        Buf b;
        buf_init(&b, 0);
        CHECK_INT(k ? config_kind_params_json(k, &b) : -1, 0);
        CHECK_STR(b.data, "{\"max_tokens\": \"integer\", \"temperature\": \"number\", \"cache\": \"boolean\", \"model\": \"model\", \"target_language\": \"string\"}");
        buf_free(&b);
    }
    config_free(cfg);
    scratch_done();
}

int main(void)
{
    RUN(test_gateway_settings);
    RUN(test_shipped_config_is_valid);
    RUN(test_undefined_tier_model_names_file_and_path);
    RUN(test_mistakes_are_named);
    RUN(test_base_url_override_from_environment);
    return check_done();
}
