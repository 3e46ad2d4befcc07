/* The cache key: the same job under the same configuration gives the same key; a change to anything
 * that determines the answer gives another. Loads the shipped jobs/ (and a copy with one change). */
#include "../check.h"
#include "cachekey.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

static const char *jobs_dir(void)
{
    const char *d = getenv("TIERQ_JOBS_DIR");
    return d ? d : "jobs";
}

static TqConfig *load(const char *dir)
{
    TqConfig *cfg = NULL;
    TqErr err = {0};
    if (config_load(dir, &cfg, &err)) {
        printf("# %s: %s\n", dir, err.msg);
        return NULL;
    }
    return cfg;
}

static void key_of(const TqConfig *cfg, const char *kind, const QueueJob *j, char *out)
{
    const TqKind *kd = config_kind(cfg, kind);
    if (!kd) {
        strcpy(out, "no kind");
        return;
    }
    cache_key(cfg, kd, j, out);
}

static void test_what_changes_the_key(void)
{
    TqConfig *cfg = load(jobs_dir());
    if (!cfg)
        return;
    QueueJob base = {.id = 1, .kind = (char[]){"classify"}, .prompt = (char[]){"Package: vim"}, .params = (char[]){"{}"}};
    char k0[CACHE_KEY_HEX], k[CACHE_KEY_HEX];
    key_of(cfg, "classify", &base, k0);
    CHECK_INT((long long)strlen(k0), 64);
    /* not the job's identity, run or attempt: the same question is the same question */
    QueueJob j = base;
    j.id = 99;
    j.run_name = (char[]){"nightly"};
    j.attempt = 3;
    j.priority = 5;
    key_of(cfg, "classify", &j, k);
    CHECK_STR(k, k0);
    /* everything that determines the answer */
    const struct {
        const char *what;
        QueueJob job;
        const char *kind;
    } changed[] = {
        {"prompt", {.kind = (char[]){"classify"}, .prompt = (char[]){"Package: vim "}, .params = (char[]){"{}"}}, "classify"},
        {"empty context", {.kind = (char[]){"classify"}, .prompt = (char[]){"Package: vim"}, .context = (char[]){""}, .params = (char[]){"{}"}}, "classify"},
        {"context", {.kind = (char[]){"classify"}, .prompt = (char[]){"Package: vim"}, .context = (char[]){"x"}, .params = (char[]){"{}"}}, "classify"},
        {"system prompt", {.kind = (char[]){"classify"}, .prompt = (char[]){"Package: vim"}, .system_prompt = (char[]){""}, .params = (char[]){"{}"}}, "classify"},
        {"params", {.kind = (char[]){"classify"}, .prompt = (char[]){"Package: vim"}, .params = (char[]){"{\"max_tokens\": 5}"}}, "classify"},
        {"another kind", {.kind = (char[]){"simple"}, .prompt = (char[]){"Package: vim"}, .params = (char[]){"{}"}}, "simple"},
        /* a field boundary moved: prompt "ab" + context "c" against prompt "a" + context "bc" */
        {"boundary", {.kind = (char[]){"classify"}, .prompt = (char[]){"Package: vi"}, .context = (char[]){"m"}, .params = (char[]){"{}"}}, "classify"},
    };
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        key_of(cfg, changed[i].kind, &changed[i].job, k);
        CHECKF(strcmp(k, k0) != 0, "%s did not change the key", changed[i].what);
    }
    /* a change to the kind's file or to a tier's model definition */
    char dir[] = "/tmp/tq_ck_XXXXXX";
    if (mkdtemp(dir)) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "cp '%s'/*.json '%s/' && printf ' ' >> '%s/classify.json'",
                 jobs_dir(), dir, dir);
        CHECK_INT(system(cmd), 0);
        TqConfig *c2 = load(dir);
        if (c2) {
            key_of(c2, "classify", &base, k);
            CHECKF(strcmp(k, k0) != 0, "an edited kind file (one trailing space) kept the key%s", "");
            key_of(c2, "simple", &base, k); /* simple's file is unchanged */
            char ks[CACHE_KEY_HEX];
            key_of(cfg, "simple", &base, ks);
            CHECK_STR(k, ks);
            config_free(c2);
        }
        snprintf(cmd, sizeof cmd, "cp '%s'/*.json '%s/' && sed -i 's/\"gpt-4o\": {/\"gpt-4o\": {\"extra_body\": {\"top_k\": 1}, /' '%s/models.json'",
                 jobs_dir(), dir, dir);
        CHECK_INT(system(cmd), 0);
        c2 = load(dir);
        if (c2) {
            key_of(c2, "classify", &base, k);
            CHECKF(strcmp(k, k0) != 0, "a tier model's extra_body kept the key%s", "");
            config_free(c2);
        }
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK_INT(system(cmd), 0);
    }
    config_free(cfg);
}

int main(void)
{
    RUN(test_what_changes_the_key);
    return check_done();
}
