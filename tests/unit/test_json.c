#include "../check.h"
#include "json.h"

#include <stdbool.h>

#include <stdlib.h>

static void test_parse_and_get(void)
{
    const char *js = "{\"a\":1,\"b\":{\"c\":[1,2,{\"d\":\"x\\ny\"}]},\"e\":null,\"f\":true}";
    JsonDoc d;
    TqErr err = {0};
    CHECK_INT(json_parse(&d, js, strlen(js), 0, &err), 0);
    int b = json_get(&d, 0, "b");
    CHECK(json_type(&d, b) == JSON_OBJECT);
    int c = json_get(&d, b, "c");
    CHECK_INT(json_size(&d, c), 3);
    int third = json_at(&d, c, 2);
    char *s = json_strdup(&d, json_get(&d, third, "d"));
    CHECK_STR(s, "x\ny");
    free(s);
    CHECK(json_is_null(&d, json_get(&d, 0, "e")));
    bool f = false;
    CHECK_INT(json_bool(&d, json_get(&d, 0, "f"), &f), 0);
    CHECK(f);
    int64_t a = 0;
    CHECK_INT(json_int64(&d, json_get(&d, 0, "a"), &a), 0);
    CHECK_INT(a, 1);
    CHECK_INT(json_get(&d, 0, "zz"), -1);
    CHECK_INT(json_skip(&d, 0), d.ntok);
    json_doc_free(&d);
}

static void test_truncated_and_invalid(void)
{
    JsonDoc d;
    TqErr err = {0};
    const char *t = "{\"a\":[1,2";
    CHECK_INT(json_parse(&d, t, strlen(t), 0, &err), TQ_EPARSE);
    CHECK(strstr(err.msg, "truncated") != NULL);
    const char *bad = "{\"a\":tru}";
    CHECK(json_parse(&d, bad, strlen(bad), 0, &err) < 0);
    const char *two = "{} {}";
    CHECK(json_parse(&d, two, strlen(two), 0, &err) < 0);
}

/* RFC 8259 strictly: what jsmn alone lets through is refused, what is valid still parses. */
static void test_strict_syntax_table(void)
{
    static const struct {
        const char *text;
        bool ok;
    } rows[] = {
        {"{\"a\": 1, \"b\": [true, false, null, -0.5e+3, \"x\\u00e9\"]}", true},
        {" [ ] ", true},
        {"\"just a string\"", true},
        {"{\"a\": 1 \"b\": 2}", false},   /* missing comma */
        {"{\"a\": 1,, \"b\": 2}", false}, /* doubled comma */
        {"{\"a\": 1,}", false},            /* trailing comma */
        {"[1, 2,]", false},
        {"[1 2]", false},
        {"{\"a\" 1}", false},              /* missing colon */
        {"{1: 2}", false},                  /* key not a string */
        {"{\"a\": 01}", false},             /* leading zero */
        {"{\"a\": \"\\q\"}", false},        /* bad escape */
        {"{\"a\": \"tab\there\"}", false},   /* raw control character */
        {"{\"a\": 1},", false},            /* something after the document */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        JsonDoc d;
        TqErr err = {0};
        int rc = json_parse(&d, rows[i].text, strlen(rows[i].text), 0, &err);
        CHECKF((rc == 0) == rows[i].ok, "%s: rc %d (%s)", rows[i].text, rc, err.msg);
        if (rc == 0)
            json_doc_free(&d);
    }
}

static void test_token_cap(void)
{
    Buf b;
    buf_init(&b, 0);
    buf_putc(&b, '[');
    for (int i = 0; i < 5000; i++)
        buf_puts(&b, i ? ",1" : "1");
    buf_putc(&b, ']');
    JsonDoc d;
    TqErr err = {0};
    CHECK_INT(json_parse(&d, b.data, b.len, 100, &err), TQ_ELIMIT);
    CHECK_INT(json_parse(&d, b.data, b.len, 0, &err), 0);
    CHECK_INT(json_size(&d, 0), 5000);
    json_doc_free(&d);
    buf_free(&b);
}

static void test_unicode_escapes(void)
{
    /* surrogate pair, NUL escape (replaced), lone surrogate (replaced) */
    const char *js = "[\"\\ud83d\\ude00\", \"a\\u0000b\", \"\\ud800x\", \"\\u00e9\"]";
    JsonDoc d;
    CHECK_INT(json_parse(&d, js, strlen(js), 0, NULL), 0);
    char *s0 = json_strdup(&d, json_at(&d, 0, 0));
    char *s1 = json_strdup(&d, json_at(&d, 0, 1));
    char *s2 = json_strdup(&d, json_at(&d, 0, 2));
    char *s3 = json_strdup(&d, json_at(&d, 0, 3));
    CHECK_STR(s0, "\xF0\x9F\x98\x80");
    CHECK_STR(s1, "a\xEF\xBF\xBD" "b");
    CHECK_STR(s2, "\xEF\xBF\xBDx");
    CHECK_STR(s3, "\xC3\xA9");
    free(s0); free(s1); free(s2); free(s3);
    json_doc_free(&d);
}

static void test_put_string_escapes_everything(void)
{
    const char in[] = "q\"b\\n\n\t\x01\x7f" "\xff" "ok\xC3\xA9";
    Buf b;
    buf_init(&b, 0);
    CHECK_INT(json_put_string(&b, in, sizeof in - 1), 0);
    CHECK_STR(b.data, "\"q\\\"b\\\\n\\n\\t\\u0001\\u007f\\ufffdok\xC3\xA9\"");
    /* and a NUL inside the input never reaches the output raw */
    buf_reset(&b);
    CHECK_INT(json_put_string(&b, "a\0b", 3), 0);
    CHECK_STR(b.data, "\"a\\ufffdb\"");
    /* round trip through the parser */
    JsonDoc d;
    CHECK_INT(json_parse(&d, b.data, b.len, 0, NULL), 0);
    char *s = json_strdup(&d, 0);
    CHECK_STR(s, "a\xEF\xBF\xBD" "b");
    free(s);
    json_doc_free(&d);
    buf_free(&b);
}

static void test_utf8_sanitize(void)
{
    Buf b;
    buf_init(&b, 0);
    CHECK_INT(utf8_sanitize(&b, "a\xC0\xAFz\xED\xA0\x80", 7), 0);
    CHECK(utf8_valid(b.data, b.len));
    CHECK(!utf8_valid("\xC0\xAF", 2));
    CHECK(utf8_valid("\xE2\x82\xAC", 3));
    buf_free(&b);
}

static void test_buf_cap(void)
{
    Buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "12345678"), 0);
    CHECK_INT(buf_putc(&b, '9'), TQ_ELIMIT);
    CHECK_INT((long long)b.len, 8);
    buf_free(&b);
}

int main(void)
{
    RUN(test_parse_and_get);
    RUN(test_truncated_and_invalid);
    RUN(test_strict_syntax_table);
    RUN(test_token_cap);
    RUN(test_unicode_escapes);
    RUN(test_put_string_escapes_everything);
    RUN(test_utf8_sanitize);
    RUN(test_buf_cap);
    return check_done();
}
