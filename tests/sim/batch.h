/* batch.h — batched prompts: several items of one kind answered in one chat completion.
 *
 * Wire contract (tierq's batcher builds exactly this; documented in tests/sim/README.md):
 *  - the FIRST message is a system (or developer) message whose content is the kind's own system
 *    prompt followed by BATCH_INSTRUCTION (byte-exact, so the prefix stays cacheable);
 *  - the last user message is a JSON object {"<id>": "<item text>", ...} with at least one
 *    member, every value a string (item texts are what a single request's user message would be);
 *  - the reply content is a JSON object {"<id>": "<answer>", ...}, ids in the order received, each
 *    answer exactly what a single request with that item text gets from that model (same key
 *    lookup, same draw: batching loses no accuracy). A system prompt starting with "You grade
 *    answers." makes every item in the judge form a judge item, answered by its score.
 * Anything else (no instruction, a user message that is not such an object) is an ordinary
 * request.
 *
 * Faults (tests/sim/faults.h, FAULT_BATCH_*): markers inside an item text, counted per item text
 * like every marker, and --fault-rate batch_garble=P (one random batch fault on a random item of
 * a share P of batch requests, drawn from the hash of the request body). */
#ifndef SIM_BATCH_H
#define SIM_BATCH_H

#include "answer.h"
#include "buf.h"
#include "faults.h"
#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The constant paragraph that ends the system message of every batch request. */
#define BATCH_INSTRUCTION                                                                                   \
    "\n\nYou will receive several items as a JSON object mapping item ids to items. Answer each item "    \
    "independently, following the instructions above. Reply with only a JSON object that maps each item " \
    "id to its answer as a string, with exactly the ids you received."

/* The tagged variant: the same paragraph plus this sentence. Then every answer value starts with its
 * item's id in square brackets ("[3] beta"), so a client can tell an answer that landed under
 * another item's id (batch_swap) or two answers in one value (batch_merge). */
#define BATCH_TAG_SENTENCE " Begin each answer with its item id in square brackets and a space, like \"[1] \"."
#define BATCH_INSTRUCTION_TAGGED BATCH_INSTRUCTION BATCH_TAG_SENTENCE

/* Separator of two answers merged into one value by batch_merge. */
#define BATCH_MERGE_SEP "; "
/* First line of the content of a batch_invalid reply (then "\n" + "id: answer" per line). */
#define BATCH_INVALID_HEAD "Here are the answers:\n"

typedef struct BatchItem {
    size_t key_off, key_len;   /* decoded id, in Batch.keys */
    size_t raw_off, raw_len;   /* decoded item text, markers included, in Batch.raw */
    size_t text_off, text_len; /* the text answered (markers removed), in Batch.texts */
    uint64_t raw_hash;         /* identifies the item text for marker counters */
    int nmk;
    FaultMarker mk[FAULT_MAX_MARKERS];
    Fault fault;  /* per-item batch fault of this request, from a marker */
    Fault garble; /* per-item batch fault of this request, from batch_garble */
} BatchItem;

typedef struct BatchAnswer {
    Answer a;
    size_t off, len; /* text in Batch.ans */
    bool judge;      /* a judge item */
    bool done;
} BatchAnswer;

#define BATCH_MAX_PARTS 8

typedef enum { BATCH_VAL_STRING = 0, BATCH_VAL_NUMBER, BATCH_VAL_INDEX, BATCH_VAL_OBJECT } BatchValue;

/* One member of the reply object. */
typedef struct BatchOut {
    long item;               /* the item whose id this is; -1 for an invented id */
    size_t key_off, key_len; /* in Batch.keys */
    BatchValue kind;
    int nparts;
    size_t parts[BATCH_MAX_PARTS]; /* answers (Batch.answers) joined into the value */
} BatchOut;

typedef struct Batch {
    Buf keys, raw, texts, ans, tmp;
    BatchItem *items;
    size_t n, cap;
    bool truncated, invalid; /* per-request batch faults of this request */
    bool tagged;             /* answers start with "[id] " (BATCH_INSTRUCTION_TAGGED) */
    size_t unknown_next;     /* invented ids so far */
    /* per choice */
    BatchAnswer *answers; /* 2n: the item's answer, then an alternative one (dup, unknown) */
    size_t acap;
    BatchOut *out;
    size_t nout, ocap;
    AnswerSpan *spans;
    size_t nspans, scap;
} Batch;

void batch_init(Batch *b, size_t cap);
void batch_free(Batch *b);

/* Whether a first system message s[0..n) asks for a batch (ends with BATCH_INSTRUCTION). */
/* 0: not a batch system prompt; 1: ends with BATCH_INSTRUCTION; 2: with BATCH_INSTRUCTION_TAGGED. */
int batch_is_system(const char *s, size_t n);

/* Read the items of the last user message msg[0..len) (markers removed from the texts, kept in
 * the items). Returns 1 for a batch, 0 when msg is not a non-empty JSON object of strings, or a
 * negative TQ_E* code. */
int batch_parse(Batch *b, const char *msg, size_t len);

/* Items in the judge form (judge_parse) when the system prompt is a judge's. */
size_t batch_judge_items(const Batch *b, const AnswerKey *key);

/* The request-level fault (429, slow, ...) of the first item, in order, with such a marker that
 * still has requests left for model (that marker's counter is used up); FAULT_NONE if none. */
Fault batch_request_fault(Batch *b, FaultState *fs, const char *model);

/* Choose the batch faults of this request: each item's first batch marker with requests left
 * (counters used up), then with probability garble_rate (draw from garble_hash) one random batch
 * fault for a random item. Every fault chosen is counted in st->faults, a garble also in
 * st->batch_garble. */
void batch_plan(Batch *b, FaultState *fs, const char *model, uint64_t garble_hash, double garble_rate,
                SimStats *st);

/* Compose one choice: every item answered with base's seed, model, skill and variant (prompt
 * fields ignored), faults applied, the content appended to text; b->spans then hold each
 * answer's bytes (for answer_put_logprobs_spans). Outcomes are counted into count unless NULL.
 * Returns 0 or a Buf error. */
int batch_compose(Batch *b, const AnswerKey *key, const AnswerQuery *base, bool judge_system, ModelStats *count,
                  Buf *text);

#endif
