/* catalog.h — the simulated models, loaded once from a JSON file (tests/sim/models.json) and
 * changed while running only through catalog_update (POST /sim/models/<name>).
 *
 * File shape: {"description": "...", "models": {"<name>": {"skill": 0.7, "latency_ms": {"mean": 600,
 *   "jitter": 250}, "ms_per_output_token": 0, "logprobs": true, "usage_style": "openai|deepseek|none",
 *   "reasoning": false, "confidence": {...}, "difficulty": {...}, "judge": {...}, "compress": {...},
 *   "provider": "openai", "rpm": 500, "tpm": 30000, "down": false, "description": "..."}, ...}}. Every key but skill is optional; an absent one keeps the default
 * (tests/sim/README.md, "Models", lists them all). An unknown key anywhere — top level, model, nested
 * object — or a value out of its range is an error naming the file, the model and the key, so a
 * typo cannot silently leave a setting at its default.
 *
 * Single-threaded like the rest of the simulator: lookups are O(1) and return pointers that stay
 * valid for the catalog's life (the array is never reallocated); catalog_update changes a model in
 * place between two requests, so a request sees one model's settings whole, old or new. */
#ifndef SIM_CATALOG_H
#define SIM_CATALOG_H

#include "answer.h"
#include "buf.h"
#include "compress.h"
#include "err.h"
#include "judge.h"
#include "u64map.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { USAGE_OPENAI = 0, USAGE_DEEPSEEK, USAGE_NONE } UsageStyle;

/* How a model that is down answers (the "down" key, and --outage windows, outage.h). */
typedef enum {
    DOWN_NO = 0,  /* up */
    DOWN_503,     /* HTTP 503 with an error body, at once */
    DOWN_DROP,    /* the connection is closed without a response, at once */
} DownMode;

/* Kind offsets one model may carry (difficulty.kind_offset). */
#define CATALOG_MAX_KIND_OFFSETS 256

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
    AnswerParams answer; /* confidence and difficulty; answer.kind_offsets owned */
    JudgeParams judge;   /* the model as a judge */
    CompressParams compress; /* the model shortening documents */
    char *provider;    /* owned; NULL = none. Names the model's provider for --outage provider:NAME */
    int64_t rpm, tpm;  /* requests and tokens per minute; 0 = unlimited (ratelimit.h) */
    DownMode down;     /* switched off at runtime ("down"), besides any --outage window */
} SimModel;

typedef struct Catalog {
    SimModel *models; /* owned, n entries */
    size_t n;
    U64Map index;     /* fnv(name) -> position */
    int latency_override_ms; /* from catalog_load, applied again by catalog_update */
} Catalog;

/* Load path. latency_override_ms >= 0 sets every model's latency to exactly that many ms (no jitter,
 * no per-token time). Returns 0 or TQ_EIO / TQ_EINVAL / TQ_ELIMIT / TQ_ENOMEM with err filled (one
 * printable line naming the file, and the model and key when one is at fault). On failure the
 * catalog is left empty. */
int catalog_load(Catalog *cat, const char *path, int latency_override_ms, TqErr *err);
void catalog_free(Catalog *cat);
/* The model called name[0..len), or NULL. */
const SimModel *catalog_find(const Catalog *cat, const char *name, size_t len);
const char *catalog_usage_name(UsageStyle u);
/* "503" or "drop" for a down mode; NULL for DOWN_NO. */
const char *catalog_down_name(DownMode d);
/* Latency in ms for one response of this model: u in [0,1) picks the point in mean +- jitter. */
uint32_t catalog_latency_ms(const SimModel *m, double u, int64_t completion_tokens);

/* Change model cat->models[i] by the JSON object json[0..len) of model keys, checked as in the
 * file: keys present replace the current values (nested objects key by key, kind offsets kind by
 * kind), absent ones keep them; skill is not required. All or nothing: on error the model is
 * unchanged. A --latency-ms override still wins over latency keys. Returns 0, TQ_EINVAL (err: a
 * printable line naming the model and the key) or TQ_ENOMEM. */
int catalog_update(Catalog *cat, size_t i, const char *json, size_t len, TqErr *err);

/* Append the model's current settings as a JSON object of every model key (the form
 * catalog_update accepts and a catalog file holds). Returns 0 or a Buf error. */
int catalog_model_json(const SimModel *m, Buf *out);

#endif
