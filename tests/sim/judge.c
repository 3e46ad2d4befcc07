#include "judge.h"

#include "fmt.h"
#include "hash.h"
#include "json.h"
#include "sim.h"

#include <math.h>
#include <string.h>

/* Salts keep the judge's draws independent of each other and of the answer draws. */
#define SALT_JUDGE 0x9e3779b97f4a7c15ULL
#define SALT_RIGHT 0xd1b54a32d192ed03ULL
#define SALT_FOOLED 0x8cb92ba72f3d8dd7ULL
#define SALT_SCORE 0xab3e6a1d5c4f2e97ULL
#define SALT_JCONF 0x2545f4914f6cdd1dULL
#define SALT_JTOKENS 0x4f1bbcdcbfa53e0bULL

/* The constants of before they were settings; README "Models" says why they are plausible. */
const JudgeParams JUDGE_PARAMS_DEFAULT = {
    .skill = -1,
    .skill_exponent = 1.5,
    .difficulty_sensitivity = 1.0,
    .difficulty_pivot = 0.5,
    .fooled_middling = 0.4,
};

#define JUDGE_Q "Question:\n"
#define JUDGE_A "\n\nAnswer:\n"

bool judge_is_system(const char *s, size_t n)
{
    return n >= sizeof JUDGE_SYSTEM_PREFIX - 1 && memcmp(s, JUDGE_SYSTEM_PREFIX, sizeof JUDGE_SYSTEM_PREFIX - 1) == 0;
}

bool judge_parse(const AnswerKey *key, const char *msg, size_t len, JudgeItem *out)
{
    const size_t ql = sizeof JUDGE_Q - 1, al = sizeof JUDGE_A - 1;
    if (len < ql + al || memcmp(msg, JUDGE_Q, ql) != 0)
        return false;
    const char *q = msg + ql, *end = msg + len;
    const char *sep = memmem(q, (size_t)(end - q), JUDGE_A, al);
    if (!sep)
        return false;
    JudgeItem first = {q, (size_t)(sep - q), sep + al, (size_t)(end - sep) - al, false, {0}};
    for (const char *at = sep; at; at = memmem(at + 1, (size_t)(end - at - 1), JUDGE_A, al)) {
        JudgeItem it = {q, (size_t)(at - q), at + al, (size_t)(end - at) - al, false, {0}};
        if (answer_key_lookup(key, it.question, it.question_len, &it.item)) {
            it.keyed = true;
            *out = it;
            return true;
        }
    }
    *out = first;
    return true;
}

/* ---- normalisation, as tierq.normalize_answer ---- */

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static bool is_ascii_punct(unsigned char c)
{
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

/* The typographic quotes normalize_answer strips: “ ” ‘ ’ „ (E2 80 xx) and « » (C2 AB, C2 BB). */
static bool is_quote3(const unsigned char *s)
{
    return s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0x98 || s[2] == 0x99 || s[2] == 0x9C || s[2] == 0x9D || s[2] == 0x9E);
}
static bool is_quote2(const unsigned char *s) { return s[0] == 0xC2 && (s[1] == 0xAB || s[1] == 0xBB); }

/* Bytes of the punctuation character that starts s[0..n), 0 if none. */
static size_t punct_first(const unsigned char *s, size_t n)
{
    if (is_ascii_punct(s[0]))
        return 1;
    if (n >= 2 && is_quote2(s))
        return 2;
    if (n >= 3 && is_quote3(s))
        return 3;
    return 0;
}

/* Bytes of the punctuation character that ends s[0..n), 0 if none. */
static size_t punct_last(const unsigned char *s, size_t n)
{
    if (is_ascii_punct(s[n - 1]))
        return 1;
    if (n >= 2 && is_quote2(s + n - 2))
        return 2;
    if (n >= 3 && is_quote3(s + n - 3))
        return 3;
    return 0;
}

typedef struct Words {
    const unsigned char *s;
    size_t n, i;
} Words;

/* The next non-empty word with its edge punctuation stripped; false at the end. */
static bool next_word(Words *w, const unsigned char **word, size_t *wlen)
{
    for (;;) {
        while (w->i < w->n && is_ws(w->s[w->i]))
            w->i++;
        if (w->i >= w->n)
            return false;
        size_t b = w->i;
        while (w->i < w->n && !is_ws(w->s[w->i]))
            w->i++;
        size_t e = w->i, k;
        while (b < e && (k = punct_first(w->s + b, e - b)) > 0)
            b += k;
        while (b < e && (k = punct_last(w->s + b, e - b)) > 0)
            e -= k;
        if (b < e) {
            *word = w->s + b;
            *wlen = e - b;
            return true;
        }
    }
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

bool judge_normalized_equal(const char *a, size_t an, const char *b, size_t bn)
{
    Words wa = {(const unsigned char *)a, an, 0}, wb = {(const unsigned char *)b, bn, 0};
    for (;;) {
        const unsigned char *pa = NULL, *pb = NULL;
        size_t la = 0, lb = 0;
        bool ga = next_word(&wa, &pa, &la), gb = next_word(&wb, &pb, &lb);
        if (ga != gb)
            return false;
        if (!ga)
            return true;
        if (la != lb)
            return false;
        for (size_t k = 0; k < la; k++)
            if (lower(pa[k]) != lower(pb[k]))
                return false;
    }
}

/* a is the simulator's own JSON-mode answer {"answer": e} (see json_wrap in chat.c). */
static bool is_wrapped(const char *a, size_t an, const char *e, size_t en)
{
    while (an && is_ws((unsigned char)*a))
        a++, an--;
    if (!an || *a != '{')
        return false;
    JsonDoc d;
    if (json_parse(&d, a, an, 16, NULL))
        return false;
    bool ok = false;
    int v = json_get(&d, 0, "answer");
    if (json_type(&d, 0) == JSON_OBJECT && json_size(&d, 0) == 1 && v >= 0 && json_type(&d, v) == JSON_STRING) {
        Buf s;
        buf_init(&s, 0);
        ok = json_string(&d, v, &s, NULL) == 0 && judge_normalized_equal(s.data ? s.data : "", s.len, e, en);
        buf_free(&s);
    }
    json_doc_free(&d);
    return ok;
}

bool judge_truth(const char *a, size_t an, const char *e, size_t en)
{
    return judge_normalized_equal(a, an, e, en) || is_wrapped(a, an, e, en);
}

/* ---- the score ---- */

double judge_reliability(const JudgeParams *p, double skill, double difficulty)
{
    if (skill <= 0)
        return 0.5;
    if (skill >= 1)
        return 1;
    return 0.5 + 0.5 * pow(skill, p->skill_exponent * exp(p->difficulty_sensitivity * (difficulty - p->difficulty_pivot)));
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

int judge_compose(const JudgeItem *it, const AnswerQuery *q, bool json, Judgement *j, Answer *a, Buf *text)
{
    uint64_t hm = hash_fnv1a64(q->model, strlen(q->model));
    uint64_t hq = hash_fnv1a64(it->question, it->question_len);
    uint64_t ha = hash_fnv1a64(it->answer, it->answer_len);
    uint64_t base = hash_mix64(q->seed ^ hash_mix64(hm ^ hash_mix64(hq ^ hash_mix64(ha ^ q->variant ^ SALT_JUDGE))));
    double z = answer_gauss(hash_mix64(base ^ SALT_JCONF), hash_mix64(base ^ SALT_JCONF ^ 1));
    double u_score = sim_unit(hash_mix64(base ^ SALT_SCORE));
    const AnswerParams *ap = q->params ? q->params : &ANSWER_PARAMS_DEFAULT;
    const JudgeParams *jp = q->judge ? q->judge : &JUDGE_PARAMS_DEFAULT;
    memset(j, 0, sizeof *j);
    memset(a, 0, sizeof *a);
    a->difficulty = answer_difficulty(it->question, it->question_len);
    a->stream = hash_mix64(base ^ SALT_JTOKENS);
    a->token_spread = ap->token_spread;
    int score;
    if (!it->keyed) {
        j->outcome = JUDGE_UNKEYED;
        a->outcome = ANSWER_UNKEYED;
        a->confidence = answer_confidence(&ap->wrong, z);
        double z2 = answer_gauss(hash_mix64(base ^ SALT_SCORE ^ 2), hash_mix64(base ^ SALT_SCORE ^ 3));
        score = (int)clampd(floor(5.5 + 1.5 * z2), 0, 10);
    } else {
        j->truth = judge_truth(it->answer, it->answer_len, it->item.expected, it->item.expected_len);
        if (ap->nkind_offsets)
            a->difficulty += answer_kind_offset(ap, it->item.kind, it->item.kind_len);
        j->reliability = a->p_correct = judge_reliability(jp, jp->skill >= 0 ? jp->skill : q->skill, a->difficulty);
        bool right = sim_unit(hash_mix64(base ^ SALT_RIGHT)) < j->reliability;
        if (right) {
            j->outcome = JUDGE_RIGHT;
            a->outcome = ANSWER_CORRECT;
            a->confidence = answer_confidence(&ap->correct, z);
            score = j->truth ? 7 + (int)(u_score * 4) : (int)(u_score * 5);
        } else {
            j->outcome = JUDGE_FOOLED;
            a->outcome = ANSWER_WRONG;
            a->confidence = answer_confidence(&ap->wrong, z);
            if (sim_unit(hash_mix64(base ^ SALT_FOOLED)) < jp->fooled_middling)
                score = 5 + (int)(u_score * 2);
            else
                score = j->truth ? (int)(u_score * 5) : 7 + (int)(u_score * 4);
        }
    }
    j->score = score;
    int rc = json ? buf_puts(text, "{\"score\":") : 0;
    if (!rc)
        rc = fmt_i64(text, score);
    if (!rc && json)
        rc = buf_putc(text, '}');
    return rc;
}
