/* fuzz_check.c — the quality check of an answer (worker/check.c) on any content.
 *
 * Input: byte 0 picks one of the fixed TqChecks below (labels; json_keys; min/max chars with
 * logprobs; a simple regex; judge and agreement; none), byte 1 the signals the call carries
 * (finish_reason, logprobs, judge score, second sample, job labels), byte 2 the logprob values; the
 * rest is the content. When the signals ask for a second sample, the content is split at its first
 * NUL: the answer before, the second sample after. The content also goes through check_parse_judge
 * (as a judge's reply), check_normalize and check_samples_agree.
 *
 * Checked contracts (check.h): score in [0,1], 0 when a gate failed; reason set; detail one
 * printable line of valid UTF-8; canonical, when set, one of the labels as written; missing only
 * names configured signals; a judge score in [0,1]; check_normalize restores its buffer on a cap. */
#include "fuzz.h"

#include "check.h"
#include "utf8.h"

#include <math.h>

static const char *const kind_labels[] = {"billing", "bug", "other", "Feature request", "\303\211cole" /* École */,
                                          "\"quoted\""};
static const char *const job_labels[] = {"yes", "no", "(maybe)"};
static const char *const json_keys[] = {"name", "score", "\xe2\x82\xac"};

static TqChecks checks[5];
static char *labels[sizeof kind_labels / sizeof kind_labels[0]], *keys[sizeof json_keys / sizeof json_keys[0]];
static regex_t digits_re;

static char *dup_or_abort(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* The TqChecks as config_load would build them (its strings are owned, hence the copies; they
 * live as long as the process). */
static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
        labels[i] = dup_or_abort(kind_labels[i]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        keys[i] = dup_or_abort(json_keys[i]);
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        checks[i].judge_model = -1;
    /* 0: a label gate with logprobs, as jobs/classify.json */
    checks[0].labels = labels;
    checks[0].nlabels = (int)(sizeof labels / sizeof labels[0]);
    checks[0].logprobs = true;
    /* 1: a JSON object with keys, and length bounds */
    checks[1].json_keys = keys;
    checks[1].njson_keys = (int)(sizeof keys / sizeof keys[0]);
    checks[1].json = true;
    checks[1].min_chars = 2;
    checks[1].max_chars = 4000;
    /* 2: length bounds and logprobs, missing signals left to the others */
    checks[2].min_chars = 1;
    checks[2].max_chars = 64;
    checks[2].logprobs = true;
    checks[2].missing_signal = CHECK_MISSING_OTHER_CHECKS;
    /* 3: a simple regex, compiled once as config_load does */
    checks[3].regex = dup_or_abort("^[0-9]+( [a-z]+)?$");
    if (regcomp(&digits_re, checks[3].regex, REG_EXTENDED | REG_NOSUB) != 0)
        abort();
    checks[3].regex_re = &digits_re;
    /* 4: judge and agreement over three labels, and a regex compiled per call (a hand-built TqChecks) */
    checks[4].labels = labels;
    checks[4].nlabels = 3;
    checks[4].judge_model = 0;
    checks[4].agreement = true;
    checks[4].logprobs = true;
    checks[4].regex = dup_or_abort("[a-z]");
}

static void check_result(const CheckInput *in, const CheckResult *r)
{
    FUZZ_ASSERT(r->score >= 0 && r->score <= 1, "score in [0,1]");
    FUZZ_ASSERT(!r->gate_failed || r->score == 0, "a failed gate scores 0");
    FUZZ_ASSERT(r->reason && r->reason[0], "a reason");
    FUZZ_ASSERT(r->gate_failed == (strcmp(r->reason, "passed") != 0), "reason passed iff no gate failed");
    FUZZ_ASSERT(fuzz_terminated(r->detail, sizeof r->detail), "detail terminated");
    FUZZ_ASSERT(utf8_valid(r->detail, strlen(r->detail)), "detail is valid UTF-8");
    FUZZ_ASSERT(fuzz_one_line(r->detail, strlen(r->detail)), "detail is one printable line");
    FUZZ_ASSERT(isnan(r->confidence) || (r->confidence >= 0 && r->confidence <= 1), "confidence in [0,1]");
    FUZZ_ASSERT(!r->gate_failed || !r->canonical, "no canonical label after a failed gate");
    if (r->canonical) {
        const char *const *set = in->nlabels > 0 ? in->labels : (const char *const *)in->checks->labels;
        int n = in->nlabels > 0 ? in->nlabels : in->checks->nlabels, found = 0;
        for (int i = 0; i < n; i++)
            found |= strcmp(set[i], r->canonical) == 0;
        FUZZ_ASSERT(found, "canonical is one of the labels as written");
    }
    unsigned configured = 0;
    if (in->checks && in->checks->logprobs)
        configured |= CHECK_SIGNAL_LOGPROBS;
    if (in->checks && in->checks->judge_model >= 0)
        configured |= CHECK_SIGNAL_JUDGE;
    if (in->checks && in->checks->agreement)
        configured |= CHECK_SIGNAL_AGREEMENT;
    FUZZ_ASSERT((r->missing & ~configured) == 0, "only configured signals go missing");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    setup();
    static const char *const finishes[] = {"stop", "", "length", "eos_token", "tool_calls", "weird\xff\x01", "end_turn",
                                           "content_filter"};
    unsigned which = data[0] % 6, sig = data[1], lpb = data[2];
    const char *content = (const char *)data + 3;
    size_t len = size - 3;

    char *second = NULL;
    if (sig & 0x08) {
        const char *nul = memchr(content, '\0', len);
        size_t at = nul ? (size_t)(nul - content) : len;
        second = fuzz_cstr((const uint8_t *)content + (nul ? at + 1 : at), nul ? len - at - 1 : 0);
        len = at;
    }
    OaiLogprobs lp = {0};
    if (sig & 0x01) {
        lp.present = true;
        lp.n_tokens = 1 + (int)(lpb & 0x3f);
        lp.min_logprob = -(double)(lpb >> 2) / 8.0;
        lp.sum_logprob = lp.min_logprob * (double)lp.n_tokens / 2.0;
    }
    CheckInput in = {
        .checks = which < 5 ? &checks[which] : NULL, /* 5: no checks, only the finish and empty gates */
        .labels = (sig & 0x10) ? job_labels : NULL,
        .nlabels = (sig & 0x10) ? 3 : 0,
        .content = content,
        .content_len = len,
        .finish_reason = (sig & 0x20) ? finishes[lpb % 8] : NULL,
        .logprobs = &lp,
        .judge_score = (sig & 0x02) ? (double)(lpb % 11) / 10.0 : CHECK_NO_JUDGE,
        .second_sample = second,
        .refusal = (sig & 0x40) && (lpb & 1) ? "I can't help with that." : NULL,
        .has_reasoning = (sig & 0x04) != 0,
        .not_asked = (sig & 0x80) ? (unsigned)(lpb & 7) : 0,
    };
    CheckResult r;
    TqErr err = {0};
    int rc = check_answer(&in, &r, &err);
    FUZZ_ASSERT(rc == 0, "check_answer only fails on bad arguments");
    check_result(&in, &r);
    check_result_free(&r);
    check_result_free(NULL);

    /* the same bytes as a judge's reply and as a sample to normalise */
    char *text = fuzz_cstr((const uint8_t *)content, len);
    double score = -1;
    /* found/check/judge_*: "N/M" with both beyond 1e308 reads as inf/inf, a NaN score */
    if (check_parse_judge(text, &score) == 0)
        FUZZ_ASSERT(score >= 0 && score <= 1, "judge score in [0,1]");
    Buf norm;
    buf_init(&norm, 0);
    FUZZ_ASSERT(check_normalize(content, len, &norm) == 0, "check_normalize");
    Buf capped;
    buf_init(&capped, 8);
    FUZZ_ASSERT(buf_puts(&capped, "ab") == 0, "buf");
    int nrc = check_normalize(content, len, &capped);
    FUZZ_ASSERT(nrc == 0 || (nrc == TQ_ELIMIT && capped.len == 2), "a capped normalisation leaves the buffer as it was");
    if (second)
        (void)check_samples_agree(text, second);
    buf_free(&capped);
    buf_free(&norm);
    free(text);
    free(second);
    return 0;
}
