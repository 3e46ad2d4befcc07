/* compress.h — compression requests: a model asked to shorten a document for another model.
 *
 * A compression request is a chat completion whose first message is a system (or developer) message
 * starting with COMPRESS_SYSTEM_PREFIX and containing "in at most N tokens" (N >= 1, the target),
 * and whose last user message (fault markers removed) is
 *   "Question the document must still answer: " QUESTION "\n\nDocument:\n" DOCUMENT   (question-aware)
 * or
 *   "Document:\n" DOCUMENT
 * as tierq's scheduler/compress.c builds them. Anything else is an ordinary request.
 *
 * The reply content is the shortened document (tests/sim/README.md, "Compression requests"):
 *   truncate mode: the first N tokens (N*4 bytes, cut on a character boundary);
 *   extract mode:  whole lines of the document, in document order, about N tokens in all. The facts
 *     of the document — the expected answers of the answer key's rows whose context is DOCUMENT —
 *     are kept or lost by a draw:
 *       r = T / N  (T the document's tokens);  p = 1 when r <= 1, else
 *       p = s ^ ((ln r / ln R) ^ g)            s the compressing skill, R reference_ratio, g shape
 *       the asked fact (QUESTION's row) of a question-aware request: 1 - (1 - p) * (1 - question_boost)
 *     the first line holding a kept fact is kept; every line holding a lost fact is left out (unless
 *     it is also a kept fact's line); the other lines fill the rest of N*4 bytes in a random order.
 * Every draw comes from hash(seed, model, target, user message, variant): a pure function. */
#ifndef SIM_COMPRESS_H
#define SIM_COMPRESS_H

#include "answer.h"
#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COMPRESS_SYSTEM_PREFIX "You shorten documents for another model that must answer from them."
#define COMPRESS_QUESTION_PREFIX "Question the document must still answer: "
#define COMPRESS_DOCUMENT_SEP "\n\nDocument:\n"
#define COMPRESS_DOCUMENT_PREFIX "Document:\n"

typedef enum { COMPRESS_EXTRACT = 0, COMPRESS_TRUNCATE } CompressMode;

/* How a model compresses (the catalog's "compress" settings). */
typedef struct CompressParams {
    CompressMode mode;      /* extract */
    double skill;           /* < 0: the model's own skill (the default) */
    double reference_ratio; /* 20: the ratio at which a fact survives with probability skill */
    double shape;           /* 2: how late the losses start (larger: fewer at low ratios) */
    double question_boost;  /* 0.6: share of the asked fact's losses a question-aware request avoids */
} CompressParams;

extern const CompressParams COMPRESS_PARAMS_DEFAULT;

const char *compress_mode_name(CompressMode m);

/* A compression request's parts; pointers into the messages. */
typedef struct CompressItem {
    int64_t target;          /* N */
    const char *question;    /* NULL when the request is not question-aware */
    size_t question_len;
    const char *doc;
    size_t doc_len;
} CompressItem;

/* Whether a first system message s[0..n) asks for compression; *target gets N. */
bool compress_is_system(const char *s, size_t n, int64_t *target);

/* Split the last user message msg[0..len) of a compression request into it (it->target is left
 * alone). Returns false when msg is in neither form. */
bool compress_parse(const char *msg, size_t len, CompressItem *it);

/* What one compression did to the document's facts (for the stats). */
typedef struct CompressResult {
    uint32_t facts; /* facts of the document (0 when the key does not know it) */
    uint32_t kept;  /* of them, found verbatim in the output */
} CompressResult;

/* Shorten it->doc as model `model` (skill, params) would and append the text to out. The draws use
 * seed, model, variant and the request's user message msg[0..msg_len). key may be NULL (no facts).
 * Returns 0 or TQ_ENOMEM / TQ_ELIMIT from the buffer. */
int compress_compose(const AnswerKey *key, const CompressItem *it, const CompressParams *params, double skill,
                     uint64_t seed, const char *model, uint64_t variant, const char *msg, size_t msg_len, Buf *out,
                     CompressResult *res);

/* P(a fact survives) at ratio r for this skill (the p above, without the question boost). */
double compress_keep_probability(const CompressParams *p, double skill, double ratio);

#endif
