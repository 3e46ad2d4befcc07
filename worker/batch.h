/* batch.h — several jobs of one kind in one request, answers split back by item id.
 *
 * The request: the kind's system prompt first, then BATCH_INSTRUCTIONS — both byte-identical in
 * every batched call of the kind, so providers bill that repeated prefix at their cached rate — and
 * one user message holding a JSON object {"1": item, "2": item, ...}. The answer is asked for as a
 * JSON object keyed by the same ids (response_format json_object where the model supports it).
 *
 * Splitting goes by id, never by position, and each answer must begin with its own item's id in
 * brackets ("[3] beta"): an item whose id is missing or duplicated, whose value is not a string,
 * whose answer carries another item's tag (it landed under the wrong id) or two tags (two answers
 * merged) gets no answer here (the caller re-sends it alone); unknown ids are ignored. So a job never
 * receives a neighbour's answer. */
#ifndef TQ_BATCH_H
#define TQ_BATCH_H

#include "buf.h"
#include "call.h"
#include "err.h"

#include <stddef.h>

extern const char BATCH_INSTRUCTIONS[];

/* Body of a batched call (c->batched, answer phase), on c->send_model; records the output limit
 * sent in c->sent_max_tokens. */
int batch_build_body(Call *c, Buf *out, TqErr *err);

typedef struct BatchItem {
    char *answer;        /* malloc'd, decoded; NULL when the item has a problem */
    const char *problem; /* NULL, or batch_item_missing / _duplicated / _malformed / _mislabeled / _merged */
    size_t start, end;   /* byte range of the answer's JSON value in the content (for its logprobs) */
} BatchItem;

/* Split content into nitems answers keyed "1".."nitems". The object may come wrapped in a Markdown
 * code fence (```json ... ```). Returns 0, or TQ_EPARSE when the content is not one JSON object
 * (truncated, not JSON, an array...): then no item is usable. *unknown counts
 * keys that name no item. Free with batch_items_free. */
int batch_split_answers(const char *content, size_t len, int nitems, BatchItem *items, int *unknown, TqErr *err);
void batch_items_free(BatchItem *items, int n);

/* Token estimate of what each job's share of a batched exchange is weighted by: the shared system
 * prompt evenly, each item by its own size. weights must hold c->njobs entries. */
void batch_weights(const Call *c, int64_t *weights);

#endif
