/* reportjson.h — reading `tierq report --format json` in tests: values are compared as the exact
 * text in the document (numbers as PostgreSQL wrote them), objects checked for their keys in order. */
#ifndef TQ_REPORTJSON_H
#define TQ_REPORTJSON_H

#include "testdb.h"

#include "json.h"

static char jv_bufs[16][256];
static int jv_next;

/* Raw text of obj[key]: the number or literal as written, a string without quotes, or
 * "<missing>". */
static inline const char *jv(const JsonDoc *d, int obj, const char *key)
{
    int i = obj >= 0 ? json_get(d, obj, key) : -1;
    if (i < 0)
        return "<missing>";
    size_t n = 0;
    const char *raw = json_raw(d, i, &n);
    char *out = jv_bufs[jv_next++ % 16];
    snprintf(out, sizeof jv_bufs[0], "%.*s", (int)n, raw);
    return out;
}

static inline int jobj(const JsonDoc *d, int obj, const char *key)
{
    int i = obj >= 0 ? json_get(d, obj, key) : -1;
    return i >= 0 && (json_type(d, i) == JSON_OBJECT || json_type(d, i) == JSON_ARRAY) ? i : -1;
}

/* The element of array arr whose field equals name, or -1. */
static inline int jfind(const JsonDoc *d, int arr, const char *field, const char *name)
{
    for (int k = 0; arr >= 0 && k < json_size(d, arr); k++) {
        int el = json_at(d, arr, k);
        int v = json_get(d, el, field);
        if (v >= 0 && json_type(d, v) == JSON_STRING && json_eq(d, v, name))
            return el;
    }
    return -1;
}

/* obj has exactly these keys, in this order. */
static inline void check_keys(const JsonDoc *d, int obj, const char *const *keys, int n, const char *what)
{
    CHECKF(obj >= 0 && json_type(d, obj) == JSON_OBJECT, "%s is not an object", what);
    if (obj < 0 || json_type(d, obj) != JSON_OBJECT)
        return;
    CHECKF(json_size(d, obj) == n, "%s has %d keys, want %d", what, json_size(d, obj), n);
    int k = obj + 1;
    for (int i = 0; i < n && i < json_size(d, obj); i++) {
        size_t len = 0;
        const char *raw = json_raw(d, k, &len);
        CHECKF(json_eq(d, k, keys[i]), "%s key %d is \"%.*s\", want \"%s\"", what, i, (int)len, raw, keys[i]);
        k = json_skip(d, k + 1);
    }
}

#endif
