#include "catalog.h"

#include "hash.h"
#include "json.h"
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CATALOG_MAX_BYTES ((size_t)4 << 20)
#define CATALOG_MAX_MODELS 4096

const char *catalog_usage_name(UsageStyle u)
{
    switch (u) {
    case USAGE_OPENAI: return "openai";
    case USAGE_DEEPSEEK: return "deepseek";
    case USAGE_NONE: return "none";
    }
    return "openai";
}

static int get_number(const JsonDoc *d, int obj, const char *key, double def, double lo, double hi, double *out,
                      const char *model, TqErr *err)
{
    int v = json_get(d, obj, key);
    if (v < 0) {
        *out = def;
        return 0;
    }
    if (json_double(d, v, out) || !(*out >= lo && *out <= hi))
        return tq_err(err, TQ_EINVAL, "model %s: %s must be a number in [%g, %g]", model, key, lo, hi);
    return 0;
}

static int get_bool(const JsonDoc *d, int obj, const char *key, bool *out, const char *model, TqErr *err)
{
    int v = json_get(d, obj, key);
    *out = false;
    if (v < 0)
        return 0;
    if (json_bool(d, v, out))
        return tq_err(err, TQ_EINVAL, "model %s: %s must be true or false", model, key);
    return 0;
}

static int parse_model(const JsonDoc *d, int key, int obj, SimModel *m, TqErr *err)
{
    m->name = json_strdup(d, key);
    if (!m->name)
        return tq_err(err, TQ_ENOMEM, "out of memory loading models");
    if (!m->name[0])
        return tq_err(err, TQ_EINVAL, "a model has an empty name");
    if (json_type(d, obj) != JSON_OBJECT)
        return tq_err(err, TQ_EINVAL, "model %s: expected an object", m->name);
    int rc = get_number(d, obj, "skill", -1, 0, 1, &m->skill, m->name, err);
    if (rc)
        return rc;
    if (json_get(d, obj, "skill") < 0)
        return tq_err(err, TQ_EINVAL, "model %s: skill is required", m->name);
    int lat = json_get(d, obj, "latency_ms");
    if (lat >= 0 && json_type(d, lat) == JSON_OBJECT) {
        if ((rc = get_number(d, lat, "mean", 0, 0, 3600000, &m->latency_mean_ms, m->name, err)) ||
            (rc = get_number(d, lat, "jitter", 0, 0, 3600000, &m->latency_jitter_ms, m->name, err)))
            return rc;
    } else if (lat >= 0) {
        if ((rc = get_number(d, obj, "latency_ms", 0, 0, 3600000, &m->latency_mean_ms, m->name, err)))
            return rc;
    }
    if ((rc = get_number(d, obj, "ms_per_output_token", 0, 0, 10000, &m->ms_per_output_token, m->name, err)) ||
        (rc = get_bool(d, obj, "logprobs", &m->logprobs, m->name, err)) ||
        (rc = get_bool(d, obj, "reasoning", &m->reasoning, m->name, err)))
        return rc;
    m->usage = USAGE_OPENAI;
    int us = json_get(d, obj, "usage_style");
    if (us >= 0) {
        if (json_eq(d, us, "openai"))
            m->usage = USAGE_OPENAI;
        else if (json_eq(d, us, "deepseek"))
            m->usage = USAGE_DEEPSEEK;
        else if (json_eq(d, us, "none"))
            m->usage = USAGE_NONE;
        else
            return tq_err(err, TQ_EINVAL, "model %s: usage_style must be openai, deepseek or none", m->name);
    }
    return 0;
}

int catalog_load(Catalog *cat, const char *path, int latency_override_ms, TqErr *err)
{
    memset(cat, 0, sizeof *cat);
    u64map_init(&cat->index, 0);
    Buf text;
    buf_init(&text, CATALOG_MAX_BYTES);
    JsonDoc d = {0};
    int rc = sim_read_file(path, &text, err);
    if (rc)
        goto cleanup;
    rc = json_parse(&d, text.data, text.len, 0, err);
    if (rc) {
        tq_err_prefix(err, "%s", path);
        goto cleanup;
    }
    int models = json_get(&d, 0, "models");
    if (json_type(&d, models) != JSON_OBJECT || json_size(&d, models) < 1) {
        rc = tq_err(err, TQ_EINVAL, "%s: \"models\" must be a non-empty object", path);
        goto cleanup;
    }
    size_t n = (size_t)json_size(&d, models);
    if (n > CATALOG_MAX_MODELS) {
        rc = tq_err(err, TQ_ELIMIT, "%s: more than %d models", path, CATALOG_MAX_MODELS);
        goto cleanup;
    }
    cat->models = calloc(n, sizeof *cat->models);
    if (!cat->models) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory loading models");
        goto cleanup;
    }
    int k = models + 1;
    for (size_t i = 0; i < n; i++, k = json_skip(&d, k + 1)) {
        SimModel *m = &cat->models[i];
        cat->n = i + 1; /* so catalog_free releases the name on failure */
        m->index = i;
        rc = parse_model(&d, k, k + 1, m, err);
        if (rc) {
            tq_err_prefix(err, "%s", path);
            goto cleanup;
        }
        if (latency_override_ms >= 0) {
            m->latency_mean_ms = latency_override_ms;
            m->latency_jitter_ms = 0;
            m->ms_per_output_token = 0;
        }
        int created = 0;
        uint64_t *slot = u64map_upsert(&cat->index, hash_fnv1a64(m->name, strlen(m->name)), &created);
        if (!slot) {
            rc = tq_err(err, TQ_ENOMEM, "out of memory loading models");
            goto cleanup;
        }
        if (!created) {
            rc = tq_err(err, TQ_EINVAL, "%s: model %s is listed twice", path, m->name);
            goto cleanup;
        }
        *slot = i;
    }
    rc = 0;
cleanup:
    json_doc_free(&d);
    buf_free(&text);
    if (rc)
        catalog_free(cat);
    return rc;
}

void catalog_free(Catalog *cat)
{
    if (!cat)
        return;
    for (size_t i = 0; i < cat->n; i++)
        free(cat->models[i].name);
    free(cat->models);
    u64map_free(&cat->index);
    memset(cat, 0, sizeof *cat);
}

const SimModel *catalog_find(const Catalog *cat, const char *name, size_t len)
{
    uint64_t *v = u64map_get(&cat->index, hash_fnv1a64(name, len));
    if (!v)
        return NULL;
    const SimModel *m = &cat->models[*v];
    if (strlen(m->name) != len || memcmp(m->name, name, len) != 0)
        return NULL;
    return m;
}

uint32_t catalog_latency_ms(const SimModel *m, double u, int64_t completion_tokens)
{
    double ms = m->latency_mean_ms + m->latency_jitter_ms * (2.0 * u - 1.0);
    if (ms < 0)
        ms = 0;
    if (completion_tokens > 0)
        ms += m->ms_per_output_token * (double)completion_tokens;
    if (ms > 3600000.0)
        ms = 3600000.0;
    return (uint32_t)lround(ms);
}
