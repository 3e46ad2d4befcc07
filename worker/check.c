/* check.c — hard gates, soft signals and their combination (contract and formula in check.h). */
#include "check.h"

#include "json.h"
#include "utf8.h"

#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

/* ---- characters, as tierq.normalize_answer sees them ------------------------------------------ */

/* A byte that is not part of valid UTF-8 is carried as CP_RAW + byte: never space, never
 * punctuation, written back unchanged. (PostgreSQL text cannot hold such bytes at all.) */
#define CP_RAW 0x110000u

/* The SQL's regexes run lower() and the classes [[:punct:]] and \s through the C library with the
 * database's LC_CTYPE (C.UTF-8 in tests/pg.sh). A private locale_t gives us the same tables without
 * touching the process locale; created once, read-only afterwards, so safe from any thread. */
static pthread_once_t norm_once = PTHREAD_ONCE_INIT;
static locale_t norm_loc; /* (locale_t)0: C.UTF-8 is not installed, ASCII rules */

/* ASCII answers are the common case: their classes are read once from the same tables. */
enum { ASCII_SPACE = 1, ASCII_PUNCT = 2 };
static unsigned char ascii_lower[128], ascii_class[128];

static uint32_t cp_lower_slow(uint32_t cp);
static bool cp_space_slow(uint32_t cp);
static bool cp_punct_slow(uint32_t cp);

static void norm_init(void)
{
    norm_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!norm_loc)
        norm_loc = newlocale(LC_CTYPE_MASK, "C.utf8", (locale_t)0);
    for (uint32_t c = 0; c < 128; c++) {
        uint32_t l = cp_lower_slow(c);
        ascii_lower[c] = (unsigned char)(l < 128 ? l : c);
        ascii_class[c] = (unsigned char)((cp_space_slow(c) ? ASCII_SPACE : 0) | (cp_punct_slow(c) ? ASCII_PUNCT : 0));
    }
}

/* One character at s[i]: common/utf8's decode, with a byte that is not valid UTF-8 kept as the
 * pseudo code point CP_RAW + byte (so normalisation passes it through unchanged). */
static size_t cp_decode(const unsigned char *s, size_t n, size_t i, uint32_t *cp)
{
    size_t len = utf8_decode(s + i, n - i, cp);
    if (len)
        return len;
    *cp = CP_RAW + s[i];
    return 1;
}

static size_t cp_encode(uint32_t cp, char out[4])
{
    if (cp >= CP_RAW) {
        out[0] = (char)(unsigned char)(cp - CP_RAW);
        return 1;
    }
    return utf8_encode(cp, out);
}

static uint32_t cp_lower_slow(uint32_t cp)
{
    if (cp >= CP_RAW)
        return cp;
    if (norm_loc) {
        uint32_t l = (uint32_t)towlower_l((wint_t)cp, norm_loc);
        return l <= 0x10FFFF && !(l >= 0xD800 && l <= 0xDFFF) ? l : cp;
    }
    return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
}

static bool cp_space_slow(uint32_t cp)
{
    if (cp >= CP_RAW)
        return false;
    if (norm_loc)
        return iswspace_l((wint_t)cp, norm_loc) != 0;
    return cp == ' ' || (cp >= '\t' && cp <= '\r');
}

static bool cp_punct_slow(uint32_t cp)
{
    if (cp >= CP_RAW)
        return false;
    /* Named in the SQL pattern beside [[:punct:]]: “ ” ‘ ’ « » „ */
    if (cp == 0x201C || cp == 0x201D || cp == 0x2018 || cp == 0x2019 || cp == 0x00AB || cp == 0x00BB ||
        cp == 0x201E)
        return true;
    if (norm_loc)
        return iswpunct_l((wint_t)cp, norm_loc) != 0;
    return cp > ' ' && cp < 0x7F && !(cp >= '0' && cp <= '9') && !(cp >= 'a' && cp <= 'z') &&
           !(cp >= 'A' && cp <= 'Z');
}

static uint32_t cp_lower(uint32_t cp) { return cp < 128 ? ascii_lower[cp] : cp_lower_slow(cp); }
static bool cp_space(uint32_t cp) { return cp < 128 ? (ascii_class[cp] & ASCII_SPACE) != 0 : cp_space_slow(cp); }
static bool cp_punct(uint32_t cp) { return cp < 128 ? (ascii_class[cp] & ASCII_PUNCT) != 0 : cp_punct_slow(cp); }

/* ---- the normalised text as a stream of code points --------------------------------------------
 *
 * tierq.normalize_answer is, step by step: lower(); strip each maximal punctuation run that starts
 * the text or follows a \s; strip each maximal punctuation run that ends the text or precedes a \s;
 * collapse \s runs to one space; btrim spaces. That is the same as: split the lower-cased text at
 * \s into words; keep of each word the span from its first to its last non-punctuation character
 * (nothing if it has none); join the non-empty spans with one space. The iterator below yields that
 * text without building it, so comparisons allocate nothing. */
typedef struct NormIter {
    const unsigned char *s;
    size_t n;
    size_t pos;       /* where the next word search starts */
    size_t w, wend;   /* the rest of the current word's kept span */
    bool any;         /* a word was started: the next one is preceded by a space */
} NormIter;

static void norm_iter_init(NormIter *it, const char *s, size_t n)
{
    pthread_once(&norm_once, norm_init);
    memset(it, 0, sizeof *it);
    it->s = (const unsigned char *)(s ? s : "");
    it->n = s ? n : 0;
}

/* Next code point (lower-cased) of the normalised text; false at its end. */
static bool norm_next(NormIter *it, uint32_t *out)
{
    uint32_t cp;
    if (it->w < it->wend) {
        it->w += cp_decode(it->s, it->wend, it->w, &cp);
        *out = cp_lower(cp);
        return true;
    }
    while (it->pos < it->n) {
        size_t i = it->pos, len = cp_decode(it->s, it->n, i, &cp);
        if (cp_space(cp_lower(cp))) {
            it->pos = i + len;
            continue;
        }
        size_t first = SIZE_MAX, last_end = 0;
        while (i < it->n) {
            len = cp_decode(it->s, it->n, i, &cp);
            cp = cp_lower(cp);
            if (cp_space(cp))
                break;
            if (!cp_punct(cp)) {
                if (first == SIZE_MAX)
                    first = i;
                last_end = i + len;
            }
            i += len;
        }
        it->pos = i;
        if (first == SIZE_MAX)
            continue; /* all punctuation: the word vanishes */
        it->w = first;
        it->wend = last_end;
        if (it->any) {
            *out = ' ';
            return true;
        }
        it->any = true;
        return norm_next(it, out);
    }
    return false;
}

int check_normalize(const char *s, size_t n, Buf *out)
{
    size_t mark = out->len;
    NormIter it;
    norm_iter_init(&it, s, n);
    uint32_t cp;
    while (norm_next(&it, &cp)) {
        char enc[4];
        int rc = buf_append(out, enc, cp_encode(cp, enc));
        if (rc) {
            out->len = mark;
            if (out->data)
                out->data[mark] = '\0';
            return rc;
        }
    }
    return 0;
}

static bool norm_equal(const char *a, size_t an, const char *b, size_t bn)
{
    NormIter ia, ib;
    norm_iter_init(&ia, a, an);
    norm_iter_init(&ib, b, bn);
    for (;;) {
        uint32_t ca, cb;
        bool ha = norm_next(&ia, &ca), hb = norm_next(&ib, &cb);
        if (ha != hb || (ha && ca != cb))
            return false;
        if (!ha)
            return true;
    }
}

bool check_samples_agree(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    return norm_equal(a, strlen(a), b, strlen(b));
}

/* ---- soft signals ------------------------------------------------------------------------------ */

double check_logprob_confidence(const OaiLogprobs *lp)
{
    if (!lp || !lp->present || lp->n_tokens <= 0)
        return NAN;
    double x = (lp->sum_logprob + lp->min_logprob) / (double)(lp->n_tokens + 1);
    if (isnan(x))
        return NAN;
    if (x > 0)
        x = 0; /* rounding noise on certain tokens */
    return exp(x);
}

int check_judge_prompt(const char *question, const char *answer, Buf *system, Buf *user)
{
    if (!question || !answer || !system || !user)
        return TQ_EINVAL;
    size_t smark = system->len, umark = user->len;
    int rc = buf_puts(system, CHECK_JUDGE_SYSTEM);
    if (!rc)
        rc = buf_puts(user, "Question:\n");
    if (!rc)
        rc = buf_puts(user, question);
    if (!rc)
        rc = buf_puts(user, "\n\nAnswer:\n");
    if (!rc)
        rc = buf_puts(user, answer);
    if (rc) {
        system->len = smark;
        if (system->data)
            system->data[smark] = '\0';
        user->len = umark;
        if (user->data)
            user->data[umark] = '\0';
    }
    return rc;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A decimal number at s: digits, optionally '.' and digits. Returns the bytes read (0: none). */
static size_t read_number(const char *s, double *v)
{
    size_t i = 0;
    double x = 0;
    while (is_digit(s[i]))
        x = x * 10 + (s[i++] - '0');
    if (i == 0)
        return 0;
    if (s[i] == '.' && is_digit(s[i + 1])) {
        double scale = 0.1;
        for (i++; is_digit(s[i]); i++, scale /= 10)
            x += (s[i] - '0') * scale;
    }
    *v = x;
    return i;
}

/* After a number: "/ M" or "out of M". Returns the bytes read including M (0: no denominator). */
static size_t read_denominator(const char *s, double *den)
{
    size_t i = 0;
    while (s[i] == ' ')
        i++;
    if (s[i] == '/')
        i++;
    else if (strncasecmp(s + i, "out of", 6) == 0)
        i += 6;
    else
        return 0;
    while (s[i] == ' ')
        i++;
    size_t k = read_number(s + i, den);
    return k ? i + k : 0;
}

int check_parse_judge(const char *content, double *score01)
{
    if (!content || !score01)
        return TQ_EINVAL;
    /* Reasoning models served without a reasoning parser (vLLM, llama.cpp) put their thinking in
     * the content: only what follows the last </think> is the reply. */
    for (const char *th = strstr(content, "</think>"); th; th = strstr(th + 8, "</think>"))
        content = th + 8;
    int found = 0;
    double num = 0, den = 0;
    bool negative = false, has_den = false;
    for (const char *p = content; *p;) {
        double v;
        size_t k = read_number(p, &v);
        if (!k) {
            p++;
            continue;
        }
        if (++found > 1)
            return TQ_EPARSE; /* "7 or 8", "0 to 10: 7": ambiguous */
        negative = p > content && p[-1] == '-';
        num = v;
        p += k;
        size_t d = read_denominator(p, &den);
        has_den = d > 0;
        p += d;
    }
    if (found != 1 || negative)
        return TQ_EPARSE;
    double s;
    if (has_den) {
        if (!(den > 0) || num > den)
            return TQ_EPARSE;
        s = num / den;
    } else {
        if (num > 10)
            return TQ_EPARSE;
        s = num / 10;
    }
    if (!isfinite(s) || s < 0 || s > 1)
        return TQ_EPARSE; /* a number of 309 digits reads as infinity, and inf/inf is NaN */
    *score01 = s;
    return 0;
}

/* ---- gates ------------------------------------------------------------------------------------- */

static bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static void detail_set(CheckResult *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail_set(CheckResult *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

/* A printable excerpt of s[0..n) for a detail line: control characters (C0, C1, U+2028/9) become
 * spaces, invalid
 * UTF-8 becomes '?', cut on a character boundary with "..." when longer than max bytes. */
static void excerpt(const char *s, size_t n, char *dst, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t max = cap - 4, o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = cp_decode(u, n, i, &cp);
        if (o + len > max) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (cp >= CP_RAW)
            dst[o++] = '?';
        else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029)
            dst[o++] = ' ';
        else {
            memcpy(dst + o, s + i, len);
            o += len;
        }
        i += len;
    }
    dst[o] = '\0';
}

/* finish_reason values that mean "the model ended its answer normally". Servers differ: OpenAI
 * says "stop"; some send null or leave it out; llama.cpp and older vLLM builds say "eos_token" or
 * "eos"; Anthropic-style backends behind gateways say "end_turn" or "stop_sequence". */
static bool finish_is_normal(const char *f)
{
    static const char *const normal[] = {"stop", "eos_token", "eos", "end_turn", "stop_sequence", "end"};
    if (!f || !*f)
        return true;
    for (size_t i = 0; i < sizeof normal / sizeof normal[0]; i++)
        if (strcmp(f, normal[i]) == 0)
            return true;
    return false;
}

/* The gate a finish_reason fails, NULL when it ended normally. */
static const char *finish_gate(const char *f)
{
    static const struct {
        const char *value, *reason;
    } known[] = {
        {"length", "truncated"},
        {"max_tokens", "truncated"},
        {"content_filter", "content_filter"},
        {"tool_calls", "tool_calls"},
        {"function_call", "tool_calls"},
        {"tool_use", "tool_calls"},
        {"insufficient_system_resource", "provider_interrupted"},
    };
    if (finish_is_normal(f))
        return NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(f, known[i].value) == 0)
            return known[i].reason;
    return "finish_other";
}

static size_t count_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Whether the normalised form of label is exactly norm[0..nn). */
static bool label_matches(const char *label, const char *norm, size_t nn)
{
    NormIter it;
    norm_iter_init(&it, label, strlen(label));
    size_t at = 0;
    uint32_t cp;
    while (norm_next(&it, &cp)) {
        char enc[4];
        size_t k = cp_encode(cp, enc);
        if (k > nn - at || memcmp(norm + at, enc, k) != 0)
            return false;
        at += k;
    }
    return at == nn;
}

/* Label gate. Returns 1 (gate failed), 0 (passed, r->canonical set) or an error. */
static int label_gate(const char *const *labels, int nlabels, const char *t, size_t tn, CheckResult *r,
                      TqErr *err)
{
    /* The answer is normalised once, into a buffer no larger than any label's normal form can be (a
     * character's lower case takes at most twice its bytes), so a huge answer is never normalised
     * in full: reaching the cap means it matches nothing. */
    size_t cap = 1;
    for (int i = 0; i < nlabels; i++)
        if (labels[i] && 2 * strlen(labels[i]) > cap)
            cap = 2 * strlen(labels[i]);
    Buf ans;
    buf_init(&ans, cap);
    int rc = check_normalize(t, tn, &ans);
    if (rc == 0 || rc == TQ_ELIMIT) {
        rc = 1;
        for (int i = 0; i < nlabels && rc == 1 && ans.len > 0; i++)
            if (labels[i] && label_matches(labels[i], ans.data, ans.len))
                rc = (r->canonical = strdup(labels[i])) ? 0 : TQ_ENOMEM;
    }
    buf_free(&ans);
    if (rc < 0)
        return tq_err(err, rc, "label check: out of memory");
    if (rc == 1) {
        char ex[72];
        excerpt(t, tn, ex, sizeof ex);
        r->reason = "label_not_allowed";
        detail_set(r, "answer \"%s\" is not one of %d labels", ex, nlabels);
    }
    return rc;
}

/* JSON gate. Returns 1 (failed), 0 (passed) or an error. */
static int json_gate(const TqChecks *ck, const char *t, size_t tn, CheckResult *r, TqErr *err)
{
    JsonDoc doc;
    TqErr perr = {0};
    int rc = json_parse(&doc, t, tn, 0, &perr);
    if (rc == TQ_ENOMEM)
        return tq_err(err, rc, "json check: out of memory");
    if (rc) {
        r->reason = "invalid_json";
        bool fenced = tn >= 3 && memcmp(t, "```", 3) == 0;
        detail_set(r, "answer is not json: %s%s", perr.msg, fenced ? " (it is wrapped in a ``` code fence)" : "");
        return 1;
    }
    rc = 0;
    if (ck->njson_keys > 0 && json_type(&doc, 0) != JSON_OBJECT) {
        r->reason = "json_key_missing";
        static const char *const names[] = {"undefined", "object", "array", "string", "primitive"};
        detail_set(r, "answer is a json %s, not an object with the required keys", names[json_type(&doc, 0)]);
        rc = 1;
    }
    for (int i = 0; i < ck->njson_keys && rc == 0; i++) {
        if (ck->json_keys[i] && json_get(&doc, 0, ck->json_keys[i]) < 0) {
            r->reason = "json_key_missing";
            char key[84];
            utf8_copy_cut(key, sizeof key, ck->json_keys[i], strlen(ck->json_keys[i]));
            detail_set(r, "answer json has no key \"%s\"", key);
            rc = 1;
        }
    }
    json_doc_free(&doc);
    return rc;
}

/* Regex gate. Returns 1 (failed), 0 (passed) or an error. The answer is searched as a C string:
 * content from oai_parse_response never holds NUL. */
static int regex_gate(const char *pattern, const regex_t *compiled, const char *t, size_t tn, CheckResult *r,
                      TqErr *err)
{
    /* config_load compiles the pattern once; a TqChecks built by hand (tests) gets it compiled here */
    regex_t own;
    const regex_t *re = compiled;
    if (!re) {
        int rr = regcomp(&own, pattern, REG_EXTENDED | REG_NOSUB);
        if (rr != 0) {
            char msg[128];
            regerror(rr, &own, msg, sizeof msg);
            return tq_err(err, TQ_EINVAL, "checks.regex does not compile: %s", msg);
        }
        re = &own;
    }
    int rr;
    int rc;
    char *copy = malloc(tn + 1);
    if (!copy) {
        rc = tq_err(err, TQ_ENOMEM, "regex check: out of memory");
        goto cleanup;
    }
    memcpy(copy, t, tn);
    copy[tn] = '\0';
    rr = regexec(re, copy, 0, NULL, 0);
    if (rr == 0) {
        rc = 0;
    } else if (rr == REG_NOMATCH) {
        char ex[72];
        excerpt(t, tn, ex, sizeof ex);
        r->reason = "regex_mismatch";
        char pat[64]; /* a byte cut (%.60s) could split a character and make the row unwritable */
        utf8_copy_cut(pat, sizeof pat, pattern, strlen(pattern));
        detail_set(r, "answer \"%s\" does not match /%s/", ex, pat);
        rc = 1;
    } else {
        rc = tq_err(err, TQ_ENOMEM, "regex check: out of memory");
    }
cleanup:
    free(copy);
    if (re == &own)
        regfree(&own);
    return rc;
}

/* All gates in order. Returns 1 when one failed (r->reason, r->detail set), 0 when all passed,
 * or an error. */
static int run_gates(const CheckInput *in, const char *t, size_t tn, CheckResult *r, TqErr *err)
{
    const TqChecks *ck = in->checks;
    if (in->refusal && *in->refusal) {
        char ex[160];
        excerpt(in->refusal, strlen(in->refusal), ex, sizeof ex);
        r->reason = "refusal";
        detail_set(r, "the model refused: %s", ex);
        return 1;
    }
    const char *g = finish_gate(in->finish_reason);
    if (g) {
        char ex[48];
        excerpt(in->finish_reason, strlen(in->finish_reason), ex, sizeof ex);
        r->reason = g;
        if (strcmp(g, "truncated") == 0)
            detail_set(r, "the answer was cut off at the output limit (finish_reason \"%s\")", ex);
        else if (strcmp(g, "content_filter") == 0)
            detail_set(r, "the provider's content filter withheld the answer (finish_reason \"%s\")", ex);
        else if (strcmp(g, "tool_calls") == 0)
            detail_set(r, "the model called a tool instead of answering (finish_reason \"%s\")", ex);
        else
            detail_set(r, "finish_reason is \"%s\", not a normal stop", ex);
        return 1;
    }
    if (tn == 0) {
        r->reason = "empty";
        detail_set(r, in->has_reasoning ? "the reply held only reasoning, no answer" : "the answer is empty");
        return 1;
    }
    size_t chars = count_chars(t, tn);
    if (ck && ck->min_chars > 0 && chars < (size_t)ck->min_chars) {
        r->reason = "too_short";
        detail_set(r, "answer has %zu characters, fewer than min_chars %d", chars, ck->min_chars);
        return 1;
    }
    if (ck && ck->max_chars > 0 && chars > (size_t)ck->max_chars) {
        r->reason = "too_long";
        detail_set(r, "answer has %zu characters, more than max_chars %d", chars, ck->max_chars);
        return 1;
    }
    const char *const *labels = in->nlabels > 0 ? in->labels : ck ? (const char *const *)ck->labels : NULL;
    int nlabels = in->nlabels > 0 ? in->nlabels : ck ? ck->nlabels : 0;
    int rc;
    if (labels && nlabels > 0 && (rc = label_gate(labels, nlabels, t, tn, r, err)))
        return rc;
    if (!ck)
        return 0;
    if ((ck->json || ck->njson_keys > 0) && (rc = json_gate(ck, t, tn, r, err)))
        return rc;
    if (ck->regex && (rc = regex_gate(ck->regex, ck->regex_re, t, tn, r, err)))
        return rc;
    return 0;
}

/* ---- the combination --------------------------------------------------------------------------- */

int check_answer(const CheckInput *in, CheckResult *out, TqErr *err)
{
    if (!in || !out)
        return tq_err(err, TQ_EINVAL, "check: missing input or result");
    if (!in->content && in->content_len > 0)
        return tq_err(err, TQ_EINVAL, "check: content is NULL with a length");
    if (in->nlabels > 0 && !in->labels)
        return tq_err(err, TQ_EINVAL, "check: nlabels without labels");
    const TqChecks *ck = in->checks;
    bool use_judge = ck && ck->judge_model >= 0 && !isnan(in->judge_score);
    if (use_judge && !(in->judge_score >= 0 && in->judge_score <= 1))
        return tq_err(err, TQ_EINVAL, "check: judge score %g is outside [0,1]", in->judge_score);

    CheckResult r;
    memset(&r, 0, sizeof r);
    r.reason = "passed";
    r.confidence = check_logprob_confidence(in->logprobs);

    const char *t = in->content ? in->content : "";
    size_t tn = in->content_len;
    while (tn > 0 && is_ascii_space(t[0]))
        t++, tn--;
    while (tn > 0 && is_ascii_space(t[tn - 1]))
        tn--;

    int rc = run_gates(in, t, tn, &r, err);
    if (rc < 0) {
        free(r.canonical);
        return rc;
    }
    if (rc == 1) {
        free(r.canonical);
        r.canonical = NULL;
        r.gate_failed = true;
        r.score = 0;
        *out = r;
        return 0;
    }

    /* Soft signals: the minimum of those the kind enables and the input carries (see check.h). A
     * signal the kind enables but the input lacks is missing: it never counts as a pass. */
    double score = 1.0;
    int nsig = 0, pos = 0;
    char sig[160] = "";
    bool others_only = ck && ck->missing_signal == CHECK_MISSING_OTHER_CHECKS;
    if (ck && ck->logprobs && !(in->not_asked & CHECK_SIGNAL_LOGPROBS)) {
        if (!isnan(r.confidence)) {
            score = fmin(score, r.confidence);
            pos += snprintf(sig + pos, sizeof sig - (size_t)pos, "%slogprobs %.3f", nsig++ ? ", " : "", r.confidence);
        } else {
            r.missing |= CHECK_SIGNAL_LOGPROBS;
        }
    }
    if (ck && ck->judge_model >= 0 && !(in->not_asked & CHECK_SIGNAL_JUDGE)) {
        if (use_judge) {
            score = fmin(score, in->judge_score);
            pos += snprintf(sig + pos, sizeof sig - (size_t)pos, "%sjudge %.3f", nsig++ ? ", " : "", in->judge_score);
        } else {
            r.missing |= CHECK_SIGNAL_JUDGE;
        }
    }
    if (ck && ck->agreement && !(in->not_asked & CHECK_SIGNAL_AGREEMENT)) {
        if (in->second_sample) {
            bool agree = norm_equal(t, tn, in->second_sample, strlen(in->second_sample));
            if (!agree)
                score = 0;
            pos += snprintf(sig + pos, sizeof sig - (size_t)pos, "%sagreement %d", nsig++ ? ", " : "", agree ? 1 : 0);
        } else {
            r.missing |= CHECK_SIGNAL_AGREEMENT;
        }
    }
    char miss[64] = "";
    check_signal_names(r.missing, miss, sizeof miss);
    if (r.missing && (!others_only || nsig == 0)) {
        /* Unknown is not perfect: without its evidence the answer is not vouched for. */
        r.score = 0;
        detail_set(&r, "score 0: %s missing%s%s", miss, nsig ? "; present: " : "", sig);
    } else if (r.missing) {
        r.score = score;
        detail_set(&r, "score %.3f = min(%s); %s missing", score, sig, miss);
    } else if (nsig) {
        r.score = score;
        detail_set(&r, "score %.3f = min(%s)", score, sig);
    } else {
        r.score = 1.0;
        detail_set(&r, "no soft signal configured: score 1 (passed every gate)");
    }
    *out = r;
    return 0;
}

void check_signal_names(unsigned mask, char *out, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{CHECK_SIGNAL_LOGPROBS, "logprobs"}, {CHECK_SIGNAL_JUDGE, "judge"}, {CHECK_SIGNAL_AGREEMENT, "agreement"}};
    size_t at = 0;
    if (cap)
        out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((mask & names[i].bit) && at < cap)
            at += (size_t)snprintf(out + at, cap - at, "%s%s", at ? "," : "", names[i].name);
}

void check_result_free(CheckResult *r)
{
    if (!r)
        return;
    free(r->canonical);
    r->canonical = NULL;
}
