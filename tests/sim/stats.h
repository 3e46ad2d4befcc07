/* stats.h — what the simulator counts, served as JSON by GET /sim/stats.
 *
 * Counters (requests, responses, faults, per-model tokens) are zeroed by stats_reset; gauges
 * (current connections and requests in flight) are not, and their peaks restart from the current
 * values. The /sim/ endpoints themselves are never counted. */
#ifndef SIM_STATS_H
#define SIM_STATS_H

#include "buf.h"
#include "catalog.h"
#include "faults.h"

#include <stdint.h>

typedef struct ModelStats {
    uint64_t requests; /* chat requests naming this model (faulted ones included) */
    uint64_t answered; /* requests that produced an answer body */
    uint64_t prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens;
    uint64_t correct, wrong, unkeyed; /* outcome of the first choice (judge requests not included) */
    uint64_t judge_requests;          /* judge requests naming this model (faulted ones included) */
    uint64_t judge_right, judge_fooled, judge_unkeyed; /* first choice of answered judge requests */
    uint64_t batch_requests;          /* batch requests naming this model (faulted ones included) */
    uint64_t batch_items;             /* items in them */
    uint64_t compress_requests;       /* answered compression requests (first choice) */
    uint64_t compress_facts;          /* facts of their documents the answer key knows */
    uint64_t compress_facts_kept;     /* of them, found verbatim in the shortened text */
    uint64_t rate_limited;            /* refused with 429 by the model's rpm / tpm (ratelimit.h) */
    uint64_t outage;                  /* refused because the model was down (outage.h) */
} ModelStats;

#define STATS_MAX_STATUS 600

typedef struct SimStats {
    uint64_t http_requests;      /* every request outside /sim/ */
    uint64_t chat_requests;      /* POST /v1/chat/completions */
    uint64_t status[STATS_MAX_STATUS]; /* responses sent, by HTTP status */
    uint64_t faults[FAULT_COUNT];
    uint64_t batch_garble;       /* batch requests given a fault by --fault-rate batch_garble */
    uint64_t conns_total;        /* accepted since start or reset */
    int64_t conns_current, conns_peak;
    int64_t inflight_current, inflight_peak; /* received, not yet answered */
    ModelStats *models;          /* one per catalog model */
    size_t nmodels;
    int64_t started_ms, reset_ms; /* monotonic */
} SimStats;

int stats_init(SimStats *st, size_t nmodels, int64_t now_ms); /* 0 or TQ_ENOMEM */
void stats_free(SimStats *st);
void stats_reset(SimStats *st, int64_t now_ms);
void stats_conn_open(SimStats *st);
void stats_conn_close(SimStats *st);
void stats_inflight_add(SimStats *st);
void stats_inflight_done(SimStats *st);
void stats_response(SimStats *st, int status);
/* Append the stats document to out. */
int stats_to_json(const SimStats *st, const Catalog *cat, int64_t now_ms, Buf *out);

#endif
