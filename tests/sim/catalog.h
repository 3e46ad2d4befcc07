/* catalog.h — the simulated models, loaded once from a JSON file (tests/sim/models.json).
 *
 * File shape: {"models": {"<name>": {"skill": 0.7, "latency_ms": {"mean": 600, "jitter": 250},
 *   "ms_per_output_token": 0, "logprobs": true, "usage_style": "openai|deepseek|none",
 *   "reasoning": false}, ...}}. Unknown keys are ignored so the file can carry descriptions.
 * The catalog is immutable after loading; lookups by name are O(1). */
#ifndef SIM_CATALOG_H
#define SIM_CATALOG_H

#include "err.h"
#include "u64map.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { USAGE_OPENAI = 0, USAGE_DEEPSEEK, USAGE_NONE } UsageStyle;

typedef struct SimModel {
    char *name;        /* owned */
    size_t index;      /* position in the catalog, used for per-model stats */
    double skill;      /* [0,1]; 1 is always right, 0 always wrong */
    double latency_mean_ms;
    double latency_jitter_ms;  /* latency is uniform in mean +- jitter, never below 0 */
    double ms_per_output_token; /* added per completion token (reasoning included) */
    bool logprobs;
    UsageStyle usage;
    bool reasoning;    /* reports reasoning_tokens (and DeepSeek-style reasoning_content) */
} SimModel;

typedef struct Catalog {
    SimModel *models; /* owned, n entries */
    size_t n;
    U64Map index;     /* fnv(name) -> position */
} Catalog;

/* Load path. latency_override_ms >= 0 sets every model's latency to exactly that many ms (no jitter,
 * no per-token time). Returns 0 or TQ_EIO / TQ_EINVAL / TQ_ENOMEM with err filled. On failure the
 * catalog is left empty. */
int catalog_load(Catalog *cat, const char *path, int latency_override_ms, TqErr *err);
void catalog_free(Catalog *cat);
/* The model called name[0..len), or NULL. */
const SimModel *catalog_find(const Catalog *cat, const char *name, size_t len);
const char *catalog_usage_name(UsageStyle u);
/* Latency in ms for one response of this model: u in [0,1) picks the point in mean +- jitter. */
uint32_t catalog_latency_ms(const SimModel *m, double u, int64_t completion_tokens);

#endif
