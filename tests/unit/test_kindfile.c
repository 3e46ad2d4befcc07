/* kindfile: the tiers block of a kind file rewritten in place, everything else byte for byte, and the
 * unified diff that shows it. */
#include "../check.h"
#include "kindfile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const KindFileTier TWO[] = {{"qwen3-8b", 0.7, NAN}, {"gpt-4o", 0.99, NAN}};

static char *replaced(const char *text, const KindFileTier *t, int n, int *rc)
{
    Buf out = {0};
    TqErr err = {0};
    *rc = kindfile_replace_tiers(text, strlen(text), t, n, &out, &err);
    if (*rc)
        return strdup(err.msg);
    char *s = buf_take(&out);
    return s;
}

static void test_multi_line_layout_kept(void)
{
    const char *in = "{\n"
                     "  \"description\": \"sentiment, keep this\",\n"
                     "  \"tiers\": [\n"
                     "    {\"model\": \"qwen3-8b\", \"accept\": 0.8},\n"
                     "    {\"model\": \"deepseek-v4-flash\", \"accept\": 0.4},\n"
                     "    {\"model\": \"gpt-4o\"}\n"
                     "  ],\n"
                     "  \"max_tokens\": 16\n"
                     "}\n";
    int rc;
    char *out = replaced(in, TWO, 2, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(out, "{\n"
                   "  \"description\": \"sentiment, keep this\",\n"
                   "  \"tiers\": [\n"
                   "    {\"model\": \"qwen3-8b\", \"accept\": 0.70},\n"
                   "    {\"model\": \"gpt-4o\"}\n"
                   "  ],\n"
                   "  \"max_tokens\": 16\n"
                   "}\n");
    /* the diff turns one into the other, with three lines of context */
    Buf d = {0};
    buf_init(&d, 1 << 16);
    CHECK_INT(kindfile_unified_diff("jobs/classify.json", in, strlen(in), out, strlen(out), &d), 0);
    CHECK_STR(d.data, "--- jobs/classify.json\n"
                      "+++ jobs/classify.json\n"
                      "@@ -1,8 +1,7 @@\n"
                      " {\n"
                      "   \"description\": \"sentiment, keep this\",\n"
                      "   \"tiers\": [\n"
                      "-    {\"model\": \"qwen3-8b\", \"accept\": 0.8},\n"
                      "-    {\"model\": \"deepseek-v4-flash\", \"accept\": 0.4},\n"
                      "+    {\"model\": \"qwen3-8b\", \"accept\": 0.70},\n"
                      "     {\"model\": \"gpt-4o\"}\n"
                      "   ],\n"
                      "   \"max_tokens\": 16\n");
    /* equal texts: no diff at all */
    buf_reset(&d);
    CHECK_INT(kindfile_unified_diff("x", out, strlen(out), out, strlen(out), &d), 0);
    CHECK_INT((long long)d.len, 0);
    buf_free(&d);
    free(out);
}

static void test_one_line_layout_and_escapes(void)
{
    const char *in = "{\"tiers\": [{\"model\": \"a\", \"accept\": 0.5}, {\"model\": \"b\"}], \"x\": [1, 2]}";
    const KindFileTier t[] = {{"we\"ird", 0.025, NAN}, {"mid", 1, 0.6}, {"b", 0, 0.5}};
    int rc;
    char *out = replaced(in, t, 3, &rc);
    CHECK_INT(rc, 0);
    /* accept_if_agrees where it can act: a middle tier (never the first or the last) */
    CHECK_STR(out, "{\"tiers\": [{\"model\": \"we\\\"ird\", \"accept\": 0.025}, {\"model\": \"mid\", \"accept\": 1.00,"
                   " \"accept_if_agrees\": 0.60}, {\"model\": \"b\"}], \"x\": [1, 2]}");
    free(out);
}

static void test_refusals(void)
{
    int rc;
    char *out = replaced("{\"tier\": []}", TWO, 2, &rc);
    CHECK_INT(rc, TQ_EINVAL);
    CHECKF(strstr(out, "tiers"), "%s", out);
    free(out);
    out = replaced("[1, 2]", TWO, 2, &rc);
    CHECK_INT(rc, TQ_EINVAL);
    free(out);
    out = replaced("{\"tiers\": [", TWO, 2, &rc);
    CHECK_INT(rc, TQ_EINVAL);
    free(out);
    out = replaced("{\"tiers\": []}", TWO, 0, &rc);
    CHECK_INT(rc, TQ_EINVAL);
    free(out);
    /* a "tiers" key inside another object is not the kind's */
    out = replaced("{\"checks\": {\"tiers\": [1]}}", TWO, 2, &rc);
    CHECK_INT(rc, TQ_EINVAL);
    free(out);
}

int main(void)
{
    RUN(test_multi_line_layout_kept);
    RUN(test_one_line_layout_and_escapes);
    RUN(test_refusals);
    return check_done();
}
