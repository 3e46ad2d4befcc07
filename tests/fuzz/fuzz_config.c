/* fuzz_config.c — the jobs/ directory loader (common/config.c) on any file contents.
 *
 * Input: models.json, then for each kind file a line "===" and its contents:
 *   {"providers": ...}\n===\n{"tiers": ...}\n===\n{...}
 * The parts are written as models.json, classify.json, translate.json and summarize.json (the first
 * four parts; more are ignored) into a fresh directory under $TMPDIR, config_load reads it, and the
 * directory is removed. TIERQ_FUZZ_BASE_URL is set, so a provider with that base_url_env takes the
 * override path; TIERQ_BASE_URL is unset so the environment cannot change the result.
 *
 * Checked contracts (config.h, err.h): a failure has a message, one printable line; a loaded config has every
 * kind file, sorted by name, and every model, provider and tier index in range; the params JSON
 * each kind gives tierq.kinds parses; config_use_baseline_map leaves one tier per kind. */
#include "fuzz.h"

#include "config.h"
#include "json.h"
#include "utf8.h"

#include <sys/stat.h>
#include <unistd.h>

static const char SEP[] = "\n===\n";
static const char *const FILES[] = {"models.json", "classify.json", "translate.json", "summarize.json"};
#define NFILES (sizeof FILES / sizeof FILES[0])

/* dir/name into path[cap]; aborts when it does not fit (the harness cannot run: not a finding). */
static void join(char *path, size_t cap, const char *dir, const char *name)
{
    int w = snprintf(path, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap)
        abort();
}

static int write_file(const char *dir, const char *name, const uint8_t *data, size_t n)
{
    char path[4096];
    join(path, sizeof path, dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static void remove_dir(const char *dir)
{
    char path[4096];
    for (size_t i = 0; i < NFILES; i++) {
        join(path, sizeof path, dir, FILES[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void check_config(const TqConfig *cfg, size_t nkind_files)
{
    FUZZ_ASSERT(cfg->nproviders > 0 && cfg->nmodels > 0, "providers and models are not empty");
    FUZZ_ASSERT((size_t)cfg->nkinds == nkind_files, "one kind per kind file");
    for (int i = 0; i < cfg->nproviders; i++)
        FUZZ_ASSERT(cfg->providers[i].name && cfg->providers[i].base_url, "a provider has a name and a base_url");
    for (int i = 0; i < cfg->nmodels; i++) {
        const TqModel *m = &cfg->models[i];
        FUZZ_ASSERT(m->name && m->api_model, "a model has names");
        FUZZ_ASSERT(m->provider >= 0 && m->provider < cfg->nproviders, "model.provider in range");
        FUZZ_ASSERT(config_model_index(cfg, m->name) >= 0, "a model is found by its name");
        if (m->extra_body) {
            JsonDoc d;
            FUZZ_ASSERT(json_parse(&d, m->extra_body, strlen(m->extra_body), 0, NULL) == 0 &&
                            json_type(&d, 0) == JSON_OBJECT,
                        "extra_body is a JSON object");
            json_doc_free(&d);
        }
    }
    for (int i = 0; i < cfg->nkinds; i++) {
        const TqKind *k = &cfg->kinds[i];
        FUZZ_ASSERT(i == 0 || strcmp(cfg->kinds[i - 1].name, k->name) < 0, "kinds sorted by name");
        FUZZ_ASSERT(config_kind(cfg, k->name) == k, "config_kind finds every kind");
        FUZZ_ASSERT(k->ntiers >= 1 && k->ntiers <= 8, "1 to 8 tiers");
        for (int t = 0; t < k->ntiers; t++)
            FUZZ_ASSERT(k->tiers[t].model >= 0 && k->tiers[t].model < cfg->nmodels, "tier model in range");
        FUZZ_ASSERT(k->baseline_model >= 0 && k->baseline_model < cfg->nmodels, "baseline in range");
        FUZZ_ASSERT(k->checks.judge_model >= -1 && k->checks.judge_model < cfg->nmodels, "judge in range");
        FUZZ_ASSERT(!k->checks.max_chars || k->checks.min_chars <= k->checks.max_chars, "min_chars <= max_chars");
        FUZZ_ASSERT(!k->checks.regex == !k->checks.regex_re, "a regex is compiled at load");
        Buf params;
        buf_init(&params, 0);
        FUZZ_ASSERT(config_kind_params_json(k, &params) == 0, "config_kind_params_json");
        JsonDoc d;
        FUZZ_ASSERT(json_parse(&d, params.data, params.len, 0, NULL) == 0 && json_type(&d, 0) == JSON_OBJECT,
                    "the params of tierq.kinds are a JSON object");
        json_doc_free(&d);
        buf_free(&params);
        for (int p = 0; p < k->nparams; p++)
            FUZZ_ASSERT(config_kind_param(k, k->params[p].name, strlen(k->params[p].name)) != NULL,
                        "a declared parameter is found");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int env_done;
    if (!env_done) {
        env_done = 1;
        unsetenv("TIERQ_BASE_URL");
        setenv("TIERQ_FUZZ_BASE_URL", "http://127.0.0.1:9/v1", 1);
    }
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    join(dir, sizeof dir, tmp && *tmp ? tmp : "/tmp", "tierq-fuzz-config.XXXXXX");
    if (!mkdtemp(dir))
        abort(); /* not a finding: the harness cannot run */

    size_t nparts = 0, at = 0;
    while (nparts < NFILES) {
        const uint8_t *sep = at < size ? memmem(data + at, size - at, SEP, sizeof SEP - 1) : NULL;
        size_t end = sep ? (size_t)(sep - data) : size;
        if (write_file(dir, FILES[nparts], data + at, end - at) != 0)
            abort();
        nparts++;
        if (!sep)
            break;
        at = end + sizeof SEP - 1;
    }

    TqConfig *cfg = NULL;
    TqErr err = {0};
    int rc = config_load(dir, &cfg, &err);
    if (rc) {
        FUZZ_ASSERT(cfg == NULL, "no config on failure");
        FUZZ_ASSERT(err.msg[0] != '\0', "a failure says why");
        /* err.h: "a one-line, lowercase, human-readable message" — even when it quotes a name with a
         * "\n" or ESC in it, or a key cut in the middle of a character (crashes/config/err_*). */
        size_t n = strlen(err.msg);
        FUZZ_ASSERT(fuzz_one_line(err.msg, n) && utf8_valid(err.msg, n),
                                 "an error message is one printable line of valid UTF-8");
    } else {
        check_config(cfg, nparts - 1);
        FUZZ_ASSERT(config_use_baseline_map(cfg, &err) == 0, "config_use_baseline_map");
        for (int i = 0; i < cfg->nkinds; i++)
            FUZZ_ASSERT(cfg->kinds[i].ntiers == 1 && cfg->kinds[i].tiers[0].model == cfg->kinds[i].baseline_model,
                        "the baseline map has one tier, the baseline");
        config_free(cfg);
    }
    config_free(NULL);
    remove_dir(dir);
    return 0;
}
