/* answer.h — the answer key and the simulated model's answer to one prompt.
 *
 * The answer key is a TSV file with a header naming at least the columns kind, prompt and expected
 * (extra columns are ignored), every field in PostgreSQL COPY text escaping (\n, \t, \\, \r, octal,
 * \xHH; \N reads as an empty string). It is keyed by the exact prompt text.
 *
 * Correctness (documented in tests/sim/README.md; the constants are the defaults of AnswerParams,
 * which a model of the catalog may change):
 *   d = difficulty of the prompt: uniform in [0,1) from a hash of the prompt alone, plus the
 *       model's offset for the prompt's kind (0 by default);
 *   p = skill ^ exp(2.5 * (d - 0.65))   (skill 1 is always right, skill 0 always wrong; averaged
 *       over prompts a 0.55 model is right ~63%, 0.70 ~75%, 0.88 ~90%);
 *   u = uniform in [0,1) from hash(seed, model, prompt, variant); the answer is correct iff u < p.
 * A wrong answer is another label of the kind when the kind's expected values form a label set
 * (2..ANSWER_MAX_LABELS distinct values, none longer than 48 bytes), another expected value of the
 * kind when the answer is short (<= 48 bytes, <= 3 words), otherwise the expected text with words
 * dropped and swapped (or an evasive sentence).
 * A row with a context (the optional column "context": the document a question is about) is right
 * only when its expected answer occurs in the text the model was sent (AnswerQuery.received); when
 * it does not, the answer is wrong whatever the draw: ANSWER_NOT_STATED where the draw said right,
 * the usual wrong answer otherwise. Such a row is also found when its question is the first or
 * last paragraph of a longer prompt.
 * A prompt missing from the key gets "Answer: " and the prompt's first words — unless the request
 * offers labels (its system message says "one of: a, b, c."): then a label the prompt names as a
 * word, when exactly one is named (confidence as for a correct answer), else a label drawn from
 * the prompt's hash (confidence as for an unkeyed answer).
 *
 * Everything is a pure function of its inputs: the same query always gets the same answer. */
#ifndef SIM_ANSWER_H
#define SIM_ANSWER_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ANSWER_MAX_LABELS 64

typedef struct AnswerKey AnswerKey;

typedef enum { ANSWER_CORRECT = 0, ANSWER_WRONG, ANSWER_UNKEYED } AnswerOutcome;

/* How sure an answer of one outcome sounds: its confidence (the first token's probability, see
 * answer_put_logprobs) is clamp(mean + spread * z, min, max), z standard normal. */
typedef struct AnswerConfidence {
    double mean, spread, min, max;
} AnswerConfidence;

/* Difficulty added to every prompt of one kind of the answer key (the kind column). */
typedef struct AnswerKindOffset {
    char *kind; /* NUL-terminated; owned like the array */
    size_t kind_len;
    double offset;
} AnswerKindOffset;

/* How a model's answers behave, beyond its skill (the catalog's per-model settings; README,
 * "Models"). ANSWER_PARAMS_DEFAULT reproduces the simulator's fixed constants of before they were
 * settings, draw for draw. */
typedef struct AnswerParams {
    double difficulty_sensitivity; /* 2.5: how much harder than average items hurt (the 2.5 above) */
    double difficulty_pivot;       /* 0.65: the difficulty at which p == skill */
    AnswerKindOffset *kind_offsets; /* owned by whoever filled these params; searched linearly */
    size_t nkind_offsets;
    AnswerConfidence correct;      /* {0.90, 0.07, 0.30, 0.999} */
    AnswerConfidence wrong;        /* {0.62, 0.15, 0.05, 0.99} */
    AnswerConfidence unkeyed;      /* {0.80, 0.12, 0.05, 0.999} */
    double token_spread;           /* 0.03: sd of a later token's probability around the first's */
} AnswerParams;

extern const AnswerParams ANSWER_PARAMS_DEFAULT;

struct JudgeParams; /* judge.h */

typedef struct AnswerQuery {
    uint64_t seed;      /* the simulator's --seed */
    const char *model;  /* model name, part of the draw */
    double skill;
    const AnswerParams *params;      /* NULL = ANSWER_PARAMS_DEFAULT */
    const struct JudgeParams *judge; /* read by judge_compose only; NULL = JUDGE_PARAMS_DEFAULT */
    const char *prompt; /* last user message, fault markers removed */
    size_t prompt_len;
    uint64_t variant;   /* 0 for the first choice; other values give independent samples */
    const char *labels; /* the labels the request offers ("a, b, c"), or NULL: see answer_compose */
    size_t labels_len;
    const char *received; /* every message's content, joined: what the model was sent; NULL = the
                             prompt alone. Read only for rows with a context (answer_compose) */
    size_t received_len;
} AnswerQuery;

typedef struct Answer {
    AnswerOutcome outcome;
    double difficulty;  /* d above */
    double p_correct;   /* p above (0 for unkeyed prompts) */
    double confidence;  /* target mean token probability, see answer_put_logprobs */
    double token_spread; /* sd of the later tokens' probabilities around confidence */
    uint64_t stream;    /* seeds the per-token draws */
} Answer;

/* Load the key. Returns 0 or TQ_EIO / TQ_EINVAL / TQ_ENOMEM (err filled); *out is set on success
 * and owned by the caller (answer_key_free). */
int answer_key_load(AnswerKey **out, const char *path, TqErr *err);
void answer_key_free(AnswerKey *key);
size_t answer_key_rows(const AnswerKey *key);
size_t answer_key_kinds(const AnswerKey *key);
/* Distinct non-empty contexts (documents) in the key; 0 for a key without a context column. */
size_t answer_key_docs(const AnswerKey *key);

/* What the key says about one prompt (pointers into the key, valid while it lives). */
typedef struct AnswerKeyItem {
    const char *expected;
    size_t expected_len;
    bool labels; /* the prompt's kind is a label set (see above) */
    const char *kind; /* the prompt's kind */
    size_t kind_len;
    const char *context; /* the row's context document, NULL when the row has none */
    size_t context_len;
} AnswerKeyItem;

/* Look prompt up as answer_compose does: exactly, then with surrounding whitespace trimmed.
 * Returns false (out untouched) when the key is NULL or lacks the prompt. */
bool answer_key_lookup(const AnswerKey *key, const char *prompt, size_t len, AnswerKeyItem *out);

/* The facts of a document: the rows whose context is doc[0..len) (exactly, else with surrounding
 * whitespace trimmed). Fills up to max items (pointers into the key) and returns how many; 0 when
 * the key is NULL or has no such document. Rows of one document come in no particular order, but
 * always the same one. */
size_t answer_key_facts(const AnswerKey *key, const char *doc, size_t len, AnswerKeyItem *out, size_t max);

/* The answer to a context row whose expected answer is not in the text the model received, when
 * its draw would otherwise have been right (README, "Questions about a document"). */
#define ANSWER_NOT_STATED "The document does not state this."

/* The difficulty every model sees for a prompt: uniform in [0,1) from its hash. */
double answer_difficulty(const char *prompt, size_t len);
/* The offset p gives the kind kind[0..len) (0 when p has none for it). */
double answer_kind_offset(const AnswerParams *p, const char *kind, size_t len);
/* P(correct) = skill ^ exp(p->difficulty_sensitivity * (difficulty - p->difficulty_pivot)), 0 for
 * skill <= 0 and 1 for skill >= 1; difficulty includes the kind's offset. */
double answer_p_correct(const AnswerParams *p, double skill, double difficulty);
/* The confidence of an answer drawn with standard normal z: clamp(mean + spread * z, min, max). */
double answer_confidence(const AnswerConfidence *c, double z);
/* Standard normal draw from two independent 64-bit hashes. */
double answer_gauss(uint64_t h1, uint64_t h2);

/* The label list a system message offers: the text after "one of: " up to the next newline or a
 * "." that ends the sentence. Appends it to out (nothing when there is none). */
int answer_offered_labels(const char *system, size_t len, Buf *out);

/* Decide the answer to q and append its text to text. key may be NULL (every prompt unkeyed).
 * Returns 0 or TQ_ENOMEM / TQ_ELIMIT from the buffer. */
int answer_compose(const AnswerKey *key, const AnswerQuery *q, Answer *a, Buf *text);

/* Append the OpenAI logprobs object {"content":[{token, logprob, bytes, top_logprobs}...],
 * "refusal":null} for text. The text is cut into ~4-byte tokens (a token starts at a space or
 * newline and never splits a UTF-8 character). Token probabilities: the first token has
 * probability a->confidence, each later one confidence + N(0, a->token_spread) (0.03 by default),
 * all clamped to [0.01, 0.99995].
 * top_logprobs (0..20) alternatives are listed with the token itself, sorted by probability. */
int answer_put_logprobs(Buf *out, const char *text, size_t len, const Answer *a, int top_logprobs);

/* Probability of every token outside an answer span (the JSON punctuation of a batch reply):
 * logprob ln(0.9999) = -0.000100. */
#define ANSWER_PUNCT_P 0.9999

/* The bytes text[off, off+len) were written by one answer. */
typedef struct AnswerSpan {
    size_t off, len;
    const Answer *answer;
} AnswerSpan;

/* answer_put_logprobs for a text made of several answers (a batch reply): spans (sorted, not
 * overlapping) carry each answer's own token probabilities as above, token 0 of a span having
 * probability confidence; bytes outside every span are tokens of probability ANSWER_PUNCT_P. No
 * token crosses a span boundary, so the tokens inside a span are exactly that answer's. Spans
 * reaching past len are cut at len. */
int answer_put_logprobs_spans(Buf *out, const char *text, size_t len, const AnswerSpan *spans, size_t nspans,
                              int top_logprobs);

#endif
