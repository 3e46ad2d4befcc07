/* json.c — the one place jsmn is compiled (strict mode, parent links). */
#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#define JSMN_STRICT
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <jsmn.h>
#pragma GCC diagnostic pop

#include "json.h"

#include "utf8.h"

#include <errno.h>
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define TOK(doc) ((jsmntok_t *)(doc)->tok)

/* jsmn's strict mode checks where a primitive starts but not what it is ("tru" passes), so every
 * primitive is checked against the JSON grammar: true, false, null or a number. */
bool json_number_text_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return false;
    if (s[i] == '0')
        i++;
    else
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (i < n && s[i] == '.') {
        i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n;
}

static bool primitive_ok(const char *s, size_t n)
{
    if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0) ||
        (n == 4 && memcmp(s, "null", 4) == 0))
        return true;
    return json_number_text_ok(s, n);
}

/* ---- strict syntax ------------------------------------------------------------------------------ */

#define JSON_MAX_DEPTH 512

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* The string starting at s[i] == '"': the index after its closing quote, 0 when it is not a valid
 * string, n + 1 when the input ends inside it. */
static size_t scan_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++i >= n)
            return n + 1;
        if (s[i] == 'u') {
            for (int k = 1; k <= 4; k++)
                if (i + (size_t)k >= n)
                    return n + 1;
                else if (!is_hex(s[i + (size_t)k]))
                    return 0;
            i += 4;
        } else if (!strchr("\"\\/bfnrt", s[i])) {
            return 0;
        }
    }
    return n + 1;
}

/* RFC 8259, strictly: commas between members and elements and nowhere else, a colon after every
 * key, valid strings, numbers and literals, one value and nothing after it but whitespace. jsmn
 * alone lets through a missing or doubled comma ("a": 1 "b": 2), which would make a config typo
 * silently mean something. 0, or TQ_EPARSE with "truncated json" when the input ends early and
 * "invalid json near byte N: ..." otherwise. */
static int syntax_check(const char *s, size_t n, TqErr *err)
{
    char stack[JSON_MAX_DEPTH]; /* '{' or '[' */
    int depth = 0;
    size_t i = skip_ws(s, n, 0);
    enum { VALUE, AFTER_VALUE, KEY_OR_END, KEY, VALUE_OR_END } want = VALUE;
    for (;;) {
        if (i >= n) {
            if (want == AFTER_VALUE && depth == 0)
                return 0;
            return tq_err(err, TQ_EPARSE, "truncated json");
        }
        char c = s[i];
        const char *expected = NULL;
        switch (want) {
        case KEY_OR_END:
        case KEY:
            if (c == '}' && want == KEY_OR_END) {
                depth--;
                i++;
                want = AFTER_VALUE;
                break;
            }
            if (c != '"') {
                expected = want == KEY ? "a key" : "a key or '}'";
                break;
            }
            {
                size_t e = scan_string(s, n, i);
                if (e == n + 1)
                    return tq_err(err, TQ_EPARSE, "truncated json");
                if (!e) {
                    expected = "a valid string";
                    break;
                }
                i = skip_ws(s, n, e);
                if (i >= n)
                    return tq_err(err, TQ_EPARSE, "truncated json");
                if (s[i] != ':') {
                    expected = "':' after the key";
                    break;
                }
                i++;
                want = VALUE;
            }
            break;
        case VALUE_OR_END:
            if (c == ']') {
                depth--;
                i++;
                want = AFTER_VALUE;
                break;
            }
            /* fall through */
        case VALUE:
            if (c == '{' || c == '[') {
                if (depth == JSON_MAX_DEPTH)
                    return tq_err(err, TQ_EPARSE, "invalid json near byte %zu: nested deeper than %d", i, JSON_MAX_DEPTH);
                stack[depth++] = c;
                i++;
                want = c == '{' ? KEY_OR_END : VALUE_OR_END;
            } else if (c == '"') {
                size_t e = scan_string(s, n, i);
                if (e == n + 1)
                    return tq_err(err, TQ_EPARSE, "truncated json");
                if (!e) {
                    expected = "a valid string";
                    break;
                }
                i = e;
                want = AFTER_VALUE;
            } else {
                size_t e = i;
                while (e < n && (isalnum((unsigned char)s[e]) || s[e] == '-' || s[e] == '+' || s[e] == '.'))
                    e++;
                if (e == i || !primitive_ok(s + i, e - i)) {
                    if (e == n && e > i && depth > 0)
                        return tq_err(err, TQ_EPARSE, "truncated json");
                    expected = "a value";
                    break;
                }
                i = e;
                want = AFTER_VALUE;
            }
            break;
        case AFTER_VALUE:
            if (depth == 0) {
                expected = "the end of the document";
                break;
            }
            if (c == ',') {
                i++;
                want = stack[depth - 1] == '{' ? KEY : VALUE;
            } else if (c == (stack[depth - 1] == '{' ? '}' : ']')) {
                depth--;
                i++;
            } else {
                expected = stack[depth - 1] == '{' ? "',' or '}'" : "',' or ']'";
            }
            break;
        }
        if (expected)
            return tq_err(err, TQ_EPARSE, "invalid json near byte %zu: expected %s", i, expected);
        i = skip_ws(s, n, i);
    }
}

int json_parse(JsonDoc *doc, const char *js, size_t len, int max_tokens, TqErr *err)
{
    memset(doc, 0, sizeof *doc);
    if (max_tokens <= 0)
        max_tokens = JSON_DEFAULT_MAX_TOKENS;
    if (len > (size_t)INT_MAX)
        return tq_err(err, TQ_ELIMIT, "json document too large (%zu bytes)", len);
    int src = syntax_check(js, len, err);
    if (src)
        return src;
    jsmn_parser p;
    jsmn_init(&p);
    int cap = 64;
    jsmntok_t *tok = NULL;
    for (;;) {
        if (cap > max_tokens)
            cap = max_tokens;
        jsmntok_t *t = realloc(tok, (size_t)cap * sizeof *t);
        if (!t) {
            free(tok);
            return tq_err(err, TQ_ENOMEM, "out of memory parsing json");
        }
        tok = t;
        int r = jsmn_parse(&p, js, len, tok, (unsigned)cap);
        if (r >= 0) {
            if (r == 0) {
                free(tok);
                return tq_err(err, TQ_EPARSE, "empty json document");
            }
            /* jsmn accepts several top-level values; we want exactly one. */
            if (tok[0].end < 0 || json_skip(&(JsonDoc){js, len, tok, r, cap}, 0) != r) {
                free(tok);
                return tq_err(err, TQ_EPARSE, "invalid json: more than one top-level value");
            }
            for (int i = 0; i < r; i++) {
                if (tok[i].type == JSMN_PRIMITIVE &&
                    !primitive_ok(js + tok[i].start, (size_t)(tok[i].end - tok[i].start))) {
                    int at = tok[i].start;
                    free(tok);
                    return tq_err(err, TQ_EPARSE, "invalid json value near byte %d", at);
                }
            }
            doc->js = js;
            doc->len = len;
            doc->tok = tok;
            doc->ntok = r;
            doc->cap = cap;
            return 0;
        }
        if (r == JSMN_ERROR_NOMEM && cap < max_tokens) {
            cap = cap > max_tokens / 4 ? max_tokens : cap * 4;
            continue;
        }
        free(tok);
        if (r == JSMN_ERROR_NOMEM)
            return tq_err(err, TQ_ELIMIT, "json has more than %d tokens", max_tokens);
        if (r == JSMN_ERROR_PART)
            return tq_err(err, TQ_EPARSE, "truncated json");
        return tq_err(err, TQ_EPARSE, "invalid json near byte %u", p.pos);
    }
}

void json_doc_free(JsonDoc *doc)
{
    if (!doc)
        return;
    free(doc->tok);
    memset(doc, 0, sizeof *doc);
}

static bool valid(const JsonDoc *doc, int i) { return doc && i >= 0 && i < doc->ntok; }

JsonType json_type(const JsonDoc *doc, int i)
{
    if (!valid(doc, i))
        return JSON_UNDEFINED;
    switch (TOK(doc)[i].type) {
    case JSMN_OBJECT: return JSON_OBJECT;
    case JSMN_ARRAY: return JSON_ARRAY;
    case JSMN_STRING: return JSON_STRING;
    case JSMN_PRIMITIVE: return JSON_PRIMITIVE;
    default: return JSON_UNDEFINED;
    }
}

int json_size(const JsonDoc *doc, int i) { return valid(doc, i) ? TOK(doc)[i].size : -1; }

const char *json_raw(const JsonDoc *doc, int i, size_t *len)
{
    if (!valid(doc, i)) {
        *len = 0;
        return "";
    }
    jsmntok_t *t = &TOK(doc)[i];
    *len = (size_t)(t->end - t->start);
    return doc->js + t->start;
}

int json_skip(const JsonDoc *doc, int i)
{
    if (!valid(doc, i))
        return doc ? doc->ntok : 0;
    jsmntok_t *t = TOK(doc);
    int end = t[i].end;
    int j = i + 1;
    while (j < doc->ntok && t[j].start < end)
        j++;
    return j;
}

int json_get(const JsonDoc *doc, int obj, const char *key)
{
    if (json_type(doc, obj) != JSON_OBJECT)
        return -1;
    int n = TOK(doc)[obj].size;
    int k = obj + 1;
    for (int c = 0; c < n && k < doc->ntok; c++) {
        if (json_eq(doc, k, key))
            return k + 1 < doc->ntok ? k + 1 : -1;
        k = json_skip(doc, k + 1);
    }
    return -1;
}

int json_at(const JsonDoc *doc, int arr, int idx)
{
    if (json_type(doc, arr) != JSON_ARRAY || idx < 0 || idx >= TOK(doc)[arr].size)
        return -1;
    int k = arr + 1;
    for (int c = 0; c < idx; c++)
        k = json_skip(doc, k);
    return k < doc->ntok ? k : -1;
}

bool json_is_null(const JsonDoc *doc, int i)
{
    size_t n;
    const char *s = json_raw(doc, i, &n);
    return json_type(doc, i) == JSON_PRIMITIVE && n == 4 && memcmp(s, "null", 4) == 0;
}

bool json_eq(const JsonDoc *doc, int i, const char *s)
{
    if (json_type(doc, i) != JSON_STRING)
        return false;
    size_t n;
    const char *r = json_raw(doc, i, &n);
    return strlen(s) == n && memcmp(r, s, n) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_u16(const char *s, size_t n, size_t at, unsigned *out)
{
    if (at + 4 > n)
        return -1;
    unsigned v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = hexval(s[at + k]);
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

static int put_utf8(Buf *out, unsigned cp)
{
    char b[4];
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        cp = 0xFFFD;
    return buf_append(out, b, utf8_encode(cp, b));
}

int json_string(const JsonDoc *doc, int i, Buf *out, TqErr *err)
{
    if (json_type(doc, i) != JSON_STRING)
        return tq_err(err, TQ_EINVAL, "expected a json string");
    size_t n;
    const char *s = json_raw(doc, i, &n);
    size_t run = 0; /* start of a run of plain bytes, copied through utf8_sanitize */
    size_t k = 0;
    int rc = 0;
    while (k < n && rc == 0) {
        if (s[k] != '\\') {
            k++;
            continue;
        }
        rc = utf8_sanitize(out, s + run, k - run);
        if (rc)
            break;
        if (k + 1 >= n)
            return tq_err(err, TQ_EPARSE, "bad escape in json string");
        char e = s[k + 1];
        k += 2;
        switch (e) {
        case '"': rc = buf_putc(out, '"'); break;
        case '\\': rc = buf_putc(out, '\\'); break;
        case '/': rc = buf_putc(out, '/'); break;
        case 'b': rc = buf_putc(out, '\b'); break;
        case 'f': rc = buf_putc(out, '\f'); break;
        case 'n': rc = buf_putc(out, '\n'); break;
        case 'r': rc = buf_putc(out, '\r'); break;
        case 't': rc = buf_putc(out, '\t'); break;
        case 'u': {
            unsigned cp;
            if (read_u16(s, n, k, &cp))
                return tq_err(err, TQ_EPARSE, "bad \\u escape in json string");
            k += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (k + 1 < n && s[k] == '\\' && s[k + 1] == 'u' && read_u16(s, n, k + 2, &lo) == 0 &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    k += 6;
                } else {
                    cp = 0xFFFD; /* lone high surrogate */
                }
            }
            rc = put_utf8(out, cp);
            break;
        }
        default: return tq_err(err, TQ_EPARSE, "bad escape in json string");
        }
        run = k;
    }
    if (rc == 0)
        rc = utf8_sanitize(out, s + run, n - run);
    if (rc)
        return tq_err(err, rc, "json string too large");
    return 0;
}

char *json_strdup(const JsonDoc *doc, int i)
{
    Buf b;
    buf_init(&b, 0);
    if (json_string(doc, i, &b, NULL)) {
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b);
}

int json_int64(const JsonDoc *doc, int i, int64_t *out)
{
    JsonType t = json_type(doc, i);
    if (t != JSON_PRIMITIVE && t != JSON_STRING)
        return TQ_EINVAL;
    size_t n;
    const char *s = json_raw(doc, i, &n);
    char tmp[32];
    if (n == 0 || n >= sizeof tmp)
        return TQ_EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end != '\0')
        return TQ_EINVAL;
    *out = (int64_t)v;
    return 0;
}

int json_double(const JsonDoc *doc, int i, double *out)
{
    if (json_type(doc, i) != JSON_PRIMITIVE)
        return TQ_EINVAL;
    size_t n;
    const char *s = json_raw(doc, i, &n);
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return TQ_EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (!((tmp[0] >= '0' && tmp[0] <= '9') || tmp[0] == '-'))
        return TQ_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (errno || *end != '\0')
        return TQ_EINVAL;
    *out = v;
    return 0;
}

int json_bool(const JsonDoc *doc, int i, bool *out)
{
    size_t n;
    const char *s = json_raw(doc, i, &n);
    if (json_type(doc, i) != JSON_PRIMITIVE)
        return TQ_EINVAL;
    if (n == 4 && memcmp(s, "true", 4) == 0)
        *out = true;
    else if (n == 5 && memcmp(s, "false", 5) == 0)
        *out = false;
    else
        return TQ_EINVAL;
    return 0;
}

int json_put_string(Buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    int rc = buf_reserve(out, n + 2);
    if (rc)
        return rc;
    rc = buf_putc(out, '"');
    size_t k = 0, run = 0;
    while (k < n && rc == 0) {
        unsigned char c = u[k];
        const char *esc = NULL;
        char ubuf[7];
        size_t l = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == 0) esc = "\\ufffd";
        else if (c < 0x20 || c == 0x7f) {
            ubuf[0] = '\\'; ubuf[1] = 'u'; ubuf[2] = '0'; ubuf[3] = '0';
            ubuf[4] = hex[c >> 4]; ubuf[5] = hex[c & 15]; ubuf[6] = '\0';
            esc = ubuf;
        } else if (c >= 0x80) {
            uint32_t cp;
            l = utf8_decode(u + k, n - k, &cp);
            if (!l) {
                esc = "\\ufffd";
                l = 1;
            }
        }
        if (esc) {
            rc = buf_append(out, s + run, k - run);
            if (!rc)
                rc = buf_puts(out, esc);
            k += l;
            run = k;
        } else {
            k += l;
        }
    }
    if (!rc)
        rc = buf_append(out, s + run, n - run);
    if (!rc)
        rc = buf_putc(out, '"');
    return rc;
}

int json_put_cstr(Buf *out, const char *s)
{
    if (!s)
        return buf_puts(out, "null");
    return json_put_string(out, s, strlen(s));
}
