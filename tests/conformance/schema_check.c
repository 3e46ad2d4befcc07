/* schema_check.c — tierq-schema-check: validates JSON documents against a JSON Schema subset.
 *
 * Written for tests/conformance/chat_request.schema.json (the part of OpenAI's
 * CreateChatCompletionRequest that tierq can send), usable with any schema that keeps to the subset:
 * type (a name or a list), properties, required, additionalProperties (boolean or schema), items,
 * enum, const, minimum, maximum, minLength, maxLength, minItems, maxItems, anyOf, oneOf, allOf, and
 * $ref to a JSON pointer inside the same file (#/$defs/X, #/definitions/X). Annotations ($comment,
 * description, title, default, deprecated, examples, $schema, $id) are ignored. Any other keyword
 * makes the schema unusable (exit 2) rather than silently unchecked.
 *
 * Input: one JSON document per line (blank lines skipped), from files or stdin; with --record-lines
 * each line is a tierq-fixture record and its "body" string is the document; with --whole-file each
 * file is one document. Beyond the schema,
 * a duplicated object key is a violation (which value a server keeps is not defined).
 *
 * Output: one line per violation, "FILE:LINE: $.json.path: message", or "ok N" when all N documents
 * are valid. Exit status 0 valid, 1 any violation, 2 usage, unreadable input or unusable schema. */
#include "buf.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SC_MAX_DEPTH 200
#define SC_MAX_EXTRA 64
#define SC_MAX_INPUT ((size_t)1 << 30)

typedef struct ScOptions {
    const char *schema_path;
    const char *extra[SC_MAX_EXTRA]; /* top-level keys accepted beyond additionalProperties */
    int nextra;
    bool record_lines;
    bool whole_file; /* each input is one document, which may span lines */
} ScOptions;

/* Violations found while validating one value: their count and "path: message" lines. */
typedef struct ScErrs {
    int n;
    Buf text;
} ScErrs;

typedef struct ScCtx {
    const JsonDoc *sch; /* the schema document */
    const JsonDoc *doc; /* the instance document */
    const ScOptions *opt;
    int depth;
} ScCtx;

static void errs_init(ScErrs *e)
{
    e->n = 0;
    buf_init(&e->text, (size_t)16 << 20);
}

static void errs_free(ScErrs *e) { buf_free(&e->text); }

static void errs_add(ScErrs *e, const Buf *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void errs_add(ScErrs *e, const Buf *path, const char *fmt, ...)
{
    e->n++;
    va_list ap;
    va_start(ap, fmt);
    /* A full buffer only loses message text, never the count. */
    if (!buf_append(&e->text, path->data ? path->data : "$", path->len ? path->len : 1) &&
        !buf_puts(&e->text, ": ") && !buf_vprintf(&e->text, fmt, ap))
        buf_putc(&e->text, '\n');
    va_end(ap);
}

/* The first line of e's text (without its newline), for summaries. */
static void errs_first(const ScErrs *e, char *out, size_t cap)
{
    const char *t = e->text.data ? e->text.data : "";
    size_t n = strcspn(t, "\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, t, n);
    out[n] = '\0';
}

/* ---- JSON values ------------------------------------------------------------------------------------ */

typedef enum { V_NULL, V_BOOL, V_NUMBER, V_STRING, V_ARRAY, V_OBJECT, V_INVALID } ScKind;


static ScKind kind_of(const JsonDoc *d, int i)
{
    switch (json_type(d, i)) {
    case JSON_OBJECT: return V_OBJECT;
    case JSON_ARRAY: return V_ARRAY;
    case JSON_STRING: return V_STRING;
    case JSON_PRIMITIVE: break;
    default: return V_INVALID;
    }
    size_t n;
    const char *s = json_raw(d, i, &n);
    if (n == 4 && memcmp(s, "null", 4) == 0)
        return V_NULL;
    if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0))
        return V_BOOL;
    return json_number_text_ok(s, n) ? V_NUMBER : V_INVALID;
}

static const char *kind_name(const JsonDoc *d, int i)
{
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object", "invalid"};
    ScKind k = kind_of(d, i);
    if (k == V_NUMBER) {
        double x;
        if (json_double(d, i, &x) == 0 && isfinite(x) && floor(x) == x)
            return "integer";
    }
    return names[k];
}

static double number_of(const JsonDoc *d, int i)
{
    double x = NAN;
    if (json_double(d, i, &x))
        x = NAN;
    return x;
}

/* Decoded string value; out is reset first. Returns 0 or -1. */
static int string_of(const JsonDoc *d, int i, Buf *out)
{
    buf_reset(out);
    if (json_string(d, i, out, NULL))
        return -1;
    return buf_append(out, "", 0);
}

static bool strings_equal(const JsonDoc *a, int i, const JsonDoc *b, int j)
{
    Buf x, y;
    buf_init(&x, 0);
    buf_init(&y, 0);
    bool eq = !string_of(a, i, &x) && !string_of(b, j, &y) && x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    buf_free(&x);
    buf_free(&y);
    return eq;
}

/* Index of the value of key in object obj (decoded comparison), or -1. */
static int object_get(const JsonDoc *d, int obj, const char *key)
{
    if (json_type(d, obj) != JSON_OBJECT)
        return -1;
    Buf k;
    buf_init(&k, 0);
    int n = json_size(d, obj), at = obj + 1, found = -1;
    size_t kl = strlen(key);
    for (int c = 0; c < n && found < 0; c++, at = json_skip(d, at + 1))
        if (!string_of(d, at, &k) && k.len == kl && memcmp(k.data, key, kl) == 0)
            found = at + 1;
    buf_free(&k);
    return found;
}

static bool values_equal(const JsonDoc *a, int i, const JsonDoc *b, int j);

static bool objects_equal(const JsonDoc *a, int i, const JsonDoc *b, int j)
{
    int n = json_size(a, i);
    if (n != json_size(b, j))
        return false;
    Buf k;
    buf_init(&k, 0);
    bool eq = true;
    int at = i + 1;
    for (int c = 0; c < n && eq; c++, at = json_skip(a, at + 1)) {
        int other = string_of(a, at, &k) ? -1 : object_get(b, j, k.data);
        eq = other >= 0 && values_equal(a, at + 1, b, other);
    }
    buf_free(&k);
    return eq;
}

static bool values_equal(const JsonDoc *a, int i, const JsonDoc *b, int j)
{
    ScKind ka = kind_of(a, i), kb = kind_of(b, j);
    if (ka != kb)
        return false;
    switch (ka) {
    case V_NULL: return true;
    case V_BOOL: {
        size_t n, m;
        const char *x = json_raw(a, i, &n), *y = json_raw(b, j, &m);
        return n == m && memcmp(x, y, n) == 0;
    }
    case V_NUMBER: return number_of(a, i) == number_of(b, j);
    case V_STRING: return strings_equal(a, i, b, j);
    case V_ARRAY: {
        int n = json_size(a, i);
        if (n != json_size(b, j))
            return false;
        int x = i + 1, y = j + 1;
        for (int c = 0; c < n; c++, x = json_skip(a, x), y = json_skip(b, y))
            if (!values_equal(a, x, b, y))
                return false;
        return true;
    }
    case V_OBJECT: return objects_equal(a, i, b, j);
    default: return false;
    }
}

/* A short rendering of a value for messages: raw text, cut at 60 bytes on a UTF-8 boundary. */
static void put_value(Buf *out, const JsonDoc *d, int i)
{
    size_t n;
    const char *s = json_raw(d, i, &n);
    bool str = json_type(d, i) == JSON_STRING;
    size_t m = n > 60 ? 60 : n;
    while (m < n && m > 0 && ((unsigned char)s[m] & 0xC0) == 0x80)
        m--;
    if (str)
        buf_putc(out, '"');
    buf_append(out, s, m);
    if (str)
        buf_putc(out, '"');
    if (m < n)
        buf_puts(out, "...");
}

/* ---- paths ------------------------------------------------------------------------------------------- */

static bool is_ident(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$'))
            return false;
    }
    return true;
}

static void path_key(Buf *path, const char *key, size_t n)
{
    if (is_ident(key, n)) {
        buf_putc(path, '.');
        buf_append(path, key, n);
    } else {
        buf_putc(path, '[');
        json_put_string(path, key, n);
        buf_putc(path, ']');
    }
}

static void path_restore(Buf *path, size_t len)
{
    path->len = len;
    if (path->data)
        path->data[len] = '\0';
}

/* ---- schema lookup ------------------------------------------------------------------------------------ */

/* Resolve "#", "#/a/b" (JSON pointer, ~0 and ~1 escapes) in the schema document; -1 when it does not. */
static int resolve_ref(const JsonDoc *sch, const char *ref)
{
    if (ref[0] != '#')
        return -1;
    const char *p = ref + 1;
    int at = 0;
    Buf seg;
    buf_init(&seg, 0);
    while (*p == '/' && at >= 0) {
        p++;
        buf_reset(&seg);
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '1') {
                buf_putc(&seg, '/');
                p += 2;
            } else if (p[0] == '~' && p[1] == '0') {
                buf_putc(&seg, '~');
                p += 2;
            } else {
                buf_putc(&seg, *p++);
            }
        }
        buf_append(&seg, "", 0);
        if (json_type(sch, at) == JSON_ARRAY) {
            char *end;
            long idx = strtol(seg.data, &end, 10);
            at = (*end || seg.len == 0) ? -1 : json_at(sch, at, (int)idx);
        } else {
            at = object_get(sch, at, seg.data);
        }
    }
    buf_free(&seg);
    return *p ? -1 : at;
}

/* ---- validation ---------------------------------------------------------------------------------------- */

static void validate(ScCtx *x, int s, int v, Buf *path, ScErrs *e);

static bool type_matches(const JsonDoc *d, int v, const JsonDoc *sch, int t)
{
    ScKind k = kind_of(d, v);
    const char *want = "";
    size_t n;
    want = json_raw(sch, t, &n);
    if (n == 4 && memcmp(want, "null", 4) == 0)
        return k == V_NULL;
    if (n == 7 && memcmp(want, "boolean", 7) == 0)
        return k == V_BOOL;
    if (n == 6 && memcmp(want, "object", 6) == 0)
        return k == V_OBJECT;
    if (n == 5 && memcmp(want, "array", 5) == 0)
        return k == V_ARRAY;
    if (n == 6 && memcmp(want, "string", 6) == 0)
        return k == V_STRING;
    if (n == 6 && memcmp(want, "number", 6) == 0)
        return k == V_NUMBER;
    if (n == 7 && memcmp(want, "integer", 7) == 0)
        return k == V_NUMBER && strcmp(kind_name(d, v), "integer") == 0;
    return false;
}

static void check_type(ScCtx *x, int t, int v, Buf *path, ScErrs *e)
{
    bool ok = false;
    Buf names;
    buf_init(&names, 0);
    if (json_type(x->sch, t) == JSON_STRING) {
        ok = type_matches(x->doc, v, x->sch, t);
        put_value(&names, x->sch, t);
    } else {
        int n = json_size(x->sch, t), at = t + 1;
        for (int c = 0; c < n; c++, at = json_skip(x->sch, at)) {
            ok = ok || type_matches(x->doc, v, x->sch, at);
            if (c)
                buf_puts(&names, " or ");
            put_value(&names, x->sch, at);
        }
    }
    if (!ok)
        errs_add(e, path, "expected %s, got %s", names.data ? names.data : "?", kind_name(x->doc, v));
    buf_free(&names);
}

static void check_enum(ScCtx *x, int en, int v, Buf *path, ScErrs *e)
{
    int n = json_size(x->sch, en), at = en + 1;
    for (int c = 0; c < n; c++, at = json_skip(x->sch, at))
        if (values_equal(x->sch, at, x->doc, v))
            return;
    Buf m;
    buf_init(&m, 0);
    put_value(&m, x->doc, v);
    buf_puts(&m, " is not one of ");
    at = en + 1;
    for (int c = 0; c < n && c < 8; c++, at = json_skip(x->sch, at)) {
        if (c)
            buf_puts(&m, ", ");
        put_value(&m, x->sch, at);
    }
    if (n > 8)
        buf_puts(&m, ", ...");
    errs_add(e, path, "%s", m.data ? m.data : "value not allowed");
    buf_free(&m);
}

static void check_number(ScCtx *x, int s, int v, Buf *path, ScErrs *e)
{
    double val = number_of(x->doc, v);
    int mn = json_get(x->sch, s, "minimum"), mx = json_get(x->sch, s, "maximum");
    size_t n;
    const char *raw = json_raw(x->doc, v, &n);
    if (mn >= 0 && !(val >= number_of(x->sch, mn))) {
        size_t ln;
        const char *lim = json_raw(x->sch, mn, &ln);
        errs_add(e, path, "%.*s is below the minimum %.*s", (int)n, raw, (int)ln, lim);
    }
    if (mx >= 0 && !(val <= number_of(x->sch, mx))) {
        size_t ln;
        const char *lim = json_raw(x->sch, mx, &ln);
        errs_add(e, path, "%.*s is above the maximum %.*s", (int)n, raw, (int)ln, lim);
    }
}

/* Unicode code points in a valid UTF-8 string. */
static size_t utf8_length(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            cps++;
    return cps;
}

static void check_string(ScCtx *x, int s, int v, Buf *path, ScErrs *e)
{
    int mn = json_get(x->sch, s, "minLength"), mx = json_get(x->sch, s, "maxLength");
    if (mn < 0 && mx < 0)
        return;
    Buf str;
    buf_init(&str, 0);
    if (string_of(x->doc, v, &str)) {
        errs_add(e, path, "string cannot be decoded");
        buf_free(&str);
        return;
    }
    double len = (double)utf8_length(str.data, str.len);
    if (mn >= 0 && len < number_of(x->sch, mn))
        errs_add(e, path, "string has %.0f characters, at least %.0f required", len, number_of(x->sch, mn));
    if (mx >= 0 && len > number_of(x->sch, mx))
        errs_add(e, path, "string has %.0f characters, at most %.0f allowed", len, number_of(x->sch, mx));
    buf_free(&str);
}

static void check_array(ScCtx *x, int s, int v, Buf *path, ScErrs *e)
{
    int n = json_size(x->doc, v);
    int mn = json_get(x->sch, s, "minItems"), mx = json_get(x->sch, s, "maxItems");
    if (mn >= 0 && (double)n < number_of(x->sch, mn))
        errs_add(e, path, "array has %d items, at least %.0f required", n, number_of(x->sch, mn));
    if (mx >= 0 && (double)n > number_of(x->sch, mx))
        errs_add(e, path, "array has %d items, at most %.0f allowed", n, number_of(x->sch, mx));
    int items = json_get(x->sch, s, "items");
    if (items < 0)
        return;
    size_t base = path->len;
    int at = v + 1;
    for (int c = 0; c < n; c++, at = json_skip(x->doc, at)) {
        buf_printf(path, "[%d]", c);
        validate(x, items, at, path, e);
        path_restore(path, base);
    }
}

static bool extra_allowed(const ScCtx *x, const Buf *path, const char *key)
{
    if (path->len > 1) /* only at the top level ("$") */
        return false;
    for (int i = 0; i < x->opt->nextra; i++)
        if (strcmp(x->opt->extra[i], key) == 0)
            return true;
    return false;
}

static void check_object(ScCtx *x, int s, int v, Buf *path, ScErrs *e)
{
    int props = json_get(x->sch, s, "properties");
    int addl = json_get(x->sch, s, "additionalProperties");
    int req = json_get(x->sch, s, "required");
    Buf key;
    buf_init(&key, 0);
    size_t base = path->len;
    int n = json_size(x->doc, v), at = v + 1;
    for (int c = 0; c < n; c++, at = json_skip(x->doc, at + 1)) {
        if (string_of(x->doc, at, &key)) {
            errs_add(e, path, "property name cannot be decoded");
            continue;
        }
        /* A key seen earlier in this object is a duplicate. */
        int dup = 0, at2 = v + 1;
        Buf k2;
        buf_init(&k2, 0);
        for (int c2 = 0; c2 < c && !dup; c2++, at2 = json_skip(x->doc, at2 + 1))
            dup = !string_of(x->doc, at2, &k2) && k2.len == key.len && memcmp(k2.data, key.data, key.len) == 0;
        buf_free(&k2);
        path_key(path, key.data, key.len);
        if (dup)
            errs_add(e, path, "duplicate property");
        int ps = props >= 0 ? object_get(x->sch, props, key.data) : -1;
        if (ps >= 0) {
            validate(x, ps, at + 1, path, e);
        } else if (addl >= 0) {
            path_restore(path, base);
            bool allowed = extra_allowed(x, path, key.data);
            path_key(path, key.data, key.len);
            if (allowed) {
                /* an --allow-extra key: any value */
            } else if (kind_of(x->sch, addl) == V_BOOL) {
                size_t bl;
                const char *b = json_raw(x->sch, addl, &bl);
                if (bl == 5 && memcmp(b, "false", 5) == 0)
                    errs_add(e, path, "property is not allowed here");
            } else {
                validate(x, addl, at + 1, path, e);
            }
        }
        path_restore(path, base);
    }
    if (req >= 0) {
        int m = json_size(x->sch, req), r = req + 1;
        for (int c = 0; c < m; c++, r = json_skip(x->sch, r))
            if (!string_of(x->sch, r, &key) && object_get(x->doc, v, key.data) < 0)
                errs_add(e, path, "missing required property \"%s\"", key.data);
    }
    buf_free(&key);
}

/* Whether the value has the type schema s (after its $ref) names; true when s names none. */
static bool branch_type_ok(const ScCtx *x, int s, int v)
{
    for (int hops = 0; hops < 8; hops++) {
        int ref = json_get(x->sch, s, "$ref");
        if (ref < 0)
            break;
        Buf r;
        buf_init(&r, 0);
        int target = string_of(x->sch, ref, &r) ? -1 : resolve_ref(x->sch, r.data);
        buf_free(&r);
        if (target < 0)
            break;
        s = target;
    }
    int t = json_get(x->sch, s, "type");
    if (t < 0)
        return true;
    if (json_type(x->sch, t) == JSON_STRING)
        return type_matches(x->doc, v, x->sch, t);
    int n = json_size(x->sch, t), at = t + 1;
    for (int c = 0; c < n; c++, at = json_skip(x->sch, at))
        if (type_matches(x->doc, v, x->sch, at))
            return true;
    return false;
}

/* anyOf / oneOf / allOf over the array of schemas at list. */
static void check_combinator(ScCtx *x, const char *which, int list, int v, Buf *path, ScErrs *e)
{
    int n = json_size(x->sch, list), at = list + 1, matched = 0, best_n = -1;
    char best[600] = "";
    for (int c = 0; c < n; c++, at = json_skip(x->sch, at)) {
        ScErrs sub;
        errs_init(&sub);
        validate(x, at, v, path, &sub);
        if (sub.n == 0) {
            matched++;
        } else if (which[1] == 'l') { /* allOf: every failure counts */
            e->n += sub.n;
            if (sub.text.len)
                buf_append(&e->text, sub.text.data, sub.text.len);
        } else {
            /* Closest: a branch of the value's own type beats one that fails on type, then fewest errors. */
            int score = sub.n + (branch_type_ok(x, at, v) ? 0 : 1000);
            if (best_n < 0 || score < best_n) {
                best_n = score;
                errs_first(&sub, best, sizeof best);
            }
        }
        errs_free(&sub);
    }
    if (which[1] == 'l')
        return;
    if (matched == 0)
        errs_add(e, path, "matches none of the %d alternatives of %s; closest: %s", n, which, best);
    else if (which[0] == 'o' && matched > 1)
        errs_add(e, path, "matches %d alternatives of oneOf, exactly one allowed", matched);
}

static void validate(ScCtx *x, int s, int v, Buf *path, ScErrs *e)
{
    if (x->depth >= SC_MAX_DEPTH) {
        errs_add(e, path, "schema recursion deeper than %d", SC_MAX_DEPTH);
        return;
    }
    x->depth++;
    if (kind_of(x->sch, s) == V_BOOL) {
        size_t bl;
        const char *b = json_raw(x->sch, s, &bl);
        if (bl == 5 && memcmp(b, "false", 5) == 0)
            errs_add(e, path, "no value is allowed here");
        x->depth--;
        return;
    }
    int ref = json_get(x->sch, s, "$ref");
    if (ref >= 0) {
        Buf r;
        buf_init(&r, 0);
        int target = string_of(x->sch, ref, &r) ? -1 : resolve_ref(x->sch, r.data);
        buf_free(&r);
        if (target >= 0)
            validate(x, target, v, path, e);
        else
            errs_add(e, path, "unresolvable $ref in the schema");
    }
    int k;
    if ((k = json_get(x->sch, s, "type")) >= 0)
        check_type(x, k, v, path, e);
    if ((k = json_get(x->sch, s, "enum")) >= 0)
        check_enum(x, k, v, path, e);
    if ((k = json_get(x->sch, s, "const")) >= 0 && !values_equal(x->sch, k, x->doc, v)) {
        Buf m;
        buf_init(&m, 0);
        put_value(&m, x->sch, k);
        errs_add(e, path, "must be %s", m.data ? m.data : "?");
        buf_free(&m);
    }
    switch (kind_of(x->doc, v)) {
    case V_NUMBER: check_number(x, s, v, path, e); break;
    case V_STRING: check_string(x, s, v, path, e); break;
    case V_ARRAY: check_array(x, s, v, path, e); break;
    case V_OBJECT: check_object(x, s, v, path, e); break;
    case V_INVALID: errs_add(e, path, "not a JSON value"); break;
    default: break;
    }
    static const char *const combinators[] = {"anyOf", "oneOf", "allOf"};
    for (size_t c = 0; c < 3; c++)
        if ((k = json_get(x->sch, s, combinators[c])) >= 0)
            check_combinator(x, combinators[c], k, v, path, e);
    x->depth--;
}

/* ---- schema lint ------------------------------------------------------------------------------------------ */

static bool in_list(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}

static int lint_fail(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int lint_fail(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Check that every keyword under schema node s is one this program implements, that the values
 * have the shapes it relies on, and that every $ref resolves. Writes the first problem to msg. */
static int lint(const JsonDoc *sch, int s, Buf *path, char *msg, size_t cap)
{
    static const char *const annotations[] = {"$comment", "description", "title", "default", "deprecated",
                                              "examples", "$schema",     "$id",   "readOnly", "writeOnly"};
    static const char *const numeric[] = {"minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"};
    static const char *const maps[] = {"properties", "$defs", "definitions"};
    static const char *const lists[] = {"anyOf", "oneOf", "allOf"};
    ScKind sk = kind_of(sch, s);
    if (sk == V_BOOL)
        return 0;
    if (sk != V_OBJECT) {
        snprintf(msg, cap, "%s: a schema must be an object or a boolean", path->data ? path->data : "#");
        return -1;
    }
    Buf key;
    buf_init(&key, 0);
    size_t base = path->len;
    int rc = 0, n = json_size(sch, s), at = s + 1;
    for (int c = 0; c < n && !rc; c++, at = json_skip(sch, at + 1)) {
        int v = at + 1;
        string_of(sch, at, &key);
        buf_putc(path, '/');
        buf_puts(path, key.data ? key.data : "");
        const char *p = path->data;
        const char *k = key.data ? key.data : "";
        if (in_list(k, annotations, sizeof annotations / sizeof annotations[0]) || strncmp(k, "x-", 2) == 0) {
            /* ignored */
        } else if (in_list(k, numeric, sizeof numeric / sizeof numeric[0])) {
            if (kind_of(sch, v) != V_NUMBER)
                rc = lint_fail(msg, cap, "%s: must be a number", p);
        } else if (strcmp(k, "type") == 0) {
            bool ok = json_type(sch, v) == JSON_STRING || json_type(sch, v) == JSON_ARRAY;
            if (!ok)
                rc = lint_fail(msg, cap, "%s: must be a type name or a list of them", p);
        } else if (strcmp(k, "enum") == 0 || strcmp(k, "required") == 0) {
            if (json_type(sch, v) != JSON_ARRAY)
                rc = lint_fail(msg, cap, "%s: must be an array", p);
        } else if (strcmp(k, "const") == 0) {
            /* any value */
        } else if (strcmp(k, "$ref") == 0) {
            Buf r;
            buf_init(&r, 0);
            if (string_of(sch, v, &r) || resolve_ref(sch, r.data) < 0)
                rc = lint_fail(msg, cap, "%s: does not resolve inside this file", p);
            buf_free(&r);
        } else if (in_list(k, maps, sizeof maps / sizeof maps[0])) {
            if (json_type(sch, v) != JSON_OBJECT) {
                rc = lint_fail(msg, cap, "%s: must be an object of schemas", p);
            } else {
                int m = json_size(sch, v), a2 = v + 1;
                Buf sub;
                buf_init(&sub, 0);
                for (int c2 = 0; c2 < m && !rc; c2++, a2 = json_skip(sch, a2 + 1)) {
                    size_t b2 = path->len;
                    string_of(sch, a2, &sub);
                    buf_putc(path, '/');
                    buf_puts(path, sub.data ? sub.data : "");
                    rc = lint(sch, a2 + 1, path, msg, cap);
                    path_restore(path, b2);
                }
                buf_free(&sub);
            }
        } else if (in_list(k, lists, sizeof lists / sizeof lists[0])) {
            if (json_type(sch, v) != JSON_ARRAY || json_size(sch, v) == 0) {
                rc = lint_fail(msg, cap, "%s: must be a non-empty array of schemas", p);
            } else {
                int m = json_size(sch, v), a2 = v + 1;
                for (int c2 = 0; c2 < m && !rc; c2++, a2 = json_skip(sch, a2)) {
                    size_t b2 = path->len;
                    buf_printf(path, "/%d", c2);
                    rc = lint(sch, a2, path, msg, cap);
                    path_restore(path, b2);
                }
            }
        } else if (strcmp(k, "items") == 0 || strcmp(k, "additionalProperties") == 0) {
            rc = lint(sch, v, path, msg, cap);
        } else {
            rc = lint_fail(msg, cap, "%s: keyword \"%s\" is not implemented by tierq-schema-check", p, k);
        }
        path_restore(path, base);
    }
    buf_free(&key);
    return rc;
}

/* ---- input ------------------------------------------------------------------------------------------------- */

static int read_all(FILE *f, Buf *out)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(out, chunk, n))
            return -1;
    return ferror(f) ? -1 : buf_append(out, "", 0);
}

static int load_file(const char *path, Buf *out)
{
    buf_init(out, SC_MAX_INPUT);
    if (strcmp(path, "-") == 0)
        return read_all(stdin, out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = read_all(f, out);
    fclose(f);
    return rc;
}

/* Parse text as exactly one JSON document (nothing but whitespace around it). */
static int parse_one(JsonDoc *d, const char *text, size_t len, TqErr *err)
{
    if (json_parse(d, text, len, 0, err))
        return -1;
    size_t rn;
    const char *root = json_raw(d, 0, &rn);
    if (json_type(d, 0) == JSON_STRING) { /* raw excludes the quotes */
        root--;
        rn += 2;
    }
    const char *end = text + len;
    const char *after = root + rn;
    while (after < end && (*after == ' ' || *after == '\t' || *after == '\r' || *after == '\n'))
        after++;
    if (json_skip(d, 0) != d->ntok || after != end) {
        json_doc_free(d);
        return tq_err(err, TQ_EPARSE, "more than one json value on the line");
    }
    return 0;
}

/* Validate one line; prints its violations. Returns the number of violations. */
static int check_line(const ScOptions *opt, const JsonDoc *sch, const char *file, long lineno, const char *line,
                      size_t len)
{
    TqErr err = {0};
    JsonDoc rec, doc;
    Buf body;
    buf_init(&body, 0);
    const char *text = line;
    size_t tlen = len;
    int violations = 0;
    bool have_rec = false;
    if (opt->record_lines) {
        if (parse_one(&rec, line, len, &err)) {
            printf("%s:%ld: record is not json: %s\n", file, lineno, err.msg);
            buf_free(&body);
            return 1;
        }
        have_rec = true;
        int b = object_get(&rec, 0, "body");
        if (b < 0 || json_type(&rec, b) != JSON_STRING || string_of(&rec, b, &body)) {
            printf("%s:%ld: record has no \"body\" string\n", file, lineno);
            json_doc_free(&rec);
            buf_free(&body);
            return 1;
        }
        text = body.data;
        tlen = body.len;
    }
    if (parse_one(&doc, text, tlen, &err)) {
        printf("%s:%ld: $: not json: %s\n", file, lineno, err.msg);
        violations = 1;
    } else {
        ScCtx x = {.sch = sch, .doc = &doc, .opt = opt, .depth = 0};
        ScErrs e;
        errs_init(&e);
        Buf path;
        buf_init(&path, 0);
        buf_puts(&path, "$");
        validate(&x, 0, 0, &path, &e);
        violations = e.n;
        const char *t = e.text.data ? e.text.data : "";
        while (*t) {
            size_t l = strcspn(t, "\n");
            printf("%s:%ld: %.*s\n", file, lineno, (int)l, t);
            t += l + (t[l] ? 1 : 0);
        }
        if (e.n && !e.text.len)
            printf("%s:%ld: %d violations (messages lost: buffer full)\n", file, lineno, e.n);
        buf_free(&path);
        errs_free(&e);
        json_doc_free(&doc);
    }
    if (have_rec)
        json_doc_free(&rec);
    buf_free(&body);
    return violations;
}

static void usage(FILE *f)
{
    fputs("usage: tierq-schema-check [--schema FILE] [--allow-extra KEY]... [--record-lines | --whole-file] [FILE|-]...\n"
          "  Validates one JSON document per line (stdin when no FILE) against the schema\n"
          "  (default tests/conformance/chat_request.schema.json).\n"
          "  --allow-extra KEY   accept KEY at the top level of every document (repeatable)\n"
          "  --record-lines      each line is a tierq-fixture record; its \"body\" is the document\n"
          "  --whole-file        each FILE is one document (it may span lines)\n"
          "  Prints one line per violation or \"ok N\"; exit 0 valid, 1 violations, 2 usage or bad schema.\n",
          f);
}

int main(int argc, char **argv)
{
    ScOptions opt;
    memset(&opt, 0, sizeof opt);
    opt.schema_path = "tests/conformance/chat_request.schema.json";
    const char *files[256];
    int nfiles = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--record-lines") == 0) {
            opt.record_lines = true;
        } else if (strcmp(a, "--whole-file") == 0) {
            opt.whole_file = true;
        } else if ((strcmp(a, "--schema") == 0 || strcmp(a, "--allow-extra") == 0) && i + 1 < argc) {
            if (a[2] == 's') {
                opt.schema_path = argv[++i];
            } else if (opt.nextra < SC_MAX_EXTRA) {
                opt.extra[opt.nextra++] = argv[++i];
            } else {
                fprintf(stderr, "tierq-schema-check: too many --allow-extra keys\n");
                return 2;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tierq-schema-check: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else if (nfiles < (int)(sizeof files / sizeof files[0])) {
            files[nfiles++] = a;
        } else {
            fprintf(stderr, "tierq-schema-check: too many files\n");
            return 2;
        }
    }
    if (nfiles == 0)
        files[nfiles++] = "-";

    Buf schema_text;
    JsonDoc sch;
    TqErr err = {0};
    if (load_file(opt.schema_path, &schema_text)) {
        fprintf(stderr, "tierq-schema-check: cannot read schema %s: %s\n", opt.schema_path, strerror(errno));
        buf_free(&schema_text);
        return 2;
    }
    if (parse_one(&sch, schema_text.data, schema_text.len, &err)) {
        fprintf(stderr, "tierq-schema-check: schema %s: %s\n", opt.schema_path, err.msg);
        buf_free(&schema_text);
        return 2;
    }
    char msg[512];
    Buf lpath;
    buf_init(&lpath, 0);
    buf_puts(&lpath, "#");
    int lrc = lint(&sch, 0, &lpath, msg, sizeof msg);
    buf_free(&lpath);
    if (lrc) {
        fprintf(stderr, "tierq-schema-check: schema %s: %s\n", opt.schema_path, msg);
        json_doc_free(&sch);
        buf_free(&schema_text);
        return 2;
    }

    int status = 0;
    long docs = 0, bad_docs = 0, violations = 0;
    for (int f = 0; f < nfiles; f++) {
        Buf in;
        if (load_file(files[f], &in)) {
            fprintf(stderr, "tierq-schema-check: cannot read %s: %s\n", files[f], strerror(errno));
            buf_free(&in);
            status = 2;
            continue;
        }
        const char *p = in.data ? in.data : "";
        const char *end = p + in.len;
        long lineno = 0;
        if (opt.whole_file) {
            docs++;
            int v = check_line(&opt, &sch, files[f], 1, p, in.len);
            violations += v;
            bad_docs += v > 0;
            p = end;
        }
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            lineno++;
            size_t l = (size_t)(le - p);
            size_t k = 0;
            while (k < l && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
                k++;
            if (k < l) {
                docs++;
                int v = check_line(&opt, &sch, files[f], lineno, p, l);
                violations += v;
                bad_docs += v > 0;
            }
            p = nl ? nl + 1 : end;
        }
        buf_free(&in);
    }
    json_doc_free(&sch);
    buf_free(&schema_text);
    if (violations) {
        fprintf(stderr, "tierq-schema-check: %ld violations in %ld of %ld documents\n", violations, bad_docs, docs);
        return 1;
    }
    if (status == 0)
        printf("ok %ld\n", docs);
    return status;
}
