/* fuzz_template.c — "{name}" placeholders (common/template.c) in any text.
 *
 * Input: the first byte picks the output cap, the rest is the template (a system prompt or an
 * extra_body string). Values come from a fixed table, as a job's params would fill them; a name not
 * in it is an unknown placeholder (TQ_EINVAL). The same text also goes through template_each and
 * template_has. Checked contracts (template.h): 0, TQ_EINVAL or TQ_ELIMIT; on failure the buffer is
 * back to its length before the call; on success the value callback ran once per placeholder that
 * template_each reports, a text without "{" comes out unchanged, and values are not expanded again. */
#include "fuzz.h"

#include "template.h"

static char long_value[600];

typedef struct Lookup {
    int calls;
    int unknown_ok; /* 1: every well-formed name has a value */
} Lookup;

static const char *value_of(const char *name, size_t len, void *ud)
{
    static const struct {
        const char *name, *value;
    } table[] = {
        {"target_language", "Fran\xc3\xa7" "ais"},
        {"labels", "billing, bug, other"},
        {"name", "{name}"}, /* a value that looks like a placeholder stays as it is */
        {"empty", ""},
        {"braces", "{{x}} }{"},
    };
    Lookup *lk = ud;
    lk->calls++;
    FUZZ_ASSERT(len >= 1 && len <= TEMPLATE_NAME_MAX, "placeholder names are 1..63 bytes");
    for (size_t i = 0; i < len; i++)
        FUZZ_ASSERT((name[i] >= 'a' && name[i] <= 'z') || name[i] == '_' || (name[i] >= '0' && name[i] <= '9'),
                    "placeholder names are [a-z_][a-z0-9_]*");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
            return table[i].value;
    if (len == 4 && memcmp(name, "long", 4) == 0)
        return long_value;
    return lk->unknown_ok ? "?" : NULL;
}

static int count_each(const char *name, size_t len, void *ud)
{
    (void)name;
    (void)len;
    (*(int *)ud)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!long_value[0])
        memset(long_value, 'v', sizeof long_value - 1);
    static const size_t caps[] = {0, 8, 64, 700, 4096};
    size_t cap = caps[data[0] % 5];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    int placeholders = 0;
    FUZZ_ASSERT(template_each(s, n, count_each, &placeholders) == 0, "template_each");
    FUZZ_ASSERT(template_has(s, n) == (placeholders > 0), "template_has agrees with template_each");

    for (int unknown_ok = 0; unknown_ok <= 1; unknown_ok++) {
        Buf out;
        buf_init(&out, cap);
        const char *prefix = cap == 8 ? "pre" : "prefix:";
        FUZZ_ASSERT(buf_puts(&out, prefix) == 0, "buf");
        size_t mark = out.len;
        Lookup lk = {0, unknown_ok};
        TqErr err = {0};
        int rc = template_expand(s, n, value_of, &lk, &out, &err);
        FUZZ_ASSERT(rc == 0 || rc == TQ_EINVAL || rc == TQ_ELIMIT, "0, TQ_EINVAL or TQ_ELIMIT");
        FUZZ_ASSERT(memcmp(out.data, prefix, mark) == 0, "what was in the buffer stays");
        if (rc) {
            FUZZ_ASSERT(out.len == mark && out.data[mark] == '\0', "a failure restores the buffer");
            FUZZ_ASSERT(err.msg[0], "a failure says why");
            FUZZ_ASSERT(rc != TQ_EINVAL || !unknown_ok, "TQ_EINVAL only for an unknown name");
        } else {
            FUZZ_ASSERT(lk.calls == placeholders, "one value per placeholder");
            if (!memchr(s, '{', n))
                FUZZ_ASSERT(out.len - mark == n && memcmp(out.data + mark, s, n) == 0, "plain text is copied");
        }
        buf_free(&out);
    }
    return 0;
}
