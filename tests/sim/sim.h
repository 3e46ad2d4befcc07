/* sim.h — the simulated OpenAI-compatible provider: its configuration and its state.
 *
 * SimConfig is filled once from the command line and never changes. Sim holds everything the
 * endpoint handlers read and update; the server is single-threaded, so handlers use it without
 * locks. See tests/sim/README.md for the flags, endpoints and formulas. */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include "answer.h"
#include "batch.h"
#include "buf.h"
#include "catalog.h"
#include "err.h"
#include "faults.h"
#include "outage.h"
#include "pcache.h"
#include "ratelimit.h"
#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SIM_MAX_OUTAGES 64

typedef struct SimConfig {
    int port;                   /* 0 = any free port */
    const char *port_file;      /* NULL = none */
    const char *models_path;
    const char *answers_path;   /* NULL = every prompt is unkeyed */
    uint64_t seed;
    int latency_ms;             /* >= 0 overrides every model's latency; -1 = from the models file */
    uint32_t slow_ms;           /* delay of the "slow" fault */
    int64_t cache_min_tokens;   /* shortest system prompt the prefix cache reports */
    size_t pcache_slots;
    double fault_rate[FAULT_COUNT];
    double batch_garble;        /* share of batch requests given one random batch fault */
    const char *require_key;    /* NULL = no auth; never logged */
    size_t max_body;            /* larger bodies get 413 */
    size_t max_head;            /* larger request heads get 431 */
    size_t oversized_bytes;     /* content size of the "oversized" fault */
    const char *outage[SIM_MAX_OUTAGES]; /* --outage specs, as given (outage.h) */
    size_t noutages;
} SimConfig;

typedef struct Sim {
    const SimConfig *cfg;
    Catalog catalog;
    AnswerKey *answers;  /* NULL without --answers */
    FaultState faults;
    PrefixCache pcache;
    SimStats stats;
    RateLimits limits;   /* the rpm / tpm buckets, one pair per model */
    Outages outages;     /* --outage windows */
    uint64_t seq;        /* chat requests so far; drives the per-request draws */
    int64_t now_ms;      /* monotonic, refreshed by the server each loop pass */
    time_t now_s;        /* wall clock, for "created" */
    Buf prompt;          /* scratch: last user message */
    Buf stripped;        /* scratch: the prompt without fault markers */
    Buf text;            /* scratch: one answer */
    Buf tmp;             /* scratch: decoded message contents */
    Buf labels;          /* scratch: the label list the request's system message offers ("a, b, c") */
    Buf received;        /* scratch: every message's content, joined (only when the key has contexts) */
    Batch batch;         /* scratch: the items and reply of a batch request */
} Sim;

/* Load the catalog and the answer key and set up the state. Returns 0 or a TQ_E* code. */
int sim_open(Sim *sim, const SimConfig *cfg, TqErr *err);
void sim_close(Sim *sim);
/* POST /sim/reset: zero the counters, forget fault counters and the prefix cache, refill every rate
 * limit bucket. Outage windows stay where they are (they count from the start). */
void sim_reset(Sim *sim);

/* Read a whole file into out (bounded by out's cap). Returns 0, TQ_EIO or TQ_ELIMIT. */
int sim_read_file(const char *path, Buf *out, TqErr *err);
/* Uniform double in [0,1) from a 64-bit hash. */
double sim_unit(uint64_t h);

#endif
