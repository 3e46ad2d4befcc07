#include "config.h"

#include "sha256.h"

#include "buf.h"
#include "hash.h"
#include "json.h"
#include "utf8.h"
#include "template.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_FILE_MAX (1u << 20)

/* Where we are while walking one file: the file name for messages and its parsed document. */
typedef struct Walk {
    const char *file;
    JsonDoc doc;
    TqErr *err;
} Walk;

static int read_file(const char *path, Buf *out, TqErr *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return tq_err(err, TQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    buf_init(out, CONFIG_FILE_MAX);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n)) {
            rc = tq_err(err, TQ_ELIMIT, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = tq_err(err, TQ_EIO, "%s: read error", path);
    fclose(f);
    if (!rc && out->len == 0)
        rc = tq_err(err, TQ_EINVAL, "%s: empty file", path);
    if (rc)
        buf_free(out);
    return rc;
}

static int walk_open(Walk *w, const char *file, const Buf *text, TqErr *err)
{
    w->file = file;
    w->err = err;
    TqErr perr = {0};
    if (json_parse(&w->doc, text->data, text->len, 200000, &perr))
        return tq_err(err, TQ_EINVAL, "%s: %s", file, perr.msg);
    if (json_type(&w->doc, 0) != JSON_OBJECT) {
        json_doc_free(&w->doc);
        return tq_err(err, TQ_EINVAL, "%s: the top level must be a JSON object", file);
    }
    return 0;
}

static int bad(Walk *w, const char *path, const char *what)
{
    return tq_err(w->err, TQ_EINVAL, "%s: %s %s", w->file, path, what);
}

/* Reject keys not in allowed (NULL-terminated): a typo must not silently become a default. And a
 * key given twice: which value counts would be a guess. */
static int check_keys(Walk *w, int obj, const char *path, const char *const *allowed)
{
    int n = json_size(&w->doc, obj);
    int k = obj + 1;
    for (int c = 0; c < n; c++) {
        size_t klen;
        const char *kraw = json_raw(&w->doc, k, &klen);
        for (int prev = obj + 1; prev < k; prev = json_skip(&w->doc, prev + 1)) {
            size_t plen;
            const char *praw = json_raw(&w->doc, prev, &plen);
            if (plen == klen && memcmp(praw, kraw, klen) == 0)
                return tq_err(w->err, TQ_EINVAL, "%s: %s%s\"%.*s\" is given twice", w->file, path, *path ? ": " : "",
                              (int)(klen > 60 ? 60 : klen), kraw);
        }
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (json_eq(&w->doc, k, *a))
                ok = true;
        if (!ok) {
            size_t len;
            const char *raw = json_raw(&w->doc, k, &len);
            return tq_err(w->err, TQ_EINVAL, "%s: %s%s\"%.*s\" is not a known key", w->file, path,
                          *path ? ": " : "", (int)(len > 60 ? 60 : len), raw);
        }
        k = json_skip(&w->doc, k + 1);
    }
    return 0;
}

static int get_string(Walk *w, int obj, const char *key, const char *path, bool required, char **out)
{
    int v = json_get(&w->doc, obj, key);
    if (v < 0) {
        if (required)
            return bad(w, path, "is required");
        return 0;
    }
    if (json_type(&w->doc, v) != JSON_STRING)
        return bad(w, path, "must be a string");
    char *s = json_strdup(&w->doc, v);
    if (!s)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    free(*out);
    *out = s;
    return 0;
}

static int get_int(Walk *w, int obj, const char *key, const char *path, long lo, long hi, int *out)
{
    int v = json_get(&w->doc, obj, key);
    if (v < 0)
        return 0;
    int64_t x;
    if (json_type(&w->doc, v) != JSON_PRIMITIVE || json_int64(&w->doc, v, &x) || x < lo || x > hi) {
        char what[96];
        snprintf(what, sizeof what, "must be an integer from %ld to %ld", lo, hi);
        return bad(w, path, what);
    }
    *out = (int)x;
    return 0;
}

static int get_double(Walk *w, int obj, const char *key, const char *path, double lo, double hi, double *out)
{
    int v = json_get(&w->doc, obj, key);
    if (v < 0)
        return 0;
    double x;
    if (json_double(&w->doc, v, &x) || !(x >= lo && x <= hi)) {
        char what[96];
        snprintf(what, sizeof what, "must be a number from %g to %g", lo, hi);
        return bad(w, path, what);
    }
    *out = x;
    return 0;
}

static int get_bool(Walk *w, int obj, const char *key, const char *path, bool *out)
{
    int v = json_get(&w->doc, obj, key);
    if (v < 0)
        return 0;
    if (json_bool(&w->doc, v, out))
        return bad(w, path, "must be true or false");
    return 0;
}

static int get_price(Walk *w, int obj, const char *key, const char *path, int64_t *out)
{
    int v = json_get(&w->doc, obj, key);
    if (v < 0)
        return bad(w, path, "is required");
    size_t len;
    const char *raw = json_raw(&w->doc, v, &len);
    if (json_type(&w->doc, v) != JSON_PRIMITIVE || cost_parse_price(raw, len, out))
        return bad(w, path, "must be a non-negative price in USD per million tokens with at most 6 decimals");
    return 0;
}

static int get_string_array(Walk *w, int obj, const char *key, const char *path, char ***out, int *n)
{
    int v = json_get(&w->doc, obj, key);
    if (v < 0)
        return 0;
    if (json_type(&w->doc, v) != JSON_ARRAY || json_size(&w->doc, v) == 0)
        return bad(w, path, "must be a non-empty array of strings");
    int cnt = json_size(&w->doc, v);
    char **arr = calloc((size_t)cnt, sizeof *arr);
    if (!arr)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    for (int i = 0; i < cnt; i++) {
        int e = json_at(&w->doc, v, i);
        if (json_type(&w->doc, e) != JSON_STRING || !(arr[i] = json_strdup(&w->doc, e))) {
            for (int j = 0; j < i; j++)
                free(arr[j]);
            free(arr);
            char p[160];
            snprintf(p, sizeof p, "%s[%d]", path, i);
            return bad(w, p, "must be a string");
        }
    }
    *out = arr;
    *n = cnt;
    return 0;
}


static void strip_trailing_slash(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

/* Header names are HTTP tokens; values one line. Headers tierq sets itself cannot be replaced. */
static bool header_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            return false;
    return true;
}

static int provider_headers(Walk *w, int o, const char *path, TqProvider *p)
{
    static const char *const reserved[] = {"content-type", "content-length", "host", "transfer-encoding", "expect",
                                           "connection", "user-agent", NULL};
    char sub[300];
    int h = json_get(&w->doc, o, "headers");
    if (h < 0)
        return 0;
    snprintf(sub, sizeof sub, "%s.headers", path);
    if (json_type(&w->doc, h) != JSON_OBJECT)
        return bad(w, sub, "must be an object {\"Header-Name\": \"value\" or {\"env\": \"VARIABLE\"}}");
    int n = json_size(&w->doc, h);
    p->headers = calloc((size_t)(n ? n : 1), sizeof *p->headers);
    if (!p->headers)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    int k = h + 1;
    for (int i = 0; i < n; i++, k = json_skip(&w->doc, k + 1)) {
        TqHeader *hd = &p->headers[p->nheaders++];
        hd->name = json_strdup(&w->doc, k);
        if (!hd->name)
            return tq_err(w->err, TQ_ENOMEM, "out of memory");
        snprintf(sub, sizeof sub, "%s.headers.%s", path, hd->name);
        if (!header_name_ok(hd->name))
            return bad(w, sub, "is not a valid header name (letters, digits, - and _)");
        for (const char *const *r = reserved; *r; r++)
            if (strcasecmp(hd->name, *r) == 0)
                return bad(w, sub, "is set by tierq itself and cannot be configured");
        if (strcasecmp(hd->name, "authorization") == 0 && p->api_key_env)
            return bad(w, sub, "conflicts with api_key_env, which already sends Authorization: Bearer <key>");
        int v = k + 1;
        if (json_type(&w->doc, v) == JSON_STRING) {
            hd->value = json_strdup(&w->doc, v);
            if (!hd->value)
                return tq_err(w->err, TQ_ENOMEM, "out of memory");
            if (strpbrk(hd->value, "\r\n"))
                return bad(w, sub, "must be one line");
        } else if (json_type(&w->doc, v) == JSON_OBJECT && json_size(&w->doc, v) == 1 &&
                   json_type(&w->doc, json_get(&w->doc, v, "env")) == JSON_STRING) {
            hd->value_env = json_strdup(&w->doc, json_get(&w->doc, v, "env"));
            if (!hd->value_env)
                return tq_err(w->err, TQ_ENOMEM, "out of memory");
        } else {
            return bad(w, sub, "must be a string or {\"env\": \"VARIABLE\"} (secrets come from the environment)");
        }
    }
    return 0;
}

/* Percent-encode s for a URL query component (RFC 3986 unreserved characters stay). */
static int query_escape(Buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (const unsigned char *u = (const unsigned char *)s; *u && !rc; u++) {
        if ((*u >= 'a' && *u <= 'z') || (*u >= 'A' && *u <= 'Z') || (*u >= '0' && *u <= '9') || *u == '-' ||
            *u == '_' || *u == '.' || *u == '~')
            rc = buf_putc(out, (char)*u);
        else
            rc = buf_printf(out, "%%%c%c", hex[*u >> 4], hex[*u & 15]);
    }
    return rc;
}

/* Split a query string off the base URL ("https://x.azure.com/openai/deployments/d?api-version=1":
 * the path gets /chat/completions, the query stays a query) and join it with the `query` object. */
static int provider_url(Walk *w, int o, const char *path, TqProvider *p)
{
    char sub[300];
    Buf q;
    buf_init(&q, 0);
    int rc = 0;
    char *mark = strchr(p->base_url, '?');
    if (mark) {
        *mark = '\0';
        char *frag = strchr(mark + 1, '#');
        if (frag)
            *frag = '\0';
        rc = buf_puts(&q, mark + 1);
    }
    char *frag = strchr(p->base_url, '#');
    if (frag)
        *frag = '\0';
    strip_trailing_slash(p->base_url);
    int qo = json_get(&w->doc, o, "query");
    if (!rc && qo >= 0) {
        snprintf(sub, sizeof sub, "%s.query", path);
        if (json_type(&w->doc, qo) != JSON_OBJECT) {
            buf_free(&q);
            return bad(w, sub, "must be an object {\"name\": \"value\"}");
        }
        int k = qo + 1;
        for (int i = 0; i < json_size(&w->doc, qo) && !rc; i++, k = json_skip(&w->doc, k + 1)) {
            char *name = json_strdup(&w->doc, k), *value = json_strdup(&w->doc, k + 1);
            if (!name || json_type(&w->doc, k + 1) != JSON_STRING || !value) {
                snprintf(sub, sizeof sub, "%s.query.%s", path, name ? name : "?");
                free(name);
                free(value);
                buf_free(&q);
                return bad(w, sub, "must be a string");
            }
            rc = (q.len ? buf_putc(&q, '&') : 0) || query_escape(&q, name) || buf_putc(&q, '=') ||
                 query_escape(&q, value);
            free(name);
            free(value);
        }
    }
    if (!rc && q.len)
        p->url_query = buf_take(&q);
    buf_free(&q);
    return rc ? tq_err(w->err, TQ_ENOMEM, "out of memory") : 0;
}

/* Request fields tierq writes itself: extra_body cannot set them. */
static const char *const TQ_BODY_KEYS[] = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                                           "seed", "logprobs", "top_logprobs", "response_format", "n", "stream",
                                           NULL};

static int model_extra_body(Walk *w, int o, const char *path, TqModel *m)
{
    int eb = json_get(&w->doc, o, "extra_body");
    if (eb < 0)
        return 0;
    if (json_type(&w->doc, eb) != JSON_OBJECT)
        return bad(w, path, "must be a JSON object of fields added to every request body");
    int k = eb + 1;
    for (int i = 0; i < json_size(&w->doc, eb); i++, k = json_skip(&w->doc, k + 1))
        for (const char *const *r = TQ_BODY_KEYS; *r; r++)
            if (json_eq(&w->doc, k, *r)) {
                char sub[400];
                snprintf(sub, sizeof sub, "%s.%s", path, *r);
                return bad(w, sub, "is set by tierq itself and cannot be overridden");
            }
    size_t len;
    const char *raw = json_raw(&w->doc, eb, &len);
    m->extra_body = strndup(raw, len);
    return m->extra_body ? 0 : tq_err(w->err, TQ_ENOMEM, "out of memory");
}

/* "path.key" into the caller's sub[] (which must be named sub, with the parent path in path). */
#define SUB(key) (snprintf(sub, sizeof sub, "%s.%s", path, key), sub)

/* A tokens-per-minute limit below one request's worth would let one request through and then hold
 * the next for minutes of refill (the bucket pays back the first one's debt first): refused. */
static int tpm_floor(Walk *w, const char *path, int tpm)
{
    if (tpm > 0 && tpm < 1000)
        return bad(w, path, "is below one request's worth (a request counts its input and max_tokens): at least"
                            " 1000, or 0 for none");
    return 0;
}

/* "breaker": the circuit breaker settings of the provider's models (defaults: worker/breaker.h). */
static int provider_breaker(Walk *w, int o, const char *path, TqProvider *p)
{
    static const char *const keys[] = {"failures", "failure_pct", "window_s", "cooldown_s", "cooldown_max_s", NULL};
    char sub[300], bpath[280];
    p->breaker_failures = 5;
    p->breaker_failure_pct = 50;
    p->breaker_window_s = 60;
    p->breaker_cooldown_s = 10;
    p->breaker_cooldown_max_s = 300;
    int b = json_get(&w->doc, o, "breaker");
    if (b < 0)
        return 0;
    snprintf(bpath, sizeof bpath, "%s.breaker", path);
    if (json_type(&w->doc, b) != JSON_OBJECT)
        return bad(w, bpath, "must be an object {\"failures\", \"failure_pct\", \"window_s\", \"cooldown_s\", \"cooldown_max_s\"}");
    int rc;
    path = bpath;
    if ((rc = check_keys(w, b, path, keys)) ||
        (rc = get_int(w, b, "failures", SUB("failures"), 1, 100000, &p->breaker_failures)) ||
        (rc = get_int(w, b, "failure_pct", SUB("failure_pct"), 0, 100, &p->breaker_failure_pct)) ||
        (rc = get_int(w, b, "window_s", SUB("window_s"), 1, 86400, &p->breaker_window_s)) ||
        (rc = get_int(w, b, "cooldown_s", SUB("cooldown_s"), 1, 86400, &p->breaker_cooldown_s)))
        return rc;
    if (p->breaker_cooldown_max_s < p->breaker_cooldown_s)
        p->breaker_cooldown_max_s = p->breaker_cooldown_s; /* a long first cooldown alone raises the cap */
    if ((rc = get_int(w, b, "cooldown_max_s", SUB("cooldown_max_s"), 1, 86400, &p->breaker_cooldown_max_s)))
        return rc;
    if (p->breaker_cooldown_max_s < p->breaker_cooldown_s)
        return bad(w, SUB("cooldown_max_s"), "must be at least cooldown_s");
    return 0;
}

/* One entry of "providers" at token o, named by path ("providers.NAME"). */
static int load_provider(Walk *w, int o, const char *path, TqProvider *p)
{
    static const char *const prov_keys[] = {"base_url", "api_key_env", "base_url_env", "timeout_ms",
                                            "connect_timeout_ms", "max_in_flight", "headers", "query",
                                            "description", "rpm", "tpm", "breaker", NULL};
    char sub[300];
    if (json_type(&w->doc, o) != JSON_OBJECT)
        return bad(w, path, "must be an object");
    p->timeout_ms = 120000;
    p->connect_timeout_ms = 10000;
    p->max_in_flight = 1024;
    int rc;
    if ((rc = check_keys(w, o, path, prov_keys)) ||
        (rc = get_string(w, o, "base_url", SUB("base_url"), true, &p->base_url)) ||
        (rc = get_string(w, o, "api_key_env", SUB("api_key_env"), false, &p->api_key_env)) ||
        (rc = get_string(w, o, "base_url_env", SUB("base_url_env"), false, &p->base_url_env)) ||
        (rc = get_int(w, o, "timeout_ms", SUB("timeout_ms"), 100, 3600000, &p->timeout_ms)) ||
        (rc = get_int(w, o, "connect_timeout_ms", SUB("connect_timeout_ms"), 10, 600000, &p->connect_timeout_ms)) ||
        (rc = get_int(w, o, "max_in_flight", SUB("max_in_flight"), 1, 100000, &p->max_in_flight)) ||
        (rc = get_int(w, o, "rpm", SUB("rpm"), 0, 100000000, &p->rpm)) ||
        (rc = get_int(w, o, "tpm", SUB("tpm"), 0, 2000000000, &p->tpm)) || (rc = tpm_floor(w, SUB("tpm"), p->tpm)) ||
        (rc = provider_breaker(w, o, path, p)))
        return rc;
    if (strncmp(p->base_url, "http://", 7) != 0 && strncmp(p->base_url, "https://", 8) != 0)
        return bad(w, SUB("base_url"), "must start with http:// or https://");
    /* the provider's own override variable, else TIERQ_BASE_URL for every provider */
    const char *over = p->base_url_env ? getenv(p->base_url_env) : NULL;
    if (!over || !*over)
        over = getenv("TIERQ_BASE_URL");
    if (over && *over) {
        if (strncmp(over, "http://", 7) != 0 && strncmp(over, "https://", 8) != 0)
            return tq_err(w->err, TQ_EINVAL, "%s: %s: the override %s=\"%.100s\" must start with http:// or https://",
                          w->file, path, over == getenv("TIERQ_BASE_URL") ? "TIERQ_BASE_URL" : p->base_url_env, over);
        free(p->base_url);
        if (!(p->base_url = strdup(over)))
            return tq_err(w->err, TQ_ENOMEM, "out of memory");
    }
    if ((rc = provider_headers(w, o, path, p)))
        return rc;
    return provider_url(w, o, path, p);
}

/* A string setting with a fixed set of values: *out = the index of the value in names (NULL-
 * terminated), left alone when the key is absent. */
static int get_choice(Walk *w, int o, const char *key, const char *path, const char *const *names, const char *what,
                      int *out)
{
    char *v = NULL;
    int rc = get_string(w, o, key, path, false, &v);
    if (rc || !v)
        return rc;
    int found = -1;
    for (int i = 0; names[i] && found < 0; i++)
        if (strcmp(v, names[i]) == 0)
            found = i;
    free(v);
    if (found < 0)
        return bad(w, path, what);
    *out = found;
    return 0;
}

/* One entry of "models" at token o, named by path ("models.NAME"). */
static int load_model(Walk *w, const TqConfig *cfg, int o, const char *path, TqModel *m)
{
    static const char *const model_keys[] = {"provider", "api_model", "input_usd_per_mtok",
                                             "cached_input_usd_per_mtok", "output_usd_per_mtok", "rpm", "tpm",
                                             "logprobs", "json_output", "max_tokens_field", "context_tokens",
                                             "max_output_tokens", "system_prompt_as", "extra_body",
                                             "description", NULL};
    static const char *const fields[] = {"max_tokens", "max_completion_tokens", NULL};
    static const char *const layouts[] = {"system", "user", "omit", NULL};
    char sub[300];
    if (json_type(&w->doc, o) != JSON_OBJECT)
        return bad(w, path, "must be an object");
    m->logprobs = false;
    m->json_output = true;
    char *prov = NULL;
    int rc, field = 0, layout = 0;
    if ((rc = check_keys(w, o, path, model_keys)) || (rc = get_string(w, o, "provider", SUB("provider"), true, &prov)))
        return rc;
    m->provider = -1;
    for (int j = 0; j < cfg->nproviders; j++)
        if (strcmp(cfg->providers[j].name, prov) == 0)
            m->provider = j;
    if (m->provider < 0)
        rc = tq_err(w->err, TQ_EINVAL, "%s: %s.provider \"%s\" is not defined under providers", w->file, path, prov);
    free(prov);
    if (rc ||
        (rc = get_string(w, o, "api_model", SUB("api_model"), false, &m->api_model)) ||
        (rc = get_price(w, o, "input_usd_per_mtok", SUB("input_usd_per_mtok"), &m->prices.input)) ||
        (rc = get_price(w, o, "cached_input_usd_per_mtok", SUB("cached_input_usd_per_mtok"), &m->prices.cached_input)) ||
        (rc = get_price(w, o, "output_usd_per_mtok", SUB("output_usd_per_mtok"), &m->prices.output)) ||
        (rc = get_int(w, o, "rpm", SUB("rpm"), 0, 100000000, &m->rpm)) ||
        (rc = get_int(w, o, "tpm", SUB("tpm"), 0, 2000000000, &m->tpm)) || (rc = tpm_floor(w, SUB("tpm"), m->tpm)) ||
        (rc = get_int(w, o, "context_tokens", SUB("context_tokens"), 0, 100000000, &m->context_tokens)) ||
        (rc = get_int(w, o, "max_output_tokens", SUB("max_output_tokens"), 0, 100000000, &m->max_output_tokens)) ||
        (rc = get_bool(w, o, "logprobs", SUB("logprobs"), &m->logprobs)) ||
        (rc = get_bool(w, o, "json_output", SUB("json_output"), &m->json_output)) ||
        (rc = get_choice(w, o, "max_tokens_field", SUB("max_tokens_field"), fields,
                         "must be \"max_tokens\" or \"max_completion_tokens\"", &field)) ||
        (rc = get_choice(w, o, "system_prompt_as", SUB("system_prompt_as"), layouts,
                         "must be \"system\", \"user\" or \"omit\"", &layout)) ||
        (rc = model_extra_body(w, o, SUB("extra_body"), m)))
        return rc;
    m->max_tokens_field = field == 1 ? TQ_MAXTOK_MAX_COMPLETION_TOKENS : TQ_MAXTOK_MAX_TOKENS;
    m->system_as = layout == 1 ? TQ_SYSTEM_AS_USER : layout == 2 ? TQ_SYSTEM_OMIT : TQ_SYSTEM_AS_SYSTEM;
    if (!m->api_model && !(m->api_model = strdup(m->name)))
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    return 0;
}

static int load_models(TqConfig *cfg, const char *file, TqErr *err)
{
    Buf text;
    int rc = read_file(file, &text, err);
    if (rc)
        return rc;
    Walk w;
    rc = walk_open(&w, file, &text, err);
    if (rc) {
        buf_free(&text);
        return rc;
    }
    static const char *const top_keys[] = {"providers", "models", "cache", "description", NULL};
    static const char *const store_keys[] = {"max_mb", "zstd_level", NULL};
    char path[256];
    int provs = json_get(&w.doc, 0, "providers");
    int models = json_get(&w.doc, 0, "models");
    int store = json_get(&w.doc, 0, "cache");
    int max_mb = 1024;
    cfg->cache_store.zstd_level = 3;
    if ((rc = check_keys(&w, 0, "", top_keys)))
        goto cleanup;
    if (store >= 0 && json_type(&w.doc, store) != JSON_OBJECT) {
        rc = bad(&w, "cache", "must be an object {\"max_mb\": N, \"zstd_level\": N}");
        goto cleanup;
    }
    if (store >= 0 && ((rc = check_keys(&w, store, "cache", store_keys)) ||
                       (rc = get_int(&w, store, "max_mb", "cache.max_mb", 1, 16 * 1024 * 1024, &max_mb)) ||
                       (rc = get_int(&w, store, "zstd_level", "cache.zstd_level", 1, 19, &cfg->cache_store.zstd_level))))
        goto cleanup;
    cfg->cache_store.max_bytes = (int64_t)max_mb << 20;
    if (json_type(&w.doc, provs) != JSON_OBJECT || json_size(&w.doc, provs) == 0) {
        rc = bad(&w, "providers", "must be a non-empty object");
        goto cleanup;
    }
    if (json_type(&w.doc, models) != JSON_OBJECT || json_size(&w.doc, models) == 0) {
        rc = bad(&w, "models", "must be a non-empty object");
        goto cleanup;
    }
    cfg->nproviders = json_size(&w.doc, provs);
    cfg->providers = calloc((size_t)cfg->nproviders, sizeof *cfg->providers);
    cfg->nmodels = json_size(&w.doc, models);
    cfg->models = calloc((size_t)cfg->nmodels, sizeof *cfg->models);
    if (!cfg->providers || !cfg->models) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
        goto cleanup;
    }
    int k = provs + 1;
    for (int i = 0; i < cfg->nproviders && !rc; i++, k = json_skip(&w.doc, k + 1)) {
        TqProvider *p = &cfg->providers[i];
        p->name = json_strdup(&w.doc, k);
        snprintf(path, sizeof path, "providers.%s", p->name ? p->name : "?");
        rc = p->name ? load_provider(&w, k + 1, path, p) : tq_err(err, TQ_ENOMEM, "out of memory");
    }
    k = models + 1;
    for (int i = 0; i < cfg->nmodels && !rc; i++, k = json_skip(&w.doc, k + 1)) {
        TqModel *m = &cfg->models[i];
        m->name = json_strdup(&w.doc, k);
        snprintf(path, sizeof path, "models.%s", m->name ? m->name : "?");
        rc = m->name ? load_model(&w, cfg, k + 1, path, m) : tq_err(err, TQ_ENOMEM, "out of memory");
        for (int j = 0; j < i && !rc; j++)
            if (strcmp(cfg->models[j].name, m->name) == 0)
                rc = bad(&w, path, "is defined twice");
    }
cleanup:
    json_doc_free(&w.doc);
    buf_free(&text);
    return rc;
}

static int model_ref(Walk *w, const TqConfig *cfg, int obj, const char *key, const char *path, bool required, int *out)
{
    char *name = NULL;
    int rc = get_string(w, obj, key, path, required, &name);
    if (rc)
        return rc;
    if (!name)
        return 0;
    int idx = config_model_index(cfg, name);
    if (idx < 0)
        rc = tq_err(w->err, TQ_EINVAL, "%s: %s \"%s\" is not defined in %s/models.json", w->file, path, name, cfg->dir);
    else
        *out = idx;
    free(name);
    return rc;
}

bool config_kind_name_ok(const char *s)
{
    if (!s || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return false;
    return n <= 63;
}

/* Parameters every kind reads, and the one that comes with a label gate. */
static const char *const BUILTIN_PARAMS[] = {"max_tokens", "temperature", "labels", "cache", NULL};

/* "params": {"NAME": {"default": "...", "description": "..."}}: the kind's template parameters. */
static int kind_params(Walk *w, TqKind *kd)
{
    int ps = json_get(&w->doc, 0, "params");
    if (ps < 0)
        return 0;
    if (json_type(&w->doc, ps) != JSON_OBJECT)
        return bad(w, "params", "must be an object {\"name\": {\"default\": \"...\", \"description\": \"...\"}}");
    static const char *const param_keys[] = {"default", "description", NULL};
    int n = json_size(&w->doc, ps);
    kd->params = calloc((size_t)(n ? n : 1), sizeof *kd->params);
    if (!kd->params)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    int k = ps + 1;
    for (int i = 0; i < n; i++, k = json_skip(&w->doc, k + 1)) {
        TqParam *pm = &kd->params[kd->nparams++];
        pm->name = json_strdup(&w->doc, k);
        if (!pm->name)
            return tq_err(w->err, TQ_ENOMEM, "out of memory");
        char path[160], sub[200];
        snprintf(path, sizeof path, "params.%s", pm->name);
        char probe[80];
        snprintf(probe, sizeof probe, "{%s}", pm->name);
        if (strlen(pm->name) > TEMPLATE_NAME_MAX || !template_has(probe, strlen(probe)))
            return bad(w, path, "is not a valid parameter name (lowercase letters, digits and _, starting with a letter)");
        for (const char *const *b = BUILTIN_PARAMS; *b; b++)
            if (strcmp(pm->name, *b) == 0)
                return bad(w, path, strcmp(*b, "labels") == 0
                                        ? "is built in: a kind with checks.labels reads params.labels and shows them as {labels}"
                                        : "is built in: every kind reads it");
        int o = k + 1;
        if (json_type(&w->doc, o) != JSON_OBJECT)
            return bad(w, path, "must be an object {\"default\": \"...\", \"description\": \"...\"}");
        int rc = check_keys(w, o, path, param_keys);
        if (!rc) {
            snprintf(sub, sizeof sub, "%s.default", path);
            rc = get_string(w, o, "default", sub, true, &pm->fallback);
        }
        if (!rc) {
            snprintf(sub, sizeof sub, "%s.description", path);
            rc = get_string(w, o, "description", sub, false, &pm->description);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* What a template may name: the kind's declared parameters, and {labels} with a label gate. */
typedef struct PlaceholderCheck {
    const TqKind *kind;
    bool used_labels;
    char *used;          /* one flag per declared parameter */
    char bad[80];
} PlaceholderCheck;

static int placeholder_known(const char *name, size_t len, void *ud)
{
    PlaceholderCheck *pc = ud;
    if (len == 6 && memcmp(name, "labels", 6) == 0 && pc->kind->reads_labels) {
        pc->used_labels = true;
        return 0;
    }
    const TqParam *pm = config_kind_param(pc->kind, name, len);
    if (pm) {
        pc->used[pm - pc->kind->params] = 1;
        return 0;
    }
    snprintf(pc->bad, sizeof pc->bad, "{%.*s}", (int)len, name);
    return 1;
}

/* Check every placeholder in the JSON strings of an extra_body object. */
static int extra_body_placeholders(const char *js, PlaceholderCheck *pc)
{
    JsonDoc d;
    if (json_parse(&d, js, strlen(js), 0, NULL))
        return 0; /* validated when models.json was read */
    int rc = 0;
    Buf tmp;
    buf_init(&tmp, 0);
    for (int i = 0; i < d.ntok && !rc; i++) {
        if (json_type(&d, i) != JSON_STRING)
            continue;
        buf_reset(&tmp);
        if (json_string(&d, i, &tmp, NULL) == 0 && tmp.data)
            rc = template_each(tmp.data, tmp.len, placeholder_known, pc);
    }
    buf_free(&tmp);
    json_doc_free(&d);
    return rc;
}

/* A declared parameter written "{name" without its closing brace: surely a typo, since the text
 * would reach the model as it stands. Returns the name's length (0: none) and where it starts. */
static size_t unclosed_param(const TqKind *kd, const char *s, const char **at)
{
    for (const char *p = strchr(s, '{'); p; p = strchr(p + 1, '{')) {
        const char *q = p + 1;
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_')
            q++;
        size_t len = (size_t)(q - p - 1);
        if (!len || *q == '}')
            continue;
        if (config_kind_param(kd, p + 1, len) || (kd->reads_labels && len == 6 && memcmp(p + 1, "labels", 6) == 0)) {
            *at = p + 1;
            return len;
        }
    }
    return 0;
}

/* Templates of a kind: every {name} in its system prompt and in its models' extra_body is declared;
 * every declared parameter is used somewhere; a label gate shows its labels to the model; a model
 * that takes no system prompt is not asked to batch or judge (both need instructions). */
static int kind_templates(Walk *w, const TqConfig *cfg, TqKind *kd)
{
    PlaceholderCheck pc = {.kind = kd};
    pc.used = calloc((size_t)(kd->nparams ? kd->nparams : 1), 1);
    if (!pc.used)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    int rc = 0;
    const char *sys = kd->system_prompt ? kd->system_prompt : "";
    if (template_each(sys, strlen(sys), placeholder_known, &pc))
        rc = tq_err(w->err, TQ_EINVAL, "%s: system_prompt names %s, which is not a parameter of this kind (declare it under params, or write {%s} to keep the braces)",
                    w->file, pc.bad, pc.bad);
    const char *open_at = NULL;
    size_t open_len = rc ? 0 : unclosed_param(kd, sys, &open_at);
    if (open_len)
        rc = tq_err(w->err, TQ_EINVAL, "%s: system_prompt has {%.*s without its closing brace", w->file, (int)open_len, open_at);
    int models[8 * (1 + TQ_MAX_FALLBACKS) + 2], nm = 0;
    for (int t = 0; t < kd->ntiers && t < 8; t++) {
        models[nm++] = kd->tiers[t].model;
        for (int f = 0; f < kd->tiers[t].nfallback; f++)
            models[nm++] = kd->tiers[t].fallback[f];
    }
    models[nm++] = kd->baseline_model;
    if (kd->checks.judge_model >= 0)
        models[nm++] = kd->checks.judge_model;
    for (int i = 0; i < nm && !rc; i++) {
        const TqModel *m = &cfg->models[models[i]];
        if (m->extra_body && extra_body_placeholders(m->extra_body, &pc))
            rc = tq_err(w->err, TQ_EINVAL, "%s: model %s (used by this kind) has %s in its extra_body, which is not a parameter of this kind: declare it under params",
                        w->file, m->name, pc.bad);
    }
    for (int i = 0; i < kd->nparams && !rc; i++)
        if (!pc.used[i])
            rc = tq_err(w->err, TQ_EINVAL, "%s: params.%s is declared but used nowhere: put {%s} in system_prompt (or in a model's extra_body)",
                        w->file, kd->params[i].name, kd->params[i].name);
    if (!rc && kd->reads_labels && !pc.used_labels)
        rc = tq_err(w->err, TQ_EINVAL, "%s: checks.labels is set but system_prompt does not show the labels to the model: put {labels} where the list belongs (a job's params.labels replaces it)",
                    w->file);
    for (int t = 0; t < kd->ntiers && !rc; t++) {
        const TqModel *m = &cfg->models[kd->tiers[t].model];
        if (m->system_as == TQ_SYSTEM_OMIT && kd->batch.enabled)
            rc = tq_err(w->err, TQ_EINVAL, "%s: batch is enabled but tiers[%d].model %s takes no system prompt (system_prompt_as omit), which batching needs",
                        w->file, t, m->name);
        for (int f = 0; f < kd->tiers[t].nfallback && !rc; f++)
            if (cfg->models[kd->tiers[t].fallback[f]].system_as == TQ_SYSTEM_OMIT && kd->batch.enabled)
                rc = tq_err(w->err, TQ_EINVAL, "%s: batch is enabled but tiers[%d].fallback[%d] %s takes no system prompt (system_prompt_as omit), which batching needs",
                            w->file, t, f, cfg->models[kd->tiers[t].fallback[f]].name);
    }
    if (!rc && kd->checks.judge_model >= 0 && cfg->models[kd->checks.judge_model].system_as == TQ_SYSTEM_OMIT)
        rc = tq_err(w->err, TQ_EINVAL, "%s: checks.judge_model %s takes no system prompt (system_prompt_as omit), which the judge's instructions need",
                    w->file, cfg->models[kd->checks.judge_model].name);
    free(pc.used);
    return rc;
}

/* tiers[i].fallback: ["model", ...], each defined, none the tier's own model, none twice. */
static int tier_fallbacks(Walk *w, const TqConfig *cfg, int t, const char *path, TqTier *tier)
{
    char sub[200];
    int fb = json_get(&w->doc, t, "fallback");
    if (fb < 0)
        return 0;
    snprintf(sub, sizeof sub, "%s.fallback", path);
    int n = json_type(&w->doc, fb) == JSON_ARRAY ? json_size(&w->doc, fb) : -1;
    if (n < 1 || n > TQ_MAX_FALLBACKS) {
        char what[120];
        snprintf(what, sizeof what, "must be an array of 1 to %d model names", TQ_MAX_FALLBACKS);
        return bad(w, sub, what);
    }
    for (int k = 0; k < n; k++) {
        int e = json_at(&w->doc, fb, k);
        char *name = json_type(&w->doc, e) == JSON_STRING ? json_strdup(&w->doc, e) : NULL;
        if (!name)
            return bad(w, sub, "must hold model names (strings)");
        int m = config_model_index(cfg, name);
        int rc = 0;
        if (m < 0)
            rc = tq_err(w->err, TQ_EINVAL, "%s: %s[%d] \"%.100s\" is not defined in %s/models.json", w->file, sub, k,
                        name, cfg->dir);
        else if (m == tier->model)
            rc = tq_err(w->err, TQ_EINVAL, "%s: %s[%d] \"%s\" is the tier's own model: a fallback answers when that"
                        " model cannot", w->file, sub, k, name);
        for (int j = 0; !rc && j < tier->nfallback; j++)
            if (tier->fallback[j] == m)
                rc = tq_err(w->err, TQ_EINVAL, "%s: %s names \"%s\" twice", w->file, sub, name);
        free(name);
        if (rc)
            return rc;
        tier->fallback[tier->nfallback++] = m;
    }
    return 0;
}

/* "tiers": [{"model", "accept"}, ...] and baseline_model. */
static int kind_tiers(Walk *w, const TqConfig *cfg, TqKind *kd)
{
    static const char *const tier_keys[] = {"model", "accept", "accept_if_agrees", "fallback", NULL};
    char path[128], sub[160];
    int tiers = json_get(&w->doc, 0, "tiers");
    if (tiers < 0)
        return bad(w, "tiers", "is required (a list of {\"model\", \"accept\"})");
    if (json_type(&w->doc, tiers) != JSON_ARRAY || json_size(&w->doc, tiers) == 0 || json_size(&w->doc, tiers) > 8)
        return bad(w, "tiers", "must be an array of 1 to 8 {\"model\", \"accept\"} objects");
    kd->ntiers = json_size(&w->doc, tiers);
    kd->tiers = calloc((size_t)kd->ntiers, sizeof *kd->tiers);
    if (!kd->tiers)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; i < kd->ntiers && !rc; i++) {
        int t = json_at(&w->doc, tiers, i);
        snprintf(path, sizeof path, "tiers[%d]", i);
        if (json_type(&w->doc, t) != JSON_OBJECT)
            return bad(w, path, "must be an object {\"model\", \"accept\"}");
        kd->tiers[i].accept = i + 1 < kd->ntiers ? 0.8 : 0;
        kd->tiers[i].accept_if_agrees = NAN;
        if (!(rc = check_keys(w, t, path, tier_keys)) &&
            !(rc = model_ref(w, cfg, t, "model", SUB("model"), true, &kd->tiers[i].model)))
            rc = get_double(w, t, "accept", SUB("accept"), 0, 1, &kd->tiers[i].accept);
        if (!rc && json_get(&w->doc, t, "accept_if_agrees") >= 0) {
            /* parsed only where it can act: a setting that changes nothing is refused, not ignored */
            if (i == 0)
                return bad(w, SUB("accept_if_agrees"), "is not possible on the first tier: no earlier answer to agree with");
            if (i + 1 == kd->ntiers)
                return bad(w, SUB("accept_if_agrees"), "is not possible on the last tier: its answer is final");
            if (!(rc = get_double(w, t, "accept_if_agrees", SUB("accept_if_agrees"), 0, 1, &kd->tiers[i].accept_if_agrees)) &&
                !(kd->tiers[i].accept_if_agrees < kd->tiers[i].accept))
                return bad(w, SUB("accept_if_agrees"), "must be below the tier's accept, or it changes nothing");
        }
        if (!rc)
            rc = tier_fallbacks(w, cfg, t, path, &kd->tiers[i]);
    }
    if (rc)
        return rc;
    kd->baseline_model = kd->tiers[kd->ntiers - 1].model;
    return model_ref(w, cfg, 0, "baseline_model", "baseline_model", false, &kd->baseline_model);
}

/* checks.regex, compiled once here and used by every check of every answer. */
static int compile_regex(Walk *w, TqChecks *c)
{
    c->regex_re = calloc(1, sizeof *c->regex_re);
    if (!c->regex_re)
        return tq_err(w->err, TQ_ENOMEM, "out of memory");
    int rr = regcomp(c->regex_re, c->regex, REG_EXTENDED | REG_NOSUB);
    if (rr) {
        char msg[128];
        regerror(rr, c->regex_re, msg, sizeof msg);
        free(c->regex_re);
        c->regex_re = NULL;
        return tq_err(w->err, TQ_EINVAL, "%s: checks.regex does not compile: %s", w->file, msg);
    }
    return 0;
}

/* "checks": the gates and soft signals (worker/check.h). */
static int kind_checks(Walk *w, const TqConfig *cfg, TqKind *kd)
{
    static const char *const check_keys_[] = {"labels", "min_chars", "max_chars", "regex", "json", "json_keys",
                                              "logprobs", "judge_model", "agreement", "missing_signal", NULL};
    int checks = json_get(&w->doc, 0, "checks");
    if (checks < 0)
        return 0;
    const char *path = "checks";
    char sub[160];
    if (json_type(&w->doc, checks) != JSON_OBJECT)
        return bad(w, path, "must be an object");
    TqChecks *c = &kd->checks;
    char *missing = NULL;
    int rc;
    if ((rc = check_keys(w, checks, path, check_keys_)) ||
        (rc = get_string_array(w, checks, "labels", SUB("labels"), &c->labels, &c->nlabels)) ||
        (rc = get_int(w, checks, "min_chars", SUB("min_chars"), 0, 10000000, &c->min_chars)) ||
        (rc = get_int(w, checks, "max_chars", SUB("max_chars"), 0, 10000000, &c->max_chars)) ||
        (rc = get_string(w, checks, "regex", SUB("regex"), false, &c->regex)) ||
        (rc = get_bool(w, checks, "json", SUB("json"), &c->json)) ||
        (rc = get_string_array(w, checks, "json_keys", SUB("json_keys"), &c->json_keys, &c->njson_keys)) ||
        (rc = get_bool(w, checks, "logprobs", SUB("logprobs"), &c->logprobs)) ||
        (rc = model_ref(w, cfg, checks, "judge_model", SUB("judge_model"), false, &c->judge_model)) ||
        (rc = get_bool(w, checks, "agreement", SUB("agreement"), &c->agreement)) ||
        (rc = get_string(w, checks, "missing_signal", SUB("missing_signal"), false, &missing)))
        return rc;
    if (missing) {
        if (strcmp(missing, "other_checks") == 0)
            c->missing_signal = CHECK_MISSING_OTHER_CHECKS;
        else if (strcmp(missing, "escalate") != 0)
            rc = bad(w, SUB("missing_signal"), "must be \"escalate\" or \"other_checks\"");
        free(missing);
        if (rc)
            return rc;
    }
    if (c->json_keys)
        c->json = true;
    if (c->max_chars && c->min_chars > c->max_chars)
        return bad(w, SUB("min_chars"), "is larger than checks.max_chars");
    return c->regex ? compile_regex(w, c) : 0;
}

/* "batch", "compress", "cache": a present object turns its feature on unless it says enabled false. */
static int kind_features(Walk *w, const TqConfig *cfg, TqKind *kd)
{
    static const char *const batch_keys[] = {"enabled", "max_items", "max_input_tokens", "fill_ms", "across_runs", NULL};
    static const char *const compress_keys[] = {"enabled", "threshold_tokens", "target_tokens", "model",
                                                 "question_aware", "escalate_with_original", "prompt", NULL};
    static const char *const cache_keys[] = {"enabled", "ttl_s", "max_entries", "nondeterministic", NULL};
    static const char *const shadow_keys[] = {"rate", "min_agreement", "window", "boost", NULL};
    char sub[160];
    const char *path;
    int rc = 0;
    int batch = json_get(&w->doc, 0, "batch"), compress = json_get(&w->doc, 0, "compress"),
        cache = json_get(&w->doc, 0, "cache"), shadow = json_get(&w->doc, 0, "shadow");
    kd->shadow.min_agreement = 0.85;
    kd->shadow.window = 50;
    kd->shadow.boost = 10;
    if (shadow >= 0) {
        path = "shadow";
        if (json_type(&w->doc, shadow) != JSON_OBJECT)
            return bad(w, path, "must be an object");
        if ((rc = check_keys(w, shadow, path, shadow_keys)) ||
            (rc = get_double(w, shadow, "rate", SUB("rate"), 0, 1, &kd->shadow.rate)) ||
            (rc = get_double(w, shadow, "min_agreement", SUB("min_agreement"), 0, 1, &kd->shadow.min_agreement)) ||
            (rc = get_int(w, shadow, "window", SUB("window"), 10, 100000, &kd->shadow.window)) ||
            (rc = get_double(w, shadow, "boost", SUB("boost"), 1, 100, &kd->shadow.boost)))
            return rc;
        /* without a rate no shadow call is made: the other settings would be read and do nothing
         * ("rate": 0 says so on purpose, and keeps them for later) */
        if (json_get(&w->doc, shadow, "rate") < 0 && json_size(&w->doc, shadow) > 0)
            return bad(w, path,
                       "has no \"rate\": no shadow call is made without one, so its other settings would do"
                       " nothing; add \"rate\" (e.g. 0.02), or \"rate\": 0 to keep them switched off");
    }
    if (batch >= 0) {
        path = "batch";
        if (json_type(&w->doc, batch) != JSON_OBJECT)
            return bad(w, path, "must be an object");
        kd->batch.enabled = true;
        if ((rc = check_keys(w, batch, path, batch_keys)) ||
            (rc = get_bool(w, batch, "enabled", SUB("enabled"), &kd->batch.enabled)) ||
            (rc = get_bool(w, batch, "across_runs", SUB("across_runs"), &kd->batch.across_runs)) ||
            (rc = get_int(w, batch, "max_items", SUB("max_items"), 1, 100, &kd->batch.max_items)) ||
            (rc = get_int(w, batch, "max_input_tokens", SUB("max_input_tokens"), 100, 1000000, &kd->batch.max_input_tokens)) ||
            (rc = get_int(w, batch, "fill_ms", SUB("fill_ms"), 0, 60000, &kd->batch.fill_ms)))
            return rc;
    }
    if (compress >= 0) {
        path = "compress";
        if (json_type(&w->doc, compress) != JSON_OBJECT)
            return bad(w, path, "must be an object");
        kd->compress.enabled = true;
        if ((rc = check_keys(w, compress, path, compress_keys)) ||
            (rc = get_bool(w, compress, "enabled", SUB("enabled"), &kd->compress.enabled)) ||
            (rc = get_int(w, compress, "threshold_tokens", SUB("threshold_tokens"), 1, 10000000, &kd->compress.threshold_tokens)) ||
            (rc = get_int(w, compress, "target_tokens", SUB("target_tokens"), 1, 10000000, &kd->compress.target_tokens)) ||
            (rc = model_ref(w, cfg, compress, "model", SUB("model"), false, &kd->compress.model)) ||
            (rc = get_bool(w, compress, "question_aware", SUB("question_aware"), &kd->compress.question_aware)) ||
            (rc = get_bool(w, compress, "escalate_with_original", SUB("escalate_with_original"),
                           &kd->compress.escalate_with_original)) ||
            (rc = get_bool(w, compress, "prompt", SUB("prompt"), &kd->compress.prompt)))
            return rc;
        if (kd->compress.target_tokens >= kd->compress.threshold_tokens)
            return bad(w, SUB("target_tokens"), "must be smaller than compress.threshold_tokens");
    }
    /* the compressor by default: the kind's cheapest tier model (by input price, which a long
     * document's cost is made of) */
    if (kd->compress.model < 0 && kd->ntiers > 0) {
        int best = kd->tiers[0].model;
        for (int t = 1; t < kd->ntiers; t++)
            if (cfg->models[kd->tiers[t].model].prices.input < cfg->models[best].prices.input)
                best = kd->tiers[t].model;
        kd->compress.model = best;
    }
    if (cache >= 0) {
        path = "cache";
        if (json_type(&w->doc, cache) != JSON_OBJECT)
            return bad(w, path, "must be an object");
        if ((rc = check_keys(w, cache, path, cache_keys)) ||
            (rc = get_bool(w, cache, "enabled", SUB("enabled"), &kd->cache.enabled)) ||
            (rc = get_int(w, cache, "ttl_s", SUB("ttl_s"), 1, 366 * 24 * 3600, &kd->cache.ttl_s)) ||
            (rc = get_int(w, cache, "max_entries", SUB("max_entries"), 1, 1000000000, &kd->cache.max_entries)) ||
            (rc = get_bool(w, cache, "nondeterministic", SUB("nondeterministic"), &kd->cache.nondeterministic)))
            return rc;
    }
    return 0;
}

/* The scalar settings at the top of a kind file, after the defaults. */
static int kind_settings(Walk *w, TqKind *kd)
{
    static const char *const kind_keys[] = {"description", "system_prompt", "tiers", "baseline_model", "max_tokens",
                                            "temperature", "max_attempts", "max_budget_usd", "checks", "batch",
                                            "compress", "cache", "params", "shadow", "on_outage", NULL};
    static const char *const outages[] = {"wait", "degrade", "fail", NULL};
    kd->baseline_model = -1;
    kd->max_tokens = 512;
    kd->temperature = 0;
    kd->max_attempts = 5;
    kd->checks.judge_model = -1;
    kd->batch = (TqBatch){.enabled = false, .max_items = 8, .max_input_tokens = 8000, .fill_ms = 200};
    kd->compress = (TqCompress){.enabled = false, .threshold_tokens = 2000, .target_tokens = 400, .model = -1,
                                .question_aware = true, .escalate_with_original = true};
    kd->cache = (TqCache){.enabled = true, .ttl_s = 7 * 24 * 3600, .max_entries = 1000000};
    double budget = 0;
    int rc;
    if ((rc = check_keys(w, 0, "", kind_keys)) ||
        (rc = get_string(w, 0, "description", "description", false, &kd->description)) ||
        (rc = get_string(w, 0, "system_prompt", "system_prompt", false, &kd->system_prompt)) ||
        (rc = get_int(w, 0, "max_tokens", "max_tokens", 1, 1000000, &kd->max_tokens)) ||
        (rc = get_double(w, 0, "temperature", "temperature", 0, 2, &kd->temperature)) ||
        (rc = get_int(w, 0, "max_attempts", "max_attempts", 1, 100, &kd->max_attempts)) ||
        (rc = get_choice(w, 0, "on_outage", "on_outage", outages, "must be \"wait\", \"degrade\" or \"fail\"",
                         &kd->on_outage)) ||
        (rc = get_double(w, 0, "max_budget_usd", "max_budget_usd", 0.000001, 1000, &budget)))
        return rc;
    kd->max_budget_micro = (int64_t)llround(budget * 1e6);
    return 0;
}

static int load_kind(TqConfig *cfg, TqKind *kd, const char *file, const char *name, TqErr *err)
{
    Buf text;
    int rc = read_file(file, &text, err);
    if (rc)
        return rc;
    Walk w;
    rc = walk_open(&w, file, &text, err);
    if (rc) {
        buf_free(&text);
        return rc;
    }
    kd->name = strdup(name);
    kd->file = strdup(file);
    char hex[17];
    hash_hex64(hash_fnv1a64(text.data, text.len), hex);
    kd->hash = strdup(hex);
    uint8_t sha[SHA256_BYTES];
    char sha_hex[2 * SHA256_BYTES + 1];
    sha256(text.data, text.len, sha);
    sha256_hex(sha, sha_hex);
    kd->digest = strdup(sha_hex);
    if (!config_kind_name_ok(name))
        rc = tq_err(err, TQ_EINVAL, "%s: the kind name \"%s\" (the file name) must be lowercase letters, digits and _ and start with a letter", file, name);
    if (!rc && !(rc = kind_settings(&w, kd)) && !(rc = kind_tiers(&w, cfg, kd)) && !(rc = kind_checks(&w, cfg, kd))) {
        kd->reads_labels = kd->checks.nlabels > 0;
        if (!(rc = kind_params(&w, kd)) && !(rc = kind_features(&w, cfg, kd)))
            rc = kind_templates(&w, cfg, kd);
    }
    json_doc_free(&w.doc);
    buf_free(&text);
    return rc;
}

/* cfg->warnings: settings that parse but that nothing acts on yet would be listed here (config
 * check prints them, tierq run counts them). None is left since rpm and tpm took effect; the list
 * stays for the next such setting. */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every kind's pinned variants (TqKind.pinned): shallow copies with one tier of their own. */
static int make_pinned(TqConfig *cfg, TqErr *err)
{
    for (int i = 0; i < cfg->nkinds; i++) {
        TqKind *k = &cfg->kinds[i];
        k->base = k;
        k->pinned_model = -1;
    }
    for (int i = 0; i < cfg->nkinds; i++) {
        TqKind *k = &cfg->kinds[i];
        if (!(k->pinned = calloc((size_t)cfg->nmodels, sizeof *k->pinned)))
            return tq_err(err, TQ_ENOMEM, "out of memory");
        for (int m = 0; m < cfg->nmodels; m++) {
            TqKind *v = &k->pinned[m];
            *v = *k;
            v->pinned = NULL;
            v->tiers = NULL;
            if (!(v->tiers = calloc(1, sizeof *v->tiers)))
                return tq_err(err, TQ_ENOMEM, "out of memory");
            v->tiers[0].model = m;
            v->tiers[0].accept = k->ntiers > 1 ? k->tiers[0].accept : 0;
            v->tiers[0].accept_if_agrees = NAN;
            v->ntiers = 1;
            v->pinned_model = m;
            v->score_final = true;
            v->cache.enabled = false;
            v->shadow.rate = 0;
        }
    }
    return 0;
}

int config_load(const char *dir, TqConfig **out, TqErr *err)
{
    TqConfig *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return tq_err(err, TQ_ENOMEM, "out of memory");
    cfg->dir = strdup(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/models.json", dir);
    int rc = load_models(cfg, path, err);
    char **names = NULL;
    int nnames = 0;
    if (rc)
        goto cleanup;
    DIR *d = opendir(dir);
    if (!d) {
        rc = tq_err(err, TQ_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
        goto cleanup;
    }
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= 5 || strcmp(e->d_name + n - 5, ".json") != 0 || strcmp(e->d_name, "models.json") == 0)
            continue;
        if (nnames == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) {
                closedir(d);
                rc = tq_err(err, TQ_ENOMEM, "out of memory");
                goto cleanup;
            }
            names = nn;
        }
        names[nnames++] = strndup(e->d_name, n - 5);
    }
    closedir(d);
    if (nnames == 0) {
        rc = tq_err(err, TQ_EINVAL, "%s: no job kinds (expected one <kind>.json file per kind)", dir);
        goto cleanup;
    }
    qsort(names, (size_t)nnames, sizeof *names, cmp_str);
    cfg->kinds = calloc((size_t)nnames, sizeof *cfg->kinds);
    if (!cfg->kinds) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < nnames; i++) {
        snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
        cfg->nkinds = i + 1;
        if ((rc = load_kind(cfg, &cfg->kinds[i], path, names[i], err)))
            goto cleanup;
    }
    rc = make_pinned(cfg, err);
cleanup:
    for (int i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    if (rc) {
        config_free(cfg);
        if (err)
            utf8_one_line(err->msg); /* it quotes names and keys from the files, cut to a length */
        return rc;
    }
    *out = cfg;
    return 0;
}

const TqKind *config_kind_pinned(const TqConfig *cfg, const TqKind *kind, const char *name)
{
    if (!kind || !kind->pinned || !name)
        return NULL;
    int m = strcmp(name, "baseline") == 0 ? kind->baseline_model : config_model_index(cfg, name);
    return m >= 0 && m < cfg->nmodels ? &kind->pinned[m] : NULL;
}

static void free_strv(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void config_free(TqConfig *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg->nproviders; i++) {
        TqProvider *p = &cfg->providers[i];
        free(p->name);
        free(p->base_url);
        free(p->api_key_env);
        free(p->base_url_env);
        free(p->url_query);
        for (int j = 0; j < p->nheaders; j++) {
            free(p->headers[j].name);
            free(p->headers[j].value);
            free(p->headers[j].value_env);
        }
        free(p->headers);
    }
    free(cfg->providers);
    for (int i = 0; i < cfg->nmodels; i++) {
        free(cfg->models[i].name);
        free(cfg->models[i].api_model);
        free(cfg->models[i].extra_body);
    }
    free(cfg->models);
    for (int i = 0; i < cfg->nkinds; i++) {
        TqKind *k = &cfg->kinds[i];
        free(k->name);
        free(k->file);
        free(k->hash);
        free(k->digest);
        free(k->description);
        free(k->system_prompt);
        free(k->tiers);
        for (int m = 0; k->pinned && m < cfg->nmodels; m++)
            free(k->pinned[m].tiers);
        free(k->pinned);
        for (int j = 0; j < k->nparams; j++) {
            free(k->params[j].name);
            free(k->params[j].fallback);
            free(k->params[j].description);
        }
        free(k->params);
        free_strv(k->checks.labels, k->checks.nlabels);
        free_strv(k->checks.json_keys, k->checks.njson_keys);
        free(k->checks.regex);
        if (k->checks.regex_re) {
            regfree(k->checks.regex_re);
            free(k->checks.regex_re);
        }
    }
    free(cfg->kinds);
    free_strv(cfg->warnings, cfg->nwarnings);
    free(cfg->dir);
    free(cfg);
}

int config_kind_list(const TqConfig *cfg, const char *csv, const TqKind **out, int cap, int *n, char *bad,
                     size_t badcap)
{
    *n = 0;
    for (const char *p = csv; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p);
        p = comma ? comma + 1 : p + len;
        if (len == 0)
            continue;
        const TqKind *k = len < sizeof name ? config_kind(cfg, name) : NULL;
        bool seen = false;
        for (int i = 0; k && i < *n; i++)
            seen |= out[i] == k;
        if (seen)
            continue;
        if (!k || *n >= cap) {
            if (bad && badcap)
                snprintf(bad, badcap, "%s", name);
            return TQ_EINVAL;
        }
        out[(*n)++] = k;
    }
    return 0;
}

const TqKind *config_kind(const TqConfig *cfg, const char *name)
{
    int lo = 0, hi = cfg->nkinds - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(cfg->kinds[mid].name, name);
        if (c == 0)
            return &cfg->kinds[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const TqParam *config_kind_param(const TqKind *kind, const char *name, size_t len)
{
    for (int i = 0; i < kind->nparams; i++)
        if (strlen(kind->params[i].name) == len && memcmp(kind->params[i].name, name, len) == 0)
            return &kind->params[i];
    return NULL;
}

int config_kind_params_json(const TqKind *kind, Buf *out)
{
    int rc = buf_puts(out, "{\"max_tokens\": \"integer\", \"temperature\": \"number\", \"cache\": \"boolean\","
                           " \"model\": \"model\"");
    if (!rc && kind->reads_labels)
        rc = buf_puts(out, ", \"labels\": \"labels\"");
    for (int i = 0; i < kind->nparams && !rc; i++)
        rc = buf_puts(out, ", ") || json_put_cstr(out, kind->params[i].name) || buf_puts(out, ": \"string\"");
    return rc ? rc : buf_putc(out, '}');
}

int config_model_index(const TqConfig *cfg, const char *name)
{
    for (int i = 0; i < cfg->nmodels; i++)
        if (cfg->models[i].name && strcmp(cfg->models[i].name, name) == 0)
            return i;
    return -1;
}

const char *config_default_dir(void)
{
    const char *d = getenv("TIERQ_JOBS_DIR");
    return d && *d ? d : "jobs";
}

int config_use_baseline_map(TqConfig *cfg, TqErr *err)
{
    for (int i = 0; i < cfg->nkinds; i++) {
        TqKind *k = &cfg->kinds[i];
        TqTier *t = realloc(k->tiers, sizeof *t);
        if (!t)
            return tq_err(err, TQ_ENOMEM, "out of memory");
        t[0].model = k->baseline_model;
        t[0].accept = 0;
        t[0].nfallback = 0; /* the baseline is the premium model alone */
        k->tiers = t;
        k->ntiers = 1;
        k->checks.judge_model = -1;
        k->batch.enabled = false; /* the naive choice: every job alone on the premium model */
    }
    return 0;
}
