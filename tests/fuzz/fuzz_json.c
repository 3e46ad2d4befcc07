/* fuzz_json.c — common/json.c: json_parse, and every accessor on every token.
 *
 * Input: the first byte picks the token cap (the default, or a small one so the growth and
 * TQ_ELIMIT paths run), the rest is the document. Every token then goes through json_type,
 * json_size, json_raw, json_skip, json_get, json_at, json_eq, json_is_null, json_string (into a
 * capped buffer too), json_strdup, json_int64, json_double and json_bool. Checked contracts
 * (json.h): a token's subtree ends after it and inside the document; an object's keys walked with
 * json_skip are as many as its size says; decoded strings are valid UTF-8 without NUL; and what
 * json_put_string writes for any bytes is one valid JSON string. */
#include "fuzz.h"

#include "json.h"
#include "utf8.h"

static void walk(const JsonDoc *d)
{
    Buf out, small;
    buf_init(&out, 0);
    buf_init(&small, 16);
    for (int i = 0; i < d->ntok; i++) {
        JsonType t = json_type(d, i);
        FUZZ_ASSERT(t != JSON_UNDEFINED, "every token has a type");
        int next = json_skip(d, i);
        FUZZ_ASSERT(next > i && next <= d->ntok, "json_skip moves forward inside the document");
        size_t rn;
        const char *raw = json_raw(d, i, &rn);
        FUZZ_ASSERT(raw >= d->js && raw + rn <= d->js + d->len, "raw bytes inside the document");
        int size = json_size(d, i);
        if (t == JSON_OBJECT) {
            int k = i + 1, keys = 0;
            for (int c = 0; c < size && k < next; c++, k = json_skip(d, k + 1)) {
                FUZZ_ASSERT(json_type(d, k) == JSON_STRING, "object keys are strings");
                keys++;
            }
            FUZZ_ASSERT(keys == size && k == next, "an object's members fill its subtree");
            (void)json_get(d, i, "content");
            (void)json_get(d, i, "");
        } else if (t == JSON_ARRAY) {
            for (int c = 0; c < size; c++)
                FUZZ_ASSERT(json_at(d, i, c) > i && json_at(d, i, c) < next, "elements inside the array");
            FUZZ_ASSERT(json_at(d, i, size) == -1 && json_at(d, i, -1) == -1, "no element past the end");
        } else {
            FUZZ_ASSERT(next == i + 1, "a scalar has no children");
        }
        buf_reset(&out);
        if (json_string(d, i, &out, NULL) == 0) {
            FUZZ_ASSERT(t == JSON_STRING, "only strings decode");
            FUZZ_ASSERT(out.len == 0 || utf8_valid(out.data, out.len), "decoded strings are valid UTF-8 without NUL");
            char *dup = json_strdup(d, i);
            FUZZ_ASSERT(dup && strlen(dup) == out.len && memcmp(dup, out.data ? out.data : "", out.len) == 0,
                        "json_strdup decodes as json_string does");
            free(dup);
            FUZZ_ASSERT(json_eq(d, i, "") == (rn == 0), "json_eq compares raw bytes");
        }
        buf_reset(&small);
        (void)json_string(d, i, &small, NULL);
        FUZZ_ASSERT(small.len <= 16, "the cap holds");
        int64_t iv;
        double dv;
        bool bv;
        (void)json_int64(d, i, &iv);
        (void)json_double(d, i, &dv);
        (void)json_bool(d, i, &bv);
        (void)json_is_null(d, i);
    }
    FUZZ_ASSERT(json_type(d, -1) == JSON_UNDEFINED && json_type(d, d->ntok) == JSON_UNDEFINED, "out of range");
    FUZZ_ASSERT(json_skip(d, 0) == d->ntok, "the root's subtree is the whole document");
    buf_free(&out);
    buf_free(&small);
}

/* Whatever bytes go in, json_put_string writes one JSON string that json_parse accepts. */
static void round_trip(const char *s, size_t n)
{
    Buf b;
    buf_init(&b, 0);
    FUZZ_ASSERT(json_put_string(&b, s, n) == 0, "json_put_string");
    JsonDoc d;
    TqErr err;
    FUZZ_ASSERT(json_parse(&d, b.data, b.len, 0, &err) == 0, "json_put_string writes valid JSON");
    FUZZ_ASSERT(d.ntok == 1 && json_type(&d, 0) == JSON_STRING, "one string");
    Buf dec;
    buf_init(&dec, 0);
    FUZZ_ASSERT(json_string(&d, 0, &dec, NULL) == 0, "its string decodes");
    FUZZ_ASSERT(dec.len == 0 || utf8_valid(dec.data, dec.len), "and is valid UTF-8 without NUL");
    if (utf8_valid(s, n))
        FUZZ_ASSERT(dec.len == n && memcmp(dec.data ? dec.data : "", s, n) == 0, "valid text comes back unchanged");
    buf_free(&dec);
    json_doc_free(&d);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const int caps[] = {0, 1, 2, 63, 64, 65, 257};
    int cap = caps[data[0] % (sizeof caps / sizeof caps[0])];
    const char *js = (const char *)data + 1;
    size_t len = size - 1;

    JsonDoc d;
    TqErr err = {0};
    int rc = json_parse(&d, js, len, cap, &err);
    if (rc == 0) {
        FUZZ_ASSERT(d.ntok >= 1, "a parsed document has a root");
        FUZZ_ASSERT(cap == 0 || d.ntok <= cap, "the token cap holds");
        walk(&d);
    } else {
        FUZZ_ASSERT(rc == TQ_EPARSE || rc == TQ_ELIMIT, "TQ_EPARSE or TQ_ELIMIT");
        FUZZ_ASSERT(d.tok == NULL && d.ntok == 0, "a failed parse leaves the doc empty");
        FUZZ_ASSERT(err.msg[0] != '\0', "a failure says why");
    }
    json_doc_free(&d);
    round_trip(js, len);
    return 0;
}
