#include "catalog.h"

#include "hash.h"
#include "json.h"
#include "sim.h"
#include "utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CATALOG_MAX_BYTES ((size_t)4 << 20)
#define CATALOG_MAX_MODELS 4096
#define CATALOG_MAX_UPDATE_TOKENS 8192 /* JSON tokens in one catalog_update body */
#define CATALOG_SHOWN 64               /* bytes of a name, key or value quoted in a message */
#define CATALOG_MAX_LATENCY_MS 3600000
#define CATALOG_MAX_SENSITIVITY 50     /* exp(50) already makes every skill below 1 worth nothing */

/* The keys each object accepts, listed in the message about an unknown one. */
#define TOP_KEYS "models, description"
#define MODEL_KEYS                                                                                           \
    "skill, latency_ms, ms_per_output_token, logprobs, usage_style, reasoning, confidence, difficulty, judge, " \
    "compress, provider, rpm, tpm, down, description"
#define LATENCY_KEYS "mean, jitter"
#define CONFIDENCE_KEYS "correct, wrong, unkeyed, token_spread"
#define OUTCOME_KEYS "mean, spread, min, max"
#define DIFFICULTY_KEYS "sensitivity, pivot, kind_offset"
#define JUDGE_KEYS "skill, skill_exponent, difficulty_sensitivity, difficulty_pivot, fooled_middling"
#define COMPRESS_KEYS "mode, skill, reference_ratio, shape, question_boost"
#define CATALOG_MAX_RATIO 1000
#define CATALOG_MAX_PER_MINUTE 1000000000000LL /* rpm and tpm: far above any real tier */

const char *catalog_down_name(DownMode d)
{
    switch (d) {
    case DOWN_503: return "503";
    case DOWN_DROP: return "drop";
    case DOWN_NO: break;
    }
    return NULL;
}

const char *catalog_usage_name(UsageStyle u)
{
    switch (u) {
    case USAGE_OPENAI: return "openai";
    case USAGE_DEEPSEEK: return "deepseek";
    case USAGE_NONE: return "none";
    }
    return "openai";
}

/* ---- checked reading of one model's keys ---- */

/* One parse of model keys: the document, and where it is for messages ("FILE: model NAME"). */
typedef struct Parse {
    const JsonDoc *d;
    const char *where;
    TqErr *err;
} Parse;

/* Token tok's raw text, cut on a character boundary, for a message (utf8_one_line cleans the
 * whole message at the end). */
static void shown(const JsonDoc *d, int tok, char *out, size_t cap)
{
    size_t n;
    const char *raw = json_raw(d, tok, &n);
    utf8_copy_cut(out, cap, raw ? raw : "", raw ? n : 0);
}

static int unknown_key(const Parse *p, const char *prefix, int key, const char *known)
{
    char k[CATALOG_SHOWN];
    shown(p->d, key, k, sizeof k);
    return tq_err(p->err, TQ_EINVAL, "%s: unknown key \"%s%s\" (known there: %s)", p->where, prefix, k, known);
}

static int number(const Parse *p, int v, const char *path, double lo, double hi, double *out)
{
    double x;
    if (json_double(p->d, v, &x) || !(x >= lo && x <= hi)) {
        char got[CATALOG_SHOWN];
        shown(p->d, v, got, sizeof got);
        return tq_err(p->err, TQ_EINVAL, "%s: %s must be a number in [%g, %g], got %s", p->where, path, lo, hi, got);
    }
    *out = x;
    return 0;
}

static int boolean(const Parse *p, int v, const char *path, bool *out)
{
    if (json_bool(p->d, v, out))
        return tq_err(p->err, TQ_EINVAL, "%s: %s must be true or false", p->where, path);
    return 0;
}

static int object(const Parse *p, int v, const char *path)
{
    if (json_type(p->d, v) != JSON_OBJECT)
        return tq_err(p->err, TQ_EINVAL, "%s: %s must be an object", p->where, path);
    return 0;
}

/* Object members: the first key token is obj+1, its value key+1, the next key after the value. */
static int next_key(const JsonDoc *d, int key) { return json_skip(d, key + 1); }

static int parse_latency(const Parse *p, int v, SimModel *m)
{
    if (json_type(p->d, v) != JSON_OBJECT) { /* a plain number: exactly that, no jitter */
        int rc = number(p, v, "latency_ms", 0, CATALOG_MAX_LATENCY_MS, &m->latency_mean_ms);
        if (!rc)
            m->latency_jitter_ms = 0;
        return rc;
    }
    int k = v + 1, rc = 0;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        if (json_eq(p->d, k, "mean"))
            rc = number(p, k + 1, "latency_ms.mean", 0, CATALOG_MAX_LATENCY_MS, &m->latency_mean_ms);
        else if (json_eq(p->d, k, "jitter"))
            rc = number(p, k + 1, "latency_ms.jitter", 0, CATALOG_MAX_LATENCY_MS, &m->latency_jitter_ms);
        else
            rc = unknown_key(p, "latency_ms.", k, LATENCY_KEYS);
    }
    return rc;
}

/* confidence.<outcome>: {mean, spread, min, max}, all probabilities (a spread above 1 would only
 * pin every answer to min or max). */
static int parse_outcome(const Parse *p, int v, const char *outcome, AnswerConfidence *c)
{
    const struct {
        const char *key;
        double *field;
    } fields[] = {{"mean", &c->mean}, {"spread", &c->spread}, {"min", &c->min}, {"max", &c->max}};
    char path[64], prefix[64];
    snprintf(prefix, sizeof prefix, "confidence.%s.", outcome);
    snprintf(path, sizeof path, "confidence.%s", outcome);
    int rc = object(p, v, path);
    int k = v + 1;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        size_t f = 0, nf = sizeof fields / sizeof fields[0];
        while (f < nf && !json_eq(p->d, k, fields[f].key))
            f++;
        if (f == nf)
            return unknown_key(p, prefix, k, OUTCOME_KEYS);
        snprintf(path, sizeof path, "%s%s", prefix, fields[f].key);
        rc = number(p, k + 1, path, 0, 1, fields[f].field);
    }
    return rc;
}

static int parse_confidence(const Parse *p, int v, AnswerParams *a)
{
    int rc = object(p, v, "confidence");
    int k = v + 1;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        if (json_eq(p->d, k, "correct"))
            rc = parse_outcome(p, k + 1, "correct", &a->correct);
        else if (json_eq(p->d, k, "wrong"))
            rc = parse_outcome(p, k + 1, "wrong", &a->wrong);
        else if (json_eq(p->d, k, "unkeyed"))
            rc = parse_outcome(p, k + 1, "unkeyed", &a->unkeyed);
        else if (json_eq(p->d, k, "token_spread"))
            rc = number(p, k + 1, "confidence.token_spread", 0, 1, &a->token_spread);
        else
            rc = unknown_key(p, "confidence.", k, CONFIDENCE_KEYS);
    }
    return rc;
}

/* Set kind's offset (replacing the one already there): the list merges key by key, like every
 * other setting, so an update can change one kind without repeating the rest. */
static int set_kind_offset(const Parse *p, int key, double offset, AnswerParams *a)
{
    char *kind = json_strdup(p->d, key);
    if (!kind)
        return tq_err(p->err, TQ_ENOMEM, "out of memory reading difficulty.kind_offset");
    size_t len = strlen(kind);
    for (size_t i = 0; i < a->nkind_offsets; i++) {
        if (a->kind_offsets[i].kind_len == len && memcmp(a->kind_offsets[i].kind, kind, len) == 0) {
            a->kind_offsets[i].offset = offset;
            free(kind);
            return 0;
        }
    }
    if (a->nkind_offsets >= CATALOG_MAX_KIND_OFFSETS) {
        free(kind);
        return tq_err(p->err, TQ_EINVAL, "%s: difficulty.kind_offset has more than %d kinds", p->where,
                      CATALOG_MAX_KIND_OFFSETS);
    }
    AnswerKindOffset *grown = realloc(a->kind_offsets, (a->nkind_offsets + 1) * sizeof *grown);
    if (!grown) {
        free(kind);
        return tq_err(p->err, TQ_ENOMEM, "out of memory reading difficulty.kind_offset");
    }
    a->kind_offsets = grown;
    a->kind_offsets[a->nkind_offsets++] = (AnswerKindOffset){kind, len, offset};
    return 0;
}

static int parse_kind_offsets(const Parse *p, int v, AnswerParams *a)
{
    int rc = object(p, v, "difficulty.kind_offset");
    int k = v + 1;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        char kind[CATALOG_SHOWN], path[CATALOG_SHOWN + 32];
        shown(p->d, k, kind, sizeof kind);
        snprintf(path, sizeof path, "difficulty.kind_offset.%s", kind);
        double offset;
        if (!(rc = number(p, k + 1, path, -1, 1, &offset)))
            rc = set_kind_offset(p, k, offset, a);
    }
    return rc;
}

static int parse_difficulty(const Parse *p, int v, AnswerParams *a)
{
    int rc = object(p, v, "difficulty");
    int k = v + 1;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        if (json_eq(p->d, k, "sensitivity"))
            rc = number(p, k + 1, "difficulty.sensitivity", 0, CATALOG_MAX_SENSITIVITY, &a->difficulty_sensitivity);
        else if (json_eq(p->d, k, "pivot"))
            rc = number(p, k + 1, "difficulty.pivot", 0, 1, &a->difficulty_pivot);
        else if (json_eq(p->d, k, "kind_offset"))
            rc = parse_kind_offsets(p, k + 1, a);
        else
            rc = unknown_key(p, "difficulty.", k, DIFFICULTY_KEYS);
    }
    return rc;
}

static int parse_judge(const Parse *p, int v, JudgeParams *j)
{
    int rc = object(p, v, "judge");
    int k = v + 1;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        if (json_eq(p->d, k, "skill") && json_is_null(p->d, k + 1))
            j->skill = -1; /* null: follow the model's skill (again) */
        else if (json_eq(p->d, k, "skill"))
            rc = number(p, k + 1, "judge.skill", 0, 1, &j->skill);
        else if (json_eq(p->d, k, "skill_exponent"))
            rc = number(p, k + 1, "judge.skill_exponent", 0, CATALOG_MAX_SENSITIVITY, &j->skill_exponent);
        else if (json_eq(p->d, k, "difficulty_sensitivity"))
            rc = number(p, k + 1, "judge.difficulty_sensitivity", 0, CATALOG_MAX_SENSITIVITY,
                        &j->difficulty_sensitivity);
        else if (json_eq(p->d, k, "difficulty_pivot"))
            rc = number(p, k + 1, "judge.difficulty_pivot", 0, 1, &j->difficulty_pivot);
        else if (json_eq(p->d, k, "fooled_middling"))
            rc = number(p, k + 1, "judge.fooled_middling", 0, 1, &j->fooled_middling);
        else
            rc = unknown_key(p, "judge.", k, JUDGE_KEYS);
    }
    return rc;
}

static int parse_compress(const Parse *p, int v, CompressParams *c)
{
    int rc = object(p, v, "compress");
    int k = v + 1;
    for (int i = 0; rc == 0 && i < json_size(p->d, v); i++, k = next_key(p->d, k)) {
        if (json_eq(p->d, k, "mode")) {
            if (json_eq(p->d, k + 1, "extract"))
                c->mode = COMPRESS_EXTRACT;
            else if (json_eq(p->d, k + 1, "truncate"))
                c->mode = COMPRESS_TRUNCATE;
            else
                rc = tq_err(p->err, TQ_EINVAL, "%s: compress.mode must be extract or truncate", p->where);
        } else if (json_eq(p->d, k, "skill") && json_is_null(p->d, k + 1))
            c->skill = -1; /* null: the model's skill */
        else if (json_eq(p->d, k, "skill"))
            rc = number(p, k + 1, "compress.skill", 0, 1, &c->skill);
        else if (json_eq(p->d, k, "reference_ratio"))
            rc = number(p, k + 1, "compress.reference_ratio", 1.01, CATALOG_MAX_RATIO, &c->reference_ratio);
        else if (json_eq(p->d, k, "shape"))
            rc = number(p, k + 1, "compress.shape", 0, CATALOG_MAX_SENSITIVITY, &c->shape);
        else if (json_eq(p->d, k, "question_boost"))
            rc = number(p, k + 1, "compress.question_boost", 0, 1, &c->question_boost);
        else
            rc = unknown_key(p, "compress.", k, COMPRESS_KEYS);
    }
    return rc;
}

static int parse_usage(const Parse *p, int v, UsageStyle *out)
{
    if (json_eq(p->d, v, "openai"))
        *out = USAGE_OPENAI;
    else if (json_eq(p->d, v, "deepseek"))
        *out = USAGE_DEEPSEEK;
    else if (json_eq(p->d, v, "none"))
        *out = USAGE_NONE;
    else
        return tq_err(p->err, TQ_EINVAL, "%s: usage_style must be openai, deepseek or none", p->where);
    return 0;
}

/* rpm / tpm: a whole number of units per minute, or null for unlimited (stored as 0). */
static int parse_per_minute(const Parse *p, int v, const char *path, int64_t *out)
{
    if (json_is_null(p->d, v)) {
        *out = 0;
        return 0;
    }
    int64_t x;
    if (json_type(p->d, v) != JSON_PRIMITIVE || json_int64(p->d, v, &x) || x < 1 || x > CATALOG_MAX_PER_MINUTE) {
        char got[CATALOG_SHOWN];
        shown(p->d, v, got, sizeof got);
        return tq_err(p->err, TQ_EINVAL, "%s: %s must be null or a whole number in [1, %lld], got %s", p->where, path,
                      (long long)CATALOG_MAX_PER_MINUTE, got);
    }
    *out = x;
    return 0;
}

/* down: false (up), true or "503" (HTTP 503), "drop" (connection closed). */
static int parse_down(const Parse *p, int v, DownMode *out)
{
    bool b;
    if (json_eq(p->d, v, "503"))
        *out = DOWN_503;
    else if (json_eq(p->d, v, "drop"))
        *out = DOWN_DROP;
    else if (json_type(p->d, v) != JSON_STRING && json_bool(p->d, v, &b) == 0)
        *out = b ? DOWN_503 : DOWN_NO;
    else
        return tq_err(p->err, TQ_EINVAL, "%s: down must be false, true, \"503\" or \"drop\"", p->where);
    return 0;
}

/* provider: a non-empty string, or null for none. m->provider is m's own copy (catalog_update
 * gives the model it parses into a copy), so it can be replaced here. */
static int parse_provider(const Parse *p, int v, SimModel *m)
{
    char *s = NULL;
    if (!json_is_null(p->d, v)) {
        if (json_type(p->d, v) != JSON_STRING)
            return tq_err(p->err, TQ_EINVAL, "%s: provider must be a string or null", p->where);
        if (!(s = json_strdup(p->d, v)))
            return tq_err(p->err, TQ_ENOMEM, "out of memory reading provider");
        if (!s[0]) {
            free(s);
            return tq_err(p->err, TQ_EINVAL, "%s: provider must not be empty", p->where);
        }
    }
    free(m->provider);
    m->provider = s;
    return 0;
}

/* Apply the keys of object obj to m: present keys replace m's values, absent ones keep them. */
static int parse_model_keys(const Parse *p, int obj, SimModel *m)
{
    const JsonDoc *d = p->d;
    int rc = 0, k = obj + 1;
    for (int i = 0; rc == 0 && i < json_size(d, obj); i++, k = next_key(d, k)) {
        int v = k + 1;
        if (json_eq(d, k, "skill"))
            rc = number(p, v, "skill", 0, 1, &m->skill);
        else if (json_eq(d, k, "latency_ms"))
            rc = parse_latency(p, v, m);
        else if (json_eq(d, k, "ms_per_output_token"))
            rc = number(p, v, "ms_per_output_token", 0, 10000, &m->ms_per_output_token);
        else if (json_eq(d, k, "logprobs"))
            rc = boolean(p, v, "logprobs", &m->logprobs);
        else if (json_eq(d, k, "reasoning"))
            rc = boolean(p, v, "reasoning", &m->reasoning);
        else if (json_eq(d, k, "usage_style"))
            rc = parse_usage(p, v, &m->usage);
        else if (json_eq(d, k, "confidence"))
            rc = parse_confidence(p, v, &m->answer);
        else if (json_eq(d, k, "difficulty"))
            rc = parse_difficulty(p, v, &m->answer);
        else if (json_eq(d, k, "judge"))
            rc = parse_judge(p, v, &m->judge);
        else if (json_eq(d, k, "compress"))
            rc = parse_compress(p, v, &m->compress);
        else if (json_eq(d, k, "provider"))
            rc = parse_provider(p, v, m);
        else if (json_eq(d, k, "rpm"))
            rc = parse_per_minute(p, v, "rpm", &m->rpm);
        else if (json_eq(d, k, "tpm"))
            rc = parse_per_minute(p, v, "tpm", &m->tpm);
        else if (json_eq(d, k, "down"))
            rc = parse_down(p, v, &m->down);
        else if (json_eq(d, k, "description")) {
            if (json_type(d, v) != JSON_STRING)
                rc = tq_err(p->err, TQ_EINVAL, "%s: description must be a string", p->where);
        } else
            rc = unknown_key(p, "", k, MODEL_KEYS);
    }
    return rc;
}

/* What no single key can check: each clamp range must be a range. */
static int check_model(const Parse *p, const SimModel *m)
{
    const struct {
        const char *name;
        const AnswerConfidence *c;
    } outcomes[] = {{"correct", &m->answer.correct}, {"wrong", &m->answer.wrong}, {"unkeyed", &m->answer.unkeyed}};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        if (outcomes[i].c->min > outcomes[i].c->max)
            return tq_err(p->err, TQ_EINVAL, "%s: confidence.%s.min (%g) is above confidence.%s.max (%g)", p->where,
                          outcomes[i].name, outcomes[i].c->min, outcomes[i].name, outcomes[i].c->max);
    return 0;
}

static void model_defaults(SimModel *m)
{
    m->skill = -1; /* required in a file: catalog_load checks it was given */
    m->usage = USAGE_OPENAI;
    m->answer = ANSWER_PARAMS_DEFAULT;
    m->judge = JUDGE_PARAMS_DEFAULT;
    m->compress = COMPRESS_PARAMS_DEFAULT;
}

static void apply_override(SimModel *m, int latency_override_ms)
{
    if (latency_override_ms < 0)
        return;
    m->latency_mean_ms = latency_override_ms;
    m->latency_jitter_ms = 0;
    m->ms_per_output_token = 0;
}

static void kind_offsets_free(AnswerParams *a)
{
    for (size_t i = 0; i < a->nkind_offsets; i++)
        free(a->kind_offsets[i].kind);
    free(a->kind_offsets);
    a->kind_offsets = NULL;
    a->nkind_offsets = 0;
}

static int kind_offsets_copy(AnswerParams *dst, const AnswerParams *src)
{
    dst->kind_offsets = NULL;
    dst->nkind_offsets = 0;
    if (!src->nkind_offsets)
        return 0;
    dst->kind_offsets = calloc(src->nkind_offsets, sizeof *dst->kind_offsets);
    if (!dst->kind_offsets)
        return TQ_ENOMEM;
    for (size_t i = 0; i < src->nkind_offsets; i++) {
        AnswerKindOffset *o = &dst->kind_offsets[i];
        *o = src->kind_offsets[i];
        o->kind = malloc(o->kind_len + 1);
        if (!o->kind) {
            kind_offsets_free(dst);
            return TQ_ENOMEM;
        }
        memcpy(o->kind, src->kind_offsets[i].kind, o->kind_len + 1);
        dst->nkind_offsets = i + 1;
    }
    return 0;
}

static int parse_model(const JsonDoc *d, int key, int obj, const char *path, SimModel *m, TqErr *err)
{
    model_defaults(m);
    m->name = json_strdup(d, key);
    if (!m->name)
        return tq_err(err, TQ_ENOMEM, "out of memory loading models");
    if (!m->name[0])
        return tq_err(err, TQ_EINVAL, "%s: a model has an empty name", path);
    char name[CATALOG_SHOWN], where[600];
    utf8_copy_cut(name, sizeof name, m->name, strlen(m->name));
    snprintf(where, sizeof where, "%s: model %s", path, name);
    Parse p = {d, where, err};
    if (json_type(d, obj) != JSON_OBJECT)
        return tq_err(err, TQ_EINVAL, "%s: expected an object", where);
    int rc = parse_model_keys(&p, obj, m);
    if (!rc)
        rc = check_model(&p, m);
    if (!rc && m->skill < 0)
        rc = tq_err(err, TQ_EINVAL, "%s: skill is required", where);
    return rc;
}

/* The root's keys: "models" (returned in *models) and "description"; anything else is a typo. */
static int parse_top(const JsonDoc *d, const char *path, int *models, TqErr *err)
{
    *models = -1;
    if (json_type(d, 0) != JSON_OBJECT)
        return tq_err(err, TQ_EINVAL, "%s: the catalog must be a JSON object", path);
    int k = 1;
    for (int i = 0; i < json_size(d, 0); i++, k = next_key(d, k)) {
        if (json_eq(d, k, "models"))
            *models = k + 1;
        else if (json_eq(d, k, "description")) {
            if (json_type(d, k + 1) != JSON_STRING)
                return tq_err(err, TQ_EINVAL, "%s: description must be a string", path);
        } else {
            char key[CATALOG_SHOWN];
            shown(d, k, key, sizeof key);
            return tq_err(err, TQ_EINVAL, "%s: unknown top-level key \"%s\" (known there: %s)", path, key, TOP_KEYS);
        }
    }
    if (*models < 0 || json_type(d, *models) != JSON_OBJECT || json_size(d, *models) < 1)
        return tq_err(err, TQ_EINVAL, "%s: \"models\" must be a non-empty object", path);
    return 0;
}

int catalog_load(Catalog *cat, const char *path, int latency_override_ms, TqErr *err)
{
    memset(cat, 0, sizeof *cat);
    u64map_init(&cat->index, 0);
    cat->latency_override_ms = latency_override_ms;
    Buf text;
    buf_init(&text, CATALOG_MAX_BYTES);
    JsonDoc d = {0};
    int models;
    int rc = sim_read_file(path, &text, err);
    if (rc)
        goto cleanup;
    rc = json_parse(&d, text.data, text.len, 0, err);
    if (rc) {
        tq_err_prefix(err, "%s", path);
        goto cleanup;
    }
    if ((rc = parse_top(&d, path, &models, err)))
        goto cleanup;
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
    for (size_t i = 0; i < n; i++, k = next_key(&d, k)) {
        SimModel *m = &cat->models[i];
        cat->n = i + 1; /* so catalog_free releases what the model holds on failure */
        m->index = i;
        if ((rc = parse_model(&d, k, k + 1, path, m, err)))
            goto cleanup;
        apply_override(m, latency_override_ms);
        int created = 0;
        uint64_t *slot = u64map_upsert(&cat->index, hash_fnv1a64(m->name, strlen(m->name)), &created);
        if (!slot) {
            rc = tq_err(err, TQ_ENOMEM, "out of memory loading models");
            goto cleanup;
        }
        if (!created) {
            char name[CATALOG_SHOWN];
            utf8_copy_cut(name, sizeof name, m->name, strlen(m->name));
            rc = tq_err(err, TQ_EINVAL, "%s: model %s is listed twice", path, name);
            goto cleanup;
        }
        *slot = i;
    }
    rc = 0;
cleanup:
    json_doc_free(&d);
    buf_free(&text);
    if (rc) {
        if (err)
            utf8_one_line(err->msg); /* it quotes names, keys and values from the file */
        catalog_free(cat);
    }
    return rc;
}

void catalog_free(Catalog *cat)
{
    if (!cat)
        return;
    for (size_t i = 0; i < cat->n; i++) {
        free(cat->models[i].name);
        free(cat->models[i].provider);
        kind_offsets_free(&cat->models[i].answer);
    }
    free(cat->models);
    u64map_free(&cat->index);
    memset(cat, 0, sizeof *cat);
}

int catalog_update(Catalog *cat, size_t i, const char *json, size_t len, TqErr *err)
{
    SimModel *cur = &cat->models[i];
    SimModel next = *cur; /* shares the name, which never changes */
    JsonDoc d = {0};
    char name[CATALOG_SHOWN], where[CATALOG_SHOWN + 16];
    utf8_copy_cut(name, sizeof name, cur->name, strlen(cur->name));
    snprintf(where, sizeof where, "model %s", name);
    next.provider = NULL; /* next's own copy, so a new provider can replace it */
    int rc = kind_offsets_copy(&next.answer, &cur->answer);
    if (!rc && cur->provider && !(next.provider = strdup(cur->provider)))
        rc = TQ_ENOMEM;
    if (rc) {
        tq_err(err, rc, "out of memory");
        goto cleanup;
    }
    if ((rc = json_parse(&d, json, len, CATALOG_MAX_UPDATE_TOKENS, err))) {
        tq_err_prefix(err, "%s: the body is not valid JSON", where);
        goto cleanup;
    }
    Parse p = {&d, where, err};
    if (json_type(&d, 0) != JSON_OBJECT) {
        rc = tq_err(err, TQ_EINVAL, "%s: the body must be a JSON object of model keys", where);
        goto cleanup;
    }
    if ((rc = parse_model_keys(&p, 0, &next)) || (rc = check_model(&p, &next)))
        goto cleanup;
    apply_override(&next, cat->latency_override_ms);
    kind_offsets_free(&cur->answer);
    free(cur->provider);
    *cur = next;
    next.answer.kind_offsets = NULL; /* now cur's */
    next.answer.nkind_offsets = 0;
    next.provider = NULL;
cleanup:
    json_doc_free(&d);
    kind_offsets_free(&next.answer);
    free(next.provider);
    if (rc && err)
        utf8_one_line(err->msg);
    return rc;
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

/* ---- writing the settings back ---- */

/* The shortest decimal that reads back as exactly v, so GET output posted back changes nothing. */
static int put_num(Buf *b, const char *key, double v)
{
    char s[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    int rc = buf_puts(b, key);
    return rc ? rc : buf_puts(b, s);
}

static int put_outcome(Buf *b, const char *key, const AnswerConfidence *c)
{
    int rc = buf_puts(b, key);
    if (!rc)
        rc = put_num(b, "{\"mean\":", c->mean);
    if (!rc)
        rc = put_num(b, ",\"spread\":", c->spread);
    if (!rc)
        rc = put_num(b, ",\"min\":", c->min);
    if (!rc)
        rc = put_num(b, ",\"max\":", c->max);
    return rc ? rc : buf_putc(b, '}');
}

static int put_answer_params(Buf *b, const AnswerParams *a)
{
    int rc = put_outcome(b, ",\"confidence\":{\"correct\":", &a->correct);
    if (!rc)
        rc = put_outcome(b, ",\"wrong\":", &a->wrong);
    if (!rc)
        rc = put_outcome(b, ",\"unkeyed\":", &a->unkeyed);
    if (!rc)
        rc = put_num(b, ",\"token_spread\":", a->token_spread);
    if (!rc)
        rc = put_num(b, "},\"difficulty\":{\"sensitivity\":", a->difficulty_sensitivity);
    if (!rc)
        rc = put_num(b, ",\"pivot\":", a->difficulty_pivot);
    if (!rc)
        rc = buf_puts(b, ",\"kind_offset\":{");
    for (size_t i = 0; rc == 0 && i < a->nkind_offsets; i++) {
        if (i)
            rc = buf_putc(b, ',');
        if (!rc)
            rc = json_put_string(b, a->kind_offsets[i].kind, a->kind_offsets[i].kind_len);
        if (!rc)
            rc = put_num(b, ":", a->kind_offsets[i].offset);
    }
    return rc ? rc : buf_puts(b, "}}");
}

static int put_judge_params(Buf *b, const JudgeParams *j)
{
    int rc = buf_puts(b, ",\"judge\":{\"skill\":");
    if (!rc)
        rc = j->skill < 0 ? buf_puts(b, "null") : put_num(b, "", j->skill);
    if (!rc)
        rc = put_num(b, ",\"skill_exponent\":", j->skill_exponent);
    if (!rc)
        rc = put_num(b, ",\"difficulty_sensitivity\":", j->difficulty_sensitivity);
    if (!rc)
        rc = put_num(b, ",\"difficulty_pivot\":", j->difficulty_pivot);
    if (!rc)
        rc = put_num(b, ",\"fooled_middling\":", j->fooled_middling);
    return rc ? rc : buf_putc(b, '}');
}

static int put_compress_params(Buf *b, const CompressParams *c)
{
    int rc = buf_puts(b, ",\"compress\":{\"mode\":\"");
    if (!rc)
        rc = buf_puts(b, compress_mode_name(c->mode));
    if (!rc)
        rc = buf_puts(b, "\",\"skill\":");
    if (!rc)
        rc = c->skill < 0 ? buf_puts(b, "null") : put_num(b, "", c->skill);
    if (!rc)
        rc = put_num(b, ",\"reference_ratio\":", c->reference_ratio);
    if (!rc)
        rc = put_num(b, ",\"shape\":", c->shape);
    if (!rc)
        rc = put_num(b, ",\"question_boost\":", c->question_boost);
    return rc ? rc : buf_putc(b, '}');
}

static int put_per_minute(Buf *b, const char *key, int64_t v)
{
    int rc = buf_puts(b, key);
    return rc ? rc : v > 0 ? buf_printf(b, "%lld", (long long)v) : buf_puts(b, "null");
}

int catalog_model_json(const SimModel *m, Buf *out)
{
    int rc = put_num(out, "{\"skill\":", m->skill);
    if (!rc)
        rc = put_num(out, ",\"latency_ms\":{\"mean\":", m->latency_mean_ms);
    if (!rc)
        rc = put_num(out, ",\"jitter\":", m->latency_jitter_ms);
    if (!rc)
        rc = put_num(out, "},\"ms_per_output_token\":", m->ms_per_output_token);
    if (!rc)
        rc = buf_puts(out, m->logprobs ? ",\"logprobs\":true" : ",\"logprobs\":false");
    if (!rc)
        rc = buf_puts(out, ",\"usage_style\":\"");
    if (!rc)
        rc = buf_puts(out, catalog_usage_name(m->usage));
    if (!rc)
        rc = buf_puts(out, m->reasoning ? "\",\"reasoning\":true" : "\",\"reasoning\":false");
    if (!rc)
        rc = put_answer_params(out, &m->answer);
    if (!rc)
        rc = put_judge_params(out, &m->judge);
    if (!rc)
        rc = put_compress_params(out, &m->compress);
    if (!rc)
        rc = buf_puts(out, ",\"provider\":");
    if (!rc)
        rc = json_put_cstr(out, m->provider);
    if (!rc)
        rc = put_per_minute(out, ",\"rpm\":", m->rpm);
    if (!rc)
        rc = put_per_minute(out, ",\"tpm\":", m->tpm);
    if (!rc)
        rc = buf_puts(out, ",\"down\":");
    if (!rc)
        rc = m->down == DOWN_NO ? buf_puts(out, "false") : json_put_cstr(out, catalog_down_name(m->down));
    return rc ? rc : buf_putc(out, '}');
}
