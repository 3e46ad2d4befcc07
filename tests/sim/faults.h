/* faults.h — injectable provider faults: names, prompt markers, per-prompt counters, global rates.
 *
 * A marker inside the last user message, "[[sim:NAME]]" or "[[sim:NAME:times=N]]" (optionally also
 * ":model=MODEL"), makes the first N requests (default 1; times=0 means every request) that carry
 * that exact prompt get the fault; later ones succeed. Several markers in one prompt fire in order
 * ("[[sim:429:times=2]][[sim:500]]" = 429, 429, 500, then success). Counters are keyed by the hash
 * of the whole prompt and the marker's position and are cleared by fault_state_reset.
 * Global rates (--fault-rate NAME=P) apply to requests no marker fired for, by one uniform draw. */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include "buf.h"
#include "reply.h"
#include "u64map.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    FAULT_NONE = 0,
    FAULT_429,       /* rate_limit_exceeded, retry-after: 1, retry-after-ms: 200 */
    FAULT_429QUOTA,  /* 429 insufficient_quota: not retryable */
    FAULT_500,
    FAULT_503,
    FAULT_400,       /* invalid_request_error */
    FAULT_401,       /* invalid_api_key */
    FAULT_SLOW,      /* normal answer after --slow-ms */
    FAULT_DROP,      /* connection closed without a response */
    FAULT_TRUNCATED, /* full Content-Length, half the body, then close */
    FAULT_INVALID,   /* 200 with a body that is not JSON */
    FAULT_OVERSIZED, /* 200 with a huge (default ~20 MB) valid JSON body */
    FAULT_NOUSAGE,   /* valid answer without "usage" */
    FAULT_INTCODE,   /* 500 whose error.code is the integer 500 (vLLM style) */
    FAULT_EMPTY,     /* 200 with an empty content (finish_reason stop) */
    FAULT_ECHO_LONG, /* 200 whose content is longer than the input: the document (or prompt) twice */
    /* Batch faults (tests/sim/batch.h): they garble the reply of a batched request and are
     * ignored in any other request. Per item: */
    FAULT_BATCH_MISSING,   /* the item's id is absent from the reply */
    FAULT_BATCH_DUP,       /* the item's id appears twice, the second time with another answer */
    FAULT_BATCH_SWAP,      /* the item's answer and the next item's trade ids */
    FAULT_BATCH_UNKNOWN,   /* an extra id that was not sent is added after the item */
    FAULT_BATCH_MALFORMED, /* the item's value is a number or an object, not a string */
    FAULT_BATCH_MERGE,     /* the item's and the next item's answers in one value; the next id is missing */
    /* per request: */
    FAULT_BATCH_TRUNCATED, /* the reply JSON is cut in the middle (finish_reason stop, valid HTTP) */
    FAULT_BATCH_INVALID,   /* the reply content is not JSON */
    FAULT_COUNT
} Fault;

#define FAULT_MAX_MARKERS 8
/* The counter table is cleared when it reaches this many prompts, so memory stays bounded. */
#define FAULT_MAX_COUNTERS ((size_t)1 << 20)

typedef struct FaultMarker {
    Fault fault;
    uint32_t times;    /* 0 = always */
    const char *model; /* borrowed from the scanned text; NULL = any model */
    size_t model_len;
} FaultMarker;

typedef struct FaultState {
    U64Map counters;          /* hash(prompt, marker position) -> requests that got the fault */
    double rate[FAULT_COUNT]; /* global probabilities, sum <= 1 */
} FaultState;

const char *fault_name(Fault f);          /* "429", "slow", ...; "none" for FAULT_NONE */
Fault fault_from_name(const char *s, size_t n); /* FAULT_NONE if unknown */
/* Error faults are answered at once with an HTTP error status (no answer is computed). */
bool fault_is_error(Fault f);
/* Batch faults only act on batched requests; --fault-rate does not take them (see batch_garble). */
bool fault_is_batch(Fault f);

/* Find markers in s[0..n). Up to max markers are stored in out; the text without any well-formed
 * marker is appended to stripped (when not NULL). Text that looks like a marker but names no known
 * fault is kept as ordinary text. Returns the number of markers found (<= max). */
int fault_scan(const char *s, size_t n, FaultMarker *out, int max, Buf *stripped);

void fault_state_init(FaultState *fs);
void fault_state_free(FaultState *fs);
void fault_state_reset(FaultState *fs); /* forgets every per-prompt counter */

/* The fault for one request: the first marker (in order) that applies to model and still has
 * requests left, else a global-rate fault chosen by u in [0,1), else FAULT_NONE. Batch markers are
 * skipped (their counters untouched). prompt_hash identifies the exact prompt text (markers
 * included). */
Fault fault_choose(FaultState *fs, uint64_t prompt_hash, const FaultMarker *mk, int nmk, const char *model,
                   double u);
/* Only the marker part of fault_choose, over the batch markers (batch) or the others (!batch):
 * the first that applies to model and has requests left, which uses up one of them; else
 * FAULT_NONE. A counter belongs to (prompt_hash, the marker's position among all of mk). */
Fault fault_from_markers(FaultState *fs, uint64_t prompt_hash, const FaultMarker *mk, int nmk, const char *model,
                         bool batch);
/* Only the global-rate part of fault_choose. */
Fault fault_from_rate(const FaultState *fs, double u);

/* Fill r with the status, headers and body of an error fault (fault_is_error). Returns 0 or a
 * TQ_E* code (TQ_EINVAL for a fault that is not an error). */
int fault_error_reply(Fault f, SimReply *r);

#endif
