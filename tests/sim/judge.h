/* judge.h — the simulated model acting as an LLM judge.
 *
 * A judge request is a chat completion whose first message is a system (or developer) message
 * starting with JUDGE_SYSTEM_PREFIX and whose last user message (fault markers removed) is
 *   "Question:\n" QUESTION "\n\nAnswer:\n" ANSWER
 * as tierq's worker/check.c builds it. The reply is a score 0..10 that tracks the truth (is ANSWER
 * the key's answer to QUESTION?) imperfectly, by the judge model's skill (documented in
 * tests/sim/README.md, "Judge requests"; the constants are the defaults of JudgeParams):
 *   d = difficulty of QUESTION (as for answers: answer_difficulty plus the model's kind offset)
 *   r = 0.5 + 0.5 * skill ^ (1.5 * exp(1 * (d - 0.5)))   P(the judge is right)
 *   right:  correct -> 7..10, wrong -> 0..4 (uniform)
 *   fooled: 40% a middling 5..6, else the opposite range
 *   QUESTION not in the key: clamp(round(5 + 1.5 z), 0, 10)
 * Every draw comes from hash(seed, model, QUESTION, ANSWER, variant): a pure function. */
#ifndef SIM_JUDGE_H
#define SIM_JUDGE_H

#include "answer.h"
#include "buf.h"

#include <stdbool.h>
#include <stddef.h>

#define JUDGE_SYSTEM_PREFIX "You grade answers."

typedef enum { JUDGE_RIGHT = 0, JUDGE_FOOLED, JUDGE_UNKEYED } JudgeOutcome;

/* How a model behaves as a judge (the catalog's "judge" settings). JUDGE_PARAMS_DEFAULT reproduces
 * the fixed constants of before, draw for draw. */
typedef struct JudgeParams {
    double skill;                  /* < 0: the model's own skill (the default) */
    double skill_exponent;         /* 1.5: larger -> right less often, fooled more often */
    double difficulty_sensitivity; /* 1: how much hard questions fool it (the 1 in exp(1 * ...)) */
    double difficulty_pivot;       /* 0.5 */
    double fooled_middling;        /* 0.4: share of fooled verdicts that are a middling 5..6 */
} JudgeParams;

extern const JudgeParams JUDGE_PARAMS_DEFAULT;

/* A judge message split in two; pointers into the message. */
typedef struct JudgeItem {
    const char *question;
    size_t question_len;
    const char *answer;
    size_t answer_len;
    bool keyed;        /* QUESTION is in the key; item is then valid */
    AnswerKeyItem item;
} JudgeItem;

typedef struct Judgement {
    JudgeOutcome outcome;
    bool truth;         /* the graded answer is correct (false when unkeyed) */
    double reliability; /* r above (0 when unkeyed) */
    int score;          /* 0..10 */
} Judgement;

/* Whether a first system message s[0..n) asks for grading. */
bool judge_is_system(const char *s, size_t n);

/* Split the last user message msg[0..len) of a judge request. The split is at the first
 * "\n\nAnswer:\n" after the "Question:\n" prefix; when that QUESTION is not in the key but the one
 * up to a later occurrence is, the later split is taken (a question may itself contain the
 * separator). Returns false when msg is not in the judge form. key may be NULL. */
bool judge_parse(const AnswerKey *key, const char *msg, size_t len, JudgeItem *out);

/* Whether answer a[0..an) is a correct answer with expected answer e[0..en): equal after
 * normalisation (judge_normalized_equal), or the simulator's own JSON-mode form {"answer": e}. */
bool judge_truth(const char *a, size_t an, const char *e, size_t en);

/* Equality of tierq.normalize_answer(a) and tierq.normalize_answer(b) (sql/002_report.sql):
 * ASCII lower-case, punctuation and quotes (ASCII and “ ” ‘ ’ « » „) stripped at both ends of every
 * whitespace-separated word, empty words dropped, one space between words. */
bool judge_normalized_equal(const char *a, size_t an, const char *b, size_t bn);

/* P(the judge is right) for this skill and difficulty: r above (0.5 for skill <= 0, 1 for
 * skill >= 1). */
double judge_reliability(const JudgeParams *p, double skill, double difficulty);

/* Grade it: fill j and a (for answer_put_logprobs) and append the content to text — the score as
 * a bare integer, or {"score":N} when json is set. The draws use q->seed, q->model, q->skill (or
 * q->judge->skill), q->variant and the item's QUESTION and ANSWER (q->prompt is not read); q->params
 * gives the confidences (right as a correct answer, fooled and unkeyed as a wrong one) and the kind
 * offsets, q->judge the reliability. Returns 0 or a Buf error. */
int judge_compose(const JudgeItem *it, const AnswerQuery *q, bool json, Judgement *j, Answer *a, Buf *text);

#endif
