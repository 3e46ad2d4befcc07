/* openai.c — OpenAI-compatible chat completions: request body, response and error parsing,
 * classification, retry-after and rate-limit headers. No I/O; see openai.h for the contract. */
#include "openai.h"

#include "json.h"

#include <curl/curl.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ================================================================================================
 * Request
 * ============================================================================================== */

static int put_key(Buf *b, const char *key)
{
    int rc = buf_putc(b, ',');
    if (!rc)
        rc = json_put_cstr(b, key);
    if (!rc)
        rc = buf_putc(b, ':');
    return rc;
}

/* Shortest "%g" text that reads back as the same double, with a '.' whatever the locale says. */
static int put_double(Buf *b, double v)
{
    char tmp[48];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    for (char *p = tmp; *p; p++)
        if (*p == ',')
            *p = '.';
    return buf_puts(b, tmp);
}

static int put_message(Buf *b, const char *role, const char *text, size_t len)
{
    int rc = buf_puts(b, "{\"role\":");
    if (!rc)
        rc = json_put_cstr(b, role);
    if (!rc)
        rc = buf_puts(b, ",\"content\":");
    if (!rc)
        rc = json_put_string(b, text, len);
    if (!rc)
        rc = buf_putc(b, '}');
    return rc;
}

int oai_build_request(const OaiRequest *req, Buf *out, TqErr *err)
{
    if (!req || !out)
        return tq_err(err, TQ_EINVAL, "request: missing request or output buffer");
    if (!req->model || !req->model[0])
        return tq_err(err, TQ_EINVAL, "request: model is required");
    if (!req->user)
        return tq_err(err, TQ_EINVAL, "request: user message is required");
    if (req->max_tokens < 0)
        return tq_err(err, TQ_EINVAL, "request: max_tokens must be >= 0");
    if (isnan(req->temperature) || isinf(req->temperature))
        return tq_err(err, TQ_EINVAL, "request: temperature must be a finite number");
    if (req->top_logprobs < 0 || req->top_logprobs > 20)
        return tq_err(err, TQ_EINVAL, "request: top_logprobs must be in 0..20");

    size_t start = out->len;
    size_t user_len = req->user_len ? req->user_len : strlen(req->user);
    int rc = buf_puts(out, "{\"model\":");
    if (!rc)
        rc = json_put_cstr(out, req->model);
    /* Messages come right after the model so that the system prompt starts at the same byte
     * offset in every request of a kind: that is what provider prefix caches key on. */
    if (!rc)
        rc = buf_puts(out, ",\"messages\":[");
    size_t system_len = req->system ? (req->system_len ? req->system_len : strlen(req->system)) : 0;
    if (!rc && req->system && req->system_as == OAI_SYSTEM_MESSAGE) {
        rc = put_message(out, "system", req->system, system_len);
        if (!rc)
            rc = buf_putc(out, ',');
    }
    if (!rc && req->system && req->system_as == OAI_SYSTEM_IN_USER) {
        /* One user message: the instructions first, a blank line, then the user's text. */
        Buf joined;
        buf_init(&joined, 0);
        rc = buf_append(&joined, req->system, system_len);
        if (!rc)
            rc = buf_puts(&joined, "\n\n");
        if (!rc)
            rc = buf_append(&joined, req->user, user_len);
        if (!rc)
            rc = put_message(out, "user", joined.data, joined.len);
        buf_free(&joined);
    } else if (!rc) {
        rc = put_message(out, "user", req->user, user_len);
    }
    if (!rc)
        rc = buf_putc(out, ']');
    if (!rc && req->max_tokens > 0) {
        rc = put_key(out, req->max_tokens_field == OAI_MAX_COMPLETION_TOKENS ? "max_completion_tokens"
                                                                             : "max_tokens");
        if (!rc)
            rc = buf_printf(out, "%lld", (long long)req->max_tokens);
    }
    if (!rc && req->temperature >= 0) {
        rc = put_key(out, "temperature");
        if (!rc)
            rc = put_double(out, req->temperature);
    }
    if (!rc && req->has_seed) {
        rc = put_key(out, "seed");
        if (!rc)
            rc = buf_printf(out, "%lld", (long long)req->seed);
    }
    if (!rc && req->logprobs) {
        rc = put_key(out, "logprobs");
        if (!rc)
            rc = buf_puts(out, "true");
        if (!rc && req->top_logprobs > 0) {
            rc = put_key(out, "top_logprobs");
            if (!rc)
                rc = buf_printf(out, "%d", req->top_logprobs);
        }
    }
    if (!rc && req->json_object) {
        rc = put_key(out, "response_format");
        if (!rc)
            rc = buf_puts(out, "{\"type\":\"json_object\"}");
    }
    if (!rc && req->extra_members)
        rc = buf_puts(out, req->extra_members);
    if (!rc)
        rc = buf_putc(out, '}');
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return tq_err(err, rc, rc == TQ_ELIMIT ? "request: body larger than the buffer cap"
                                               : "request: out of memory building the body");
    }
    return 0;
}

/* ================================================================================================
 * Text cleaning for error messages: one printable line, no key-like substrings, bounded.
 * ============================================================================================== */

static bool is_alnum_c(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_key_char(char c) { return is_alnum_c(c) || c == '-' || c == '_' || c == '*'; }

static bool prefix_ci(const char *s, size_t n, const char *p)
{
    size_t m = strlen(p);
    if (n < m)
        return false;
    for (size_t k = 0; k < m; k++) {
        char a = s[k], b = p[k];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

/* Length of a key-looking run at s[0..n) (its prefix included), or 0. Key formats: OpenAI and
 * DeepSeek "sk-...", Stripe-style "sk_...", Groq "gsk_...", Google "AIza...", and any
 * "Bearer <token>". The run must start at a word boundary (checked by the caller). */
static size_t key_run(const char *s, size_t n, size_t *keep)
{
    static const char *const prefixes[] = {"sk-", "sk_", "gsk_", "AIza"};
    *keep = 0;
    if (prefix_ci(s, n, "bearer ")) {
        size_t k = 7;
        while (k < n && s[k] == ' ')
            k++;
        size_t t = k;
        while (t < n && (is_key_char(s[t]) || s[t] == '.' || s[t] == '=' || s[t] == '+' || s[t] == '/'))
            t++;
        if (t == k)
            return 0;
        *keep = 7; /* keep "Bearer " */
        return t;
    }
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        size_t m = strlen(prefixes[p]);
        if (n < m || memcmp(s, prefixes[p], m) != 0)
            continue;
        size_t t = m;
        while (t < n && is_key_char(s[t]))
            t++;
        if (t - m < 4) /* "sk-" followed by a short word is prose, not a key */
            return 0;
        *keep = m;
        return t;
    }
    return 0;
}

/* Append s[0..n) to out as one clean line: invalid UTF-8 and NUL replaced, HTML tags dropped
 * (when html), control characters as spaces, runs of spaces collapsed, ends trimmed, and key-like
 * runs replaced by "<prefix>***". out must be empty; its cap bounds the work. */
static void clean_text(Buf *out, const char *s, size_t n, bool html)
{
    Buf u;
    buf_init(&u, out->cap);
    if (utf8_sanitize(&u, s, n) && !u.data) { /* capped: keep what fit */
        buf_free(&u);
        return;
    }
    /* Every kind of blank becomes spaces first — control characters, and the Unicode spaces (no-break,
     * en/em/thin, ideographic...) — so "Bearer<TAB>token" is seen as the key it is. Same length:
     * ASCII spaces replace the bytes. */
    for (size_t k = 0; k < u.len; k++) {
        unsigned char *b = (unsigned char *)u.data + k;
        size_t wide = 0;
        if (b[0] < 0x20 || b[0] == 0x7f)
            wide = 1;
        else if (b[0] == 0xC2 && k + 1 < u.len && b[1] == 0xA0)
            wide = 2; /* U+00A0 */
        else if (b[0] == 0xE2 && k + 2 < u.len &&
                 ((b[1] == 0x80 && (b[2] <= 0x8B || b[2] == 0xAF)) || (b[1] == 0x81 && b[2] == 0x9F)))
            wide = 3; /* U+2000..U+200B, U+202F, U+205F */
        else if (b[0] == 0xE3 && k + 2 < u.len && b[1] == 0x80 && b[2] == 0x80)
            wide = 3; /* U+3000 */
        for (size_t j = 0; j < wide; j++)
            b[j] = ' ';
        if (wide)
            k += wide - 1;
    }
    const char *t = u.data ? u.data : "";
    size_t tn = u.len;
    bool in_tag = false, space = true; /* space: the last byte written was a space (or none yet) */
    for (size_t k = 0; k < tn;) {
        char c = t[k];
        if (html) {
            if (in_tag) {
                if (c == '>')
                    in_tag = false;
                k++;
                continue;
            }
            if (c == '<') {
                in_tag = true;
                c = ' ';
            }
        }
        unsigned char uc = (unsigned char)c;
        if (uc < 0x20 || uc == 0x7f)
            c = ' ';
        if (c == ' ') {
            if (!space && buf_putc(out, ' '))
                break;
            space = true;
            k++;
            continue;
        }
        size_t keep;
        size_t run = (k == 0 || !is_alnum_c(t[k - 1])) ? key_run(t + k, tn - k, &keep) : 0;
        if (run) {
            if (buf_append(out, t + k, keep) || buf_puts(out, "***"))
                break;
            k += run;
        } else {
            if (buf_putc(out, c))
                break;
            k++;
        }
        space = false;
    }
    while (out->len && out->data[out->len - 1] == ' ')
        out->data[--out->len] = '\0';
    buf_free(&u);
}

/* Copy a NUL-terminated clean text into dst[cap], cut on a UTF-8 boundary with "..." if needed. */
#define OAI_CLEAN_WINDOW 4096 /* bytes of a body or field looked at; the kept message is shorter */

static void set_field(char *dst, size_t cap, const char *s, size_t n, bool html)
{
    Buf b;
    buf_init(&b, OAI_CLEAN_WINDOW);
    clean_text(&b, s, n > OAI_CLEAN_WINDOW ? OAI_CLEAN_WINDOW : n, html);
    utf8_copy_cut(dst, cap, b.data ? b.data : "", b.len);
    buf_free(&b);
}

/* A JSON value as field text: strings decoded, numbers and other primitives as written, null and
 * containers as "". */
static void set_field_json(char *dst, size_t cap, const JsonDoc *d, int i)
{
    dst[0] = '\0';
    JsonType t = json_type(d, i);
    if (t == JSON_STRING) {
        Buf b;
        buf_init(&b, OAI_CLEAN_WINDOW);
        json_string(d, i, &b, NULL); /* on a cap or escape error keep what was decoded */
        set_field(dst, cap, b.data ? b.data : "", b.len, false);
        buf_free(&b);
    } else if (t == JSON_PRIMITIVE && !json_is_null(d, i)) {
        size_t n;
        const char *raw = json_raw(d, i, &n);
        set_field(dst, cap, raw, n, false);
    }
}

/* ================================================================================================
 * Errors
 * ============================================================================================== */

static bool looks_like_html(const char *s, size_t n)
{
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r' || s[k] == '\n'))
        k++;
    return k < n && s[k] == '<';
}

/* FastAPI-style "detail": a string, or [{"loc":[...],"msg":"...","type":"..."}]. */
static int detail_message(const JsonDoc *d, int detail)
{
    if (json_type(d, detail) == JSON_STRING)
        return detail;
    int first = json_at(d, detail, 0);
    int msg = json_get(d, first, "msg");
    return json_type(d, msg) == JSON_STRING ? msg : -1;
}

static bool fill_from_json(OaiError *out, const JsonDoc *d)
{
    int root = 0;
    if (json_type(d, 0) == JSON_ARRAY) /* Gemini wraps its error in a one-element list */
        root = json_at(d, 0, 0);
    if (json_type(d, root) != JSON_OBJECT)
        return false;
    int e = json_get(d, root, "error");
    int src;
    if (json_type(d, e) == JSON_OBJECT) {
        src = e;
    } else if (json_type(d, e) == JSON_STRING) { /* Ollama: {"error":"model 'x' not found"} */
        set_field_json(out->message, sizeof out->message, d, e);
        return true;
    } else if (json_get(d, root, "message") >= 0 || json_get(d, root, "detail") >= 0) {
        src = root; /* older vLLM: {"object":"error","message":...,"code":400}; FastAPI detail */
    } else {
        return false;
    }
    int msg = json_get(d, src, "message");
    if (json_type(d, msg) != JSON_STRING)
        msg = detail_message(d, json_get(d, src, "detail"));
    set_field_json(out->message, sizeof out->message, d, msg);
    int type = json_get(d, src, "type");
    if (json_type(d, type) != JSON_STRING && json_type(d, json_get(d, src, "status")) == JSON_STRING)
        type = json_get(d, src, "status"); /* Gemini: "RESOURCE_EXHAUSTED" (Azure's numeric status is not a type) */
    set_field_json(out->type, sizeof out->type, d, type);
    set_field_json(out->code, sizeof out->code, d, json_get(d, src, "code"));
    set_field_json(out->param, sizeof out->param, d, json_get(d, src, "param"));
    return true;
}

int oai_parse_error(int http_status, const char *body, size_t len, OaiError *out)
{
    if (!out)
        return TQ_EINVAL;
    memset(out, 0, sizeof *out);
    out->http_status = http_status;
    if (!body)
        len = 0;
    if (len == 0)
        return 0;
    JsonDoc doc;
    if (json_parse(&doc, body, len, 65536, NULL) == 0) {
        out->json = fill_from_json(out, &doc);
        json_doc_free(&doc);
    }
    if (!out->json)
        set_field(out->message, sizeof out->message, body, len, looks_like_html(body, len));
    return 0;
}

/* ================================================================================================
 * Response
 * ============================================================================================== */

static int dup_string_or_empty(const JsonDoc *d, int i, char **out)
{
    *out = json_type(d, i) == JSON_STRING ? json_strdup(d, i) : strdup("");
    return *out ? 0 : TQ_ENOMEM;
}

/* A token count: a non-negative integer, or a number with an integral value (some servers send
 * 12.0). Absent, null, negative or silly values are not counts. */
static bool get_count(const JsonDoc *d, int i, int64_t *out)
{
    int64_t v;
    double x;
    if (json_int64(d, i, &v) == 0) {
        if (v < 0)
            return false;
        *out = v;
        return true;
    }
    if (json_double(d, i, &x) == 0 && isfinite(x) && x >= 0 && x < 1e15) {
        *out = (int64_t)llround(x);
        return true;
    }
    return false;
}

static void parse_usage(const JsonDoc *d, int root, OaiUsage *u)
{
    memset(u, 0, sizeof *u);
    int usage = json_get(d, root, "usage");
    if (json_type(d, usage) != JSON_OBJECT)
        return;
    int64_t prompt, completion;
    if (!get_count(d, json_get(d, usage, "prompt_tokens"), &prompt) ||
        !get_count(d, json_get(d, usage, "completion_tokens"), &completion))
        return;
    u->present = true;
    u->prompt_tokens = prompt;
    u->completion_tokens = completion;

    int64_t cached = 0;
    int ptd = json_get(d, usage, "prompt_tokens_details");
    if (!get_count(d, json_get(d, ptd, "cached_tokens"), &cached))
        if (!get_count(d, json_get(d, usage, "prompt_cache_hit_tokens"), &cached))
            cached = 0;
    u->cached_tokens = cached > prompt ? prompt : cached;

    int64_t reasoning = 0;
    int ctd = json_get(d, usage, "completion_tokens_details");
    if (!get_count(d, json_get(d, ctd, "reasoning_tokens"), &reasoning))
        reasoning = 0;
    u->reasoning_tokens = reasoning > completion ? completion : reasoning;

    int64_t total;
    if (get_count(d, json_get(d, usage, "total_tokens"), &total))
        u->total_tokens = total;
    else
        u->total_tokens = prompt > INT64_MAX - completion ? INT64_MAX : prompt + completion; /* counts are >= 0 */
}

/* Keep each token's text length and logprob: offsets accumulate in the order tokens were sent. */
static void parse_token_ranges(const JsonDoc *d, int choice, OaiResponse *r)
{
    int arr = json_get(d, json_get(d, choice, "logprobs"), "content");
    if (json_type(d, arr) != JSON_ARRAY || json_size(d, arr) <= 0)
        return;
    int n = json_size(d, arr);
    OaiTokenLogprob *t = calloc((size_t)n, sizeof *t);
    if (!t)
        return;
    Buf tok;
    buf_init(&tok, 1 << 16);
    uint32_t at = 0;
    int k = arr + 1, m = 0;
    for (int c = 0; c < n && k < d->ntok; c++) {
        double x = 0;
        buf_reset(&tok);
        if (json_double(d, json_get(d, k, "logprob"), &x) == 0 && isfinite(x) &&
            json_string(d, json_get(d, k, "token"), &tok, NULL) == 0) {
            t[m].start = at;
            t[m].len = (uint32_t)tok.len;
            t[m].logprob = (float)(x > 0 ? 0 : x);
            at += (uint32_t)tok.len;
            m++;
        }
        k = json_skip(d, k);
    }
    buf_free(&tok);
    r->tokens = t;
    r->ntokens = m;
}

void oai_logprobs_in_range(const OaiResponse *r, size_t start, size_t end, OaiLogprobs *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < r->ntokens; i++) {
        size_t ts = r->tokens[i].start, te = ts + r->tokens[i].len;
        if (te <= start || ts >= end)
            continue;
        double x = r->tokens[i].logprob;
        out->sum_logprob += x;
        if (out->n_tokens == 0 || x < out->min_logprob)
            out->min_logprob = x;
        out->n_tokens++;
    }
    out->present = out->n_tokens > 0;
}

static void parse_logprobs(const JsonDoc *d, int choice, OaiLogprobs *lp)
{
    memset(lp, 0, sizeof *lp);
    int obj = json_get(d, choice, "logprobs");
    bool legacy = false;
    int arr = json_get(d, obj, "content");
    if (json_type(d, arr) != JSON_ARRAY) {
        arr = json_get(d, obj, "token_logprobs"); /* legacy completions shape: [-0.1, -2.3, ...] */
        legacy = true;
    }
    if (json_type(d, arr) != JSON_ARRAY)
        return;
    int n = json_size(d, arr);
    int k = arr + 1;
    for (int c = 0; c < n && k < d->ntok; c++) {
        int v = legacy ? k : json_get(d, k, "logprob");
        double x;
        if (json_double(d, v, &x) == 0 && isfinite(x)) {
            if (x > 0) /* rounding noise on a certain token */
                x = 0;
            lp->sum_logprob += x;
            if (lp->n_tokens == 0 || x < lp->min_logprob)
                lp->min_logprob = x;
            lp->n_tokens++;
        }
        k = json_skip(d, k);
    }
    lp->present = lp->n_tokens > 0;
}

/* message.content: a string, null, or an array of parts ({"type":"text","text":...} or strings). */
static int parse_content(const JsonDoc *d, int content, Buf *out, TqErr *err)
{
    JsonType t = json_type(d, content);
    if (t == JSON_UNDEFINED || json_is_null(d, content))
        return 0;
    if (t == JSON_STRING)
        return json_string(d, content, out, err);
    if (t != JSON_ARRAY)
        return tq_err(err, TQ_EPARSE, "message content is neither text nor a list of parts");
    int n = json_size(d, content);
    int k = content + 1;
    for (int c = 0; c < n && k < d->ntok; c++) {
        int text = -1;
        if (json_type(d, k) == JSON_STRING) {
            text = k;
        } else if (json_type(d, k) == JSON_OBJECT) {
            int type = json_get(d, k, "type");
            if (type < 0 || json_eq(d, type, "text"))
                text = json_get(d, k, "text");
        }
        if (json_type(d, text) == JSON_STRING) {
            int rc = json_string(d, text, out, err);
            if (rc)
                return rc;
        }
        k = json_skip(d, k);
    }
    return 0;
}

static int parse_response(const char *body, size_t len, int max_tokens_json, bool keep_tokens, OaiResponse *out,
                          TqErr *err);

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Bytes of content that are reasoning, not answer (see oai_parse_response): a leading
 * "<think>...</think>", everything up to a "</think>" that was never opened, or all of it when a
 * "<think>" is never closed; plus the whitespace that follows. 0 when there is none. */
static size_t reasoning_prefix(const char *s, size_t n)
{
    static const char open[] = "<think>", close[] = "</think>";
    size_t i = 0;
    while (i < n && is_ws(s[i]))
        i++;
    const char *end = NULL;
    if (n - i >= sizeof open - 1 && memcmp(s + i, open, sizeof open - 1) == 0) {
        end = strstr(s + i + sizeof open - 1, close);
        if (!end)
            return n; /* cut off while thinking: no answer at all */
    } else {
        end = strstr(s, close);
        /* A closing tag with no opening one: the template opened the block; only trust it when the
         * tag comes before any other "<think>" (plain answers that mention the tag stay whole). */
        if (!end || memmem(s, (size_t)(end - s), open, sizeof open - 1))
            return 0;
    }
    size_t cut = (size_t)(end - s) + sizeof close - 1;
    while (cut < n && is_ws(s[cut]))
        cut++;
    return cut;
}

/* Remove the first cut bytes of the content (reasoning), shifting the token ranges with it. */
static void drop_prefix(OaiResponse *r, size_t cut)
{
    memmove(r->content, r->content + cut, r->content_len - cut + 1);
    r->content_len -= cut;
    r->has_reasoning = true;
    r->reasoning_bytes += cut;
    int m = 0;
    for (int i = 0; i < r->ntokens; i++) {
        size_t ts = r->tokens[i].start, te = ts + r->tokens[i].len;
        if (te <= cut)
            continue;
        OaiTokenLogprob t = r->tokens[i];
        t.start = ts >= cut ? (uint32_t)(ts - cut) : 0;
        t.len = (uint32_t)(te - cut - t.start);
        r->tokens[m++] = t;
    }
    r->ntokens = m;
}

int oai_parse_response(const char *body, size_t len, int max_tokens_json, OaiResponse *out, TqErr *err)
{
    return parse_response(body, len, max_tokens_json, false, out, err);
}

int oai_parse_response_tokens(const char *body, size_t len, int max_tokens_json, OaiResponse *out, TqErr *err)
{
    return parse_response(body, len, max_tokens_json, true, out, err);
}

static int parse_response(const char *body, size_t len, int max_tokens_json, bool keep_tokens, OaiResponse *out,
                          TqErr *err)
{
    if (!out)
        return tq_err(err, TQ_EINVAL, "response: no output struct");
    if (!body || len == 0)
        return tq_err(err, TQ_EPARSE, "empty response body");
    JsonDoc doc;
    int rc = json_parse(&doc, body, len, max_tokens_json, err);
    if (rc)
        return rc;
    OaiResponse r;
    memset(&r, 0, sizeof r);
    Buf content;
    buf_init(&content, 0);

    if (json_type(&doc, 0) != JSON_OBJECT) {
        rc = tq_err(err, TQ_EPARSE, "response is not a json object");
        goto cleanup;
    }
    int choices = json_get(&doc, 0, "choices");
    if (json_type(&doc, choices) == JSON_ARRAY && json_size(&doc, choices) == 0 &&
        json_type(&doc, json_get(&doc, 0, "usage")) == JSON_OBJECT) {
        /* No answer, but tokens were spent: report them so the call is charged. */
        r.no_choice = true;
        if (!(r.content = strdup("")) || (rc = dup_string_or_empty(&doc, json_get(&doc, 0, "id"), &r.id)) ||
            (rc = dup_string_or_empty(&doc, json_get(&doc, 0, "model"), &r.model)) ||
            !(r.finish_reason = strdup(""))) {
            rc = tq_err(err, TQ_ENOMEM, "out of memory parsing response");
            goto cleanup;
        }
        parse_usage(&doc, 0, &r.usage);
        *out = r;
        memset(&r, 0, sizeof r);
        goto cleanup;
    }
    int choice = json_at(&doc, choices, 0);
    if (choice < 0) {
        int e = json_get(&doc, 0, "error");
        if (e >= 0 && !json_is_null(&doc, e)) {
            OaiError oe;
            oai_parse_error(200, body, len, &oe);
            rc = tq_err(err, TQ_EPARSE, "response carries an error: %s", oe.message);
        } else {
            rc = tq_err(err, TQ_EPARSE, "response has no choices");
        }
        goto cleanup;
    }
    int msg = json_get(&doc, choice, "message");
    if (json_type(&doc, msg) != JSON_OBJECT) {
        rc = tq_err(err, TQ_EPARSE, "choice has no message");
        goto cleanup;
    }
    rc = parse_content(&doc, json_get(&doc, msg, "content"), &content, err);
    if (rc)
        goto cleanup;
    /* An empty Buf has no terminator until something is appended; a zero-length append sets it. */
    rc = buf_append(&content, "", 0);
    if (rc) {
        rc = tq_err(err, rc, "out of memory parsing response");
        goto cleanup;
    }
    r.content_len = content.len;
    r.content = buf_take(&content);
    if (!r.content) {
        rc = tq_err(err, TQ_ENOMEM, "out of memory parsing response");
        goto cleanup;
    }
    size_t refusal_len = 0;
    int refusal = json_get(&doc, msg, "refusal");
    if (json_type(&doc, refusal) == JSON_STRING && (json_raw(&doc, refusal, &refusal_len), refusal_len > 0)) {
        r.refusal = json_strdup(&doc, refusal);
        if (!r.refusal) {
            rc = tq_err(err, TQ_ENOMEM, "out of memory parsing response");
            goto cleanup;
        }
    }
    int choice_err = json_get(&doc, json_get(&doc, choice, "error"), "message");
    if (json_type(&doc, choice_err) == JSON_STRING) {
        char line[OAI_ERR_MSG_MAX + 4];
        set_field_json(line, sizeof line, &doc, choice_err);
        r.choice_error = strdup(line);
    }
    if ((rc = dup_string_or_empty(&doc, json_get(&doc, 0, "id"), &r.id)) ||
        (rc = dup_string_or_empty(&doc, json_get(&doc, 0, "model"), &r.model)) ||
        (rc = dup_string_or_empty(&doc, json_get(&doc, choice, "finish_reason"), &r.finish_reason))) {
        tq_err(err, rc, "out of memory parsing response");
        goto cleanup;
    }
    static const char *const reasoning_keys[] = {"reasoning_content", "reasoning"};
    for (size_t k = 0; k < 2 && !r.has_reasoning; k++) {
        int rs = json_get(&doc, msg, reasoning_keys[k]);
        size_t n = 0;
        if (json_type(&doc, rs) == JSON_STRING)
            json_raw(&doc, rs, &n);
        r.has_reasoning = n > 0;
        r.reasoning_bytes = n;
    }
    parse_usage(&doc, 0, &r.usage);
    size_t cut = reasoning_prefix(r.content, r.content_len);
    if (cut == 0) {
        parse_logprobs(&doc, choice, &r.logprobs);
        if (keep_tokens)
            parse_token_ranges(&doc, choice, &r);
    } else {
        /* The answer is what follows the reasoning: its confidence comes from its own tokens. */
        parse_token_ranges(&doc, choice, &r);
        drop_prefix(&r, cut);
        oai_logprobs_in_range(&r, 0, r.content_len, &r.logprobs);
        if (!keep_tokens) {
            free(r.tokens);
            r.tokens = NULL;
            r.ntokens = 0;
        }
    }

    *out = r;
    memset(&r, 0, sizeof r);
cleanup:
    oai_response_free(&r);
    buf_free(&content);
    json_doc_free(&doc);
    return rc;
}

void oai_response_free(OaiResponse *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->model);
    free(r->content);
    free(r->refusal);
    free(r->choice_error);
    free(r->finish_reason);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

/* ================================================================================================
 * Classification
 * ============================================================================================== */

/* Codes that mean the account, not this request or this minute, is the problem. OpenAI sends
 * insufficient_quota and billing_not_active with status 429, which must not be retried as a
 * rate limit. */
/* Codes that mean the account, not this request or this minute, is the problem. OpenAI sends
 * insufficient_quota and billing_not_active with status 429, which must not be retried as a
 * rate limit; DashScope says Arrearage (an account in arrears) with status 400, which must not
 * fail the jobs as if they were malformed. */
static bool is_quota(const OaiError *e)
{
    static const char *const codes[] = {"insufficient_quota", "billing_not_active", "billing_hard_limit_reached",
                                        "Arrearage", "insufficient_balance"};
    if (!e)
        return false;
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++)
        if (strcmp(e->code, codes[k]) == 0 || strcmp(e->type, codes[k]) == 0)
            return true;
    return false;
}

/* Whether a substring occurs, ASCII case ignored. */
static bool contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, n) == 0)
            return true;
    return false;
}

/* The prompt does not fit the model: OpenAI's code, llama.cpp's type (sometimes with status 500),
 * vLLM's and others' words. No retry can help; a smaller batch might. */
static bool is_context_overflow(const OaiError *e)
{
    if (!e)
        return false;
    return strcmp(e->code, "context_length_exceeded") == 0 || strcmp(e->type, "exceed_context_size_error") == 0 ||
           contains_ci(e->message, "maximum context length") || contains_ci(e->message, "context length exceeded") ||
           contains_ci(e->message, "exceeds the available context size") ||
           contains_ci(e->message, "context window") || contains_ci(e->message, "context size has been exceeded");
}

/* The provider's filter refused the prompt (Azure's code content_filter, DashScope's
 * data_inspection_failed): the job fails with reason content_filter, not bad_request. */
static bool is_content_filter(const OaiError *e)
{
    return e && (strcmp(e->code, "content_filter") == 0 || strcmp(e->code, "data_inspection_failed") == 0 ||
                 strcmp(e->code, "content_policy_violation") == 0);
}

OaiVerdict oai_classify(int http_status, const OaiError *e)
{
    int s = http_status;
    if (s >= 200 && s <= 299)
        return OAI_OK;
    if (s == 402 || is_quota(e))
        return OAI_QUOTA;
    if (s < 100 || s > 599)
        return OAI_RETRY;
    if (is_context_overflow(e) || is_content_filter(e))
        return OAI_FAIL; /* even as a 500: sending it again gives the same answer */
    /* 498: Groq's flex tier is out of capacity ("try again later") */
    if (s == 408 || s == 409 || s == 425 || s == 429 || s == 498 || s >= 500)
        return OAI_RETRY;
    return OAI_FAIL;
}

OaiVerdict oai_classify_transport(OaiNetError e)
{
    switch (e) {
    case OAI_NET_TOO_LARGE:
    case OAI_NET_INVALID: return OAI_FAIL;
    case OAI_NET_TIMEOUT:
    case OAI_NET_CONNECT:
    case OAI_NET_RESET:
    case OAI_NET_TLS:
    case OAI_NET_BAD_BODY:
    default: return OAI_RETRY;
    }
}

const char *oai_verdict_name(OaiVerdict v)
{
    switch (v) {
    case OAI_OK: return "ok";
    case OAI_RETRY: return "retry";
    case OAI_FAIL: return "fail";
    case OAI_QUOTA: return "quota";
    default: return "unknown";
    }
}

const char *oai_error_reason(int http_status, const OaiError *e)
{
    int s = http_status;
    if (s >= 200 && s <= 299)
        return "ok";
    if (s == 402)
        return "payment_required";
    if (is_quota(e))
        return "quota_exhausted";
    if (is_context_overflow(e))
        return "context_length_exceeded";
    if (is_content_filter(e))
        return "content_filter";
    switch (s) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 408: return "request_timeout";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 422: return "unprocessable";
    case 429: return "rate_limited";
    case 498: /* Groq: flex tier capacity exceeded */
    case 503:
    case 529: return "overloaded";
    default: break;
    }
    if (s >= 500 && s <= 599)
        return "server_error";
    if (s >= 400 && s <= 499)
        return "http_4xx";
    return "http_other";
}

const char *oai_net_reason(OaiNetError e)
{
    switch (e) {
    case OAI_NET_TIMEOUT: return "http_timeout";
    case OAI_NET_CONNECT: return "connect_failed";
    case OAI_NET_RESET: return "connection_reset";
    case OAI_NET_TLS: return "tls_failed";
    case OAI_NET_BAD_BODY: return "bad_body";
    case OAI_NET_TOO_LARGE: return "response_too_large";
    case OAI_NET_INVALID: return "bad_request_setup";
    default: return "transport_error";
    }
}

/* ================================================================================================
 * Retry-After, durations, headers
 * ============================================================================================== */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* An unsigned decimal "12", "1.5", ".5" at *p; advances *p. No sign, no exponent: header values
 * with those are malformed. */
static bool parse_decimal(const char **p, double *out)
{
    const char *s = *p;
    double v = 0;
    bool digits = false;
    while (is_digit(*s)) {
        v = v * 10 + (*s - '0');
        s++;
        digits = true;
    }
    if (*s == '.') {
        s++;
        double scale = 0.1;
        while (is_digit(*s)) {
            v += (*s - '0') * scale;
            scale /= 10;
            s++;
            digits = true;
        }
    }
    if (!digits)
        return false;
    *p = s;
    *out = v;
    return true;
}

/* Whole milliseconds, rounded up, from a non-negative double; the epsilon absorbs binary noise
 * such as 0.1 * 1000 = 100.00000000000001. */
static int64_t ceil_ms(double ms)
{
    double c = ceil(ms - 1e-9);
    return c < 0 ? 0 : (int64_t)c;
}

static int64_t cap_retry(double ms)
{
    if (ms > (double)OAI_RETRY_AFTER_CAP_MS)
        return OAI_RETRY_AFTER_CAP_MS;
    return ceil_ms(ms);
}

/* The whole string (trimmed) is one decimal number. */
static bool parse_decimal_only(const char *s, double *out)
{
    while (is_space(*s))
        s++;
    if (!parse_decimal(&s, out))
        return false;
    while (is_space(*s))
        s++;
    return *s == '\0';
}

/* An HTTP-date (IMF-fixdate, RFC 850 or asctime) as seconds since the epoch: libcurl's own parser,
 * the one it uses for cookies and If-Modified-Since. */
static bool parse_http_date(const char *s, int64_t *epoch)
{
    while (is_space(*s))
        s++;
    if (!*s)
        return false;
    time_t t = curl_getdate(s, NULL);
    if (t == (time_t)-1)
        return false;
    *epoch = (int64_t)t;
    return true;
}

int64_t oai_retry_after_ms(const char *retry_after_ms_header, const char *retry_after_header, time_t now)
{
    double v;
    if (retry_after_ms_header && parse_decimal_only(retry_after_ms_header, &v))
        return cap_retry(v);
    if (!retry_after_header)
        return -1;
    if (parse_decimal_only(retry_after_header, &v))
        return cap_retry(v * 1000.0);
    int64_t when;
    if (parse_http_date(retry_after_header, &when)) {
        int64_t delta = when - (int64_t)now;
        if (delta <= 0)
            return 0;
        return delta > OAI_RETRY_AFTER_CAP_MS / 1000 ? OAI_RETRY_AFTER_CAP_MS : delta * 1000;
    }
    return -1;
}

int64_t oai_duration_ms(const char *s)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {
        /* longest first so "ms" is not read as "m" followed by garbage */
        {"ms", 1.0}, {"us", 1e-3}, {"\xC2\xB5s", 1e-3}, {"\xCE\xBCs", 1e-3}, {"ns", 1e-6},
        {"h", 3600000.0}, {"m", 60000.0}, {"s", 1000.0},
    };
    if (!s)
        return -1;
    while (is_space(*s))
        s++;
    const char *p = s;
    double total = 0;
    int parts = 0;
    while (*p && !is_space(*p)) {
        double v;
        if (!parse_decimal(&p, &v))
            return -1;
        size_t k, n = sizeof units / sizeof units[0];
        for (k = 0; k < n; k++) {
            size_t ul = strlen(units[k].unit);
            if (strncmp(p, units[k].unit, ul) == 0) {
                p += ul;
                break;
            }
        }
        if (k == n) {
            /* A bare number is seconds, but only alone: "1m30" is malformed. */
            if (parts > 0 || (*p && !is_space(*p)))
                return -1;
            total += v * 1000.0;
        } else {
            total += v * units[k].ms;
        }
        parts++;
        if (total > 1e12)
            return -1;
    }
    while (is_space(*p))
        p++;
    if (parts == 0 || *p)
        return -1;
    return ceil_ms(total);
}

void oai_headers_init(OaiHeaders *h)
{
    memset(h, 0, sizeof *h);
    h->limit_requests = h->limit_tokens = -1;
    h->remaining_requests = h->remaining_tokens = -1;
    h->reset_requests_ms = h->reset_tokens_ms = -1;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && prefix_ci(name, n, want);
}

/* Header values are ASCII by spec; anything else becomes '?', and the copy is cut to fit. */
static void copy_header_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)v[k];
        dst[k] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    dst[n] = '\0';
}

static int64_t header_int(const char *v, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t x = 0;
    for (size_t k = 0; k < n; k++) {
        if (!is_digit(v[k]))
            return -1;
        x = x * 10 + (v[k] - '0');
    }
    return x;
}

static int64_t header_duration(const char *v, size_t n)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    return oai_duration_ms(tmp);
}

void oai_headers_feed(OaiHeaders *h, const char *line, size_t len)
{
    if (!h || !line)
        return;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        oai_headers_init(h);
        return;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return;
    size_t nn = (size_t)(colon - line);
    while (nn && (line[nn - 1] == ' ' || line[nn - 1] == '\t'))
        nn--;
    const char *v = colon + 1;
    size_t vn = len - (size_t)(v - line);
    while (vn && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn && is_space(v[vn - 1]))
        vn--;

    if (name_is(line, nn, "retry-after"))
        copy_header_value(h->retry_after, sizeof h->retry_after, v, vn);
    else if (name_is(line, nn, "retry-after-ms"))
        copy_header_value(h->retry_after_ms, sizeof h->retry_after_ms, v, vn);
    else if (name_is(line, nn, "x-request-id"))
        copy_header_value(h->request_id, sizeof h->request_id, v, vn);
    else if (name_is(line, nn, "x-ratelimit-limit-requests"))
        h->limit_requests = header_int(v, vn);
    else if (name_is(line, nn, "x-ratelimit-limit-tokens"))
        h->limit_tokens = header_int(v, vn);
    else if (name_is(line, nn, "x-ratelimit-remaining-requests"))
        h->remaining_requests = header_int(v, vn);
    else if (name_is(line, nn, "x-ratelimit-remaining-tokens"))
        h->remaining_tokens = header_int(v, vn);
    else if (name_is(line, nn, "x-ratelimit-reset-requests"))
        h->reset_requests_ms = header_duration(v, vn);
    else if (name_is(line, nn, "x-ratelimit-reset-tokens"))
        h->reset_tokens_ms = header_duration(v, vn);
}

int64_t oai_headers_retry_after_ms(const OaiHeaders *h, time_t now)
{
    if (!h)
        return -1;
    return oai_retry_after_ms(h->retry_after_ms[0] ? h->retry_after_ms : NULL,
                              h->retry_after[0] ? h->retry_after : NULL, now);
}

/* ================================================================================================
 * Estimates
 * ============================================================================================== */

int64_t oai_estimate_tokens(const char *text, size_t len)
{
    if (!text)
        return 1;
    size_t ascii = 0, wide = 0;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)text[k];
        if (c < 0x80)
            ascii++;
        else if ((c & 0xC0) != 0x80) /* a lead byte: one character, whatever its length */
            wide++;
    }
    int64_t t = (int64_t)((ascii + 3) / 4 + wide);
    return t < 1 ? 1 : t;
}
