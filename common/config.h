/* config.h — jobs/models.json and jobs/<kind>.json, parsed once into an immutable TqConfig.
 *
 * jobs/models.json: {"providers": {NAME: {...}}, "models": {NAME: {...}}}
 * jobs/<kind>.json: one file per job kind; the kind's name is the file name.
 * The README has the full reference. Every error names the file and the key path, e.g.
 *   jobs/summarize.json: tiers[1].model "foo" is not defined in jobs/models.json
 * Unknown keys are errors too, so a typo never silently falls back to a default.
 *
 * A provider's base URL can be overridden from the environment: TIERQ_BASE_URL for every provider
 * (how tests and the demo point everything at the simulator), or the provider's own base_url_env.
 * API keys are never read here into the struct: only the NAME of the environment variable is kept,
 * and the worker reads the value when it builds a request header. */
#ifndef TQ_CONFIG_H
#define TQ_CONFIG_H

#include "buf.h"
#include "cost.h"
#include "err.h"

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>

/* One extra request header of a provider (gateways: Portkey, OpenRouter, Azure, proxies). */
typedef struct TqHeader {
    char *name;
    char *value;           /* literal value, or NULL when it comes from value_env */
    char *value_env;       /* environment variable holding the value (a secret: never stored) */
} TqHeader;

typedef struct TqProvider {
    char *name;
    char *base_url;        /* after environment overrides, without trailing slash or query string */
    char *url_query;       /* query string for every request, without "?": the base URL's own query
                            * joined with the percent-encoded `query` object; NULL = none */
    TqHeader *headers;     /* extra request headers */
    int nheaders;
    char *api_key_env;     /* name of the environment variable holding the key; may be NULL */
    char *base_url_env;    /* optional override variable name */
    int timeout_ms;        /* whole request */
    int connect_timeout_ms;
    int max_in_flight;     /* per process */
    int rpm, tpm;          /* limits every model of the provider shares (one account limit across
                            * models), on top of each model's own; 0 = none */
    /* The circuit breaker each of its models gets (worker/breaker.h): opens after `failures`
     * failures that are at least failure_pct% of the outcomes in window_s; first probe after
     * cooldown_s, doubling per failed probe up to cooldown_max_s. */
    int breaker_failures, breaker_failure_pct, breaker_window_s, breaker_cooldown_s, breaker_cooldown_max_s;
} TqProvider;

typedef enum { TQ_MAXTOK_MAX_TOKENS = 0, TQ_MAXTOK_MAX_COMPLETION_TOKENS } TqMaxTokensField;

/* Where a model takes the kind's system prompt: as a system message (most), folded into the user
 * message (models that reject the system role), or not at all (Qwen-MT: one user message, the
 * instructions travel in extra_body). */
typedef enum { TQ_SYSTEM_AS_SYSTEM = 0, TQ_SYSTEM_AS_USER, TQ_SYSTEM_OMIT } TqSystemAs;

typedef struct TqModel {
    char *name;            /* our name, used in jobs/ and the ledger */
    char *api_model;       /* the name sent to the provider (defaults to name) */
    int provider;          /* index into TqConfig.providers */
    CostPrices prices;
    int rpm, tpm;          /* 0 = unlimited */
    bool logprobs;         /* the provider returns token logprobs */
    bool json_output;      /* supports response_format json_object */
    TqMaxTokensField max_tokens_field;
    int context_tokens;    /* 0 = unknown */
    int max_output_tokens; /* the model's own output limit; 0 = unknown */
    TqSystemAs system_as;
    char *extra_body;      /* raw JSON object of extra request fields ({name} placeholders allowed in
                            * its strings); NULL = none */
} TqModel;

#define TQ_MAX_FALLBACKS 4

typedef struct TqTier {
    int model;             /* index into TqConfig.models */
    int fallback[TQ_MAX_FALLBACKS]; /* models that answer for this tier, in order, while its model is
                            * unavailable (breaker open, provider stopped); nfallback of them */
    int nfallback;
    double accept;         /* score needed to accept this tier's answer; the last tier is final */
    double accept_if_agrees; /* a lower bar for an answer that agrees with the best earlier tier's
                              * answer (normalised); NAN = none. Never on the first or last tier. */
} TqTier;

typedef struct TqChecks {
    char **labels;         /* allowed answers (normalised compare); NULL = any */
    int nlabels;
    int min_chars, max_chars; /* 0 = no bound */
    char *regex;           /* POSIX extended regex the answer must match; NULL = none */
    regex_t *regex_re;     /* regex compiled once at load (REG_EXTENDED | REG_NOSUB); NULL = none */
    char **json_keys;      /* answer must be a JSON object with these keys; NULL = not JSON */
    int njson_keys;
    bool json;             /* answer must be valid JSON (implied by json_keys) */
    bool logprobs;         /* use token logprobs as a confidence signal where available */
    int judge_model;       /* -1 = no LLM judge */
    bool agreement;        /* sample twice and compare (short answers) */
    int missing_signal;    /* CHECK_MISSING_*: what a configured signal that is absent scores */
} TqChecks;

/* checks.missing_signal: "escalate" (default) scores an answer 0 when one of its configured soft
 * signals is missing; "other_checks" lets the signals present decide (0 when none is). */
enum { CHECK_MISSING_ESCALATE = 0, CHECK_MISSING_OTHER_CHECKS = 1 };

/* on_outage: what a job does when its tier's model and every fallback are unavailable.
 * WAIT (default): back to the queue without spending an attempt, run_after at the model's next
 * probe. DEGRADE: a job escalating goes on to the next tier, or keeps its best earlier answer on the
 * last one (reason escalation_failed); a first-tier job waits. FAIL: the job fails now
 * (model_unavailable), for answers that are worthless late. */
enum { TQ_OUTAGE_WAIT = 0, TQ_OUTAGE_DEGRADE = 1, TQ_OUTAGE_FAIL = 2 };

typedef struct TqBatch {
    bool enabled;
    bool across_runs;      /* jobs of different run_names may share a request */
    int max_items;
    int max_input_tokens;
    int fill_ms;
} TqBatch;

/* Context compression (README "Context compression"). */
typedef struct TqCompress {
    bool enabled;
    int threshold_tokens;  /* a job's context longer than this (estimated tokens) is compressed */
    int target_tokens;     /* ... to about this */
    int model;             /* the compressor: cfg->models index; the kind's cheapest tier model when
                            * the file names none (set once the tiers are read) */
    bool question_aware;   /* the compressor is told the job's prompt (its question) */
    bool escalate_with_original; /* tiers after the first see the original context */
    bool prompt;           /* a job without a context has its prompt compressed when it is long (the
                            * text of a summary, not a question): no question is told */
} TqCompress;

/* The response cache, per kind (README "Response cache"). */
typedef struct TqCache {
    bool enabled;
    int ttl_s;             /* sliding: a hit extends an entry to now + ttl_s */
    int max_entries;       /* the kind's entries beyond this are evicted, least recently used first */
    bool nondeterministic; /* also cache answers to jobs whose temperature is above 0 */
} TqCache;

/* The cache as a whole (models.json "cache"): what every process shares. */
typedef struct TqCacheStore {
    int64_t max_bytes;     /* compressed answers beyond this are evicted, least recently used first */
    int zstd_level;
} TqCacheStore;

/* Shadow evaluation: a sample of the jobs a cheaper tier answered is also asked of the baseline
 * model; agreement between the two estimates live accuracy without labels. */
typedef struct TqShadow {
    double rate;            /* fraction of such jobs sampled, 0 = off */
    double min_agreement;   /* below this (95% upper bound over the window) the kind is flagged */
    int window;             /* the estimate is over the kind's last `window` shadow calls */
    double boost;           /* rate x this while the first tier's share of jobs has shifted (1 = never) */
} TqShadow;

/* A job parameter the kind declares for its templates ({name} in the system prompt or a model's
 * extra_body), filled from jobs.params.NAME, else the default. */
typedef struct TqParam {
    char *name;
    char *fallback;        /* the default value */
    char *description;
} TqParam;

typedef struct TqKind {
    char *name;
    char *file;            /* "jobs/<name>.json" as given */
    char *hash;            /* hex digest of the file contents: the kind's version */
    char *digest;          /* SHA-256 hex of the file contents: part of every cache key (issue 14) */
    char *description;
    char *system_prompt;
    TqTier *tiers;
    int ntiers;
    int baseline_model;
    int max_tokens;        /* default for params.max_tokens */
    double temperature;    /* < 0 = provider default */
    int max_attempts;
    int on_outage;         /* TQ_OUTAGE_* */
    int64_t max_budget_micro; /* per-job default budget, micro-USD; 0 = none */
    TqChecks checks;
    TqParam *params;       /* declared template parameters */
    int nparams;
    bool reads_labels;     /* checks.labels is set: jobs may give params.labels, shown as {labels} */
    TqBatch batch;
    TqCompress compress;
    TqCache cache;
    TqShadow shadow;
    /* params.model (sql/015): a job may name one model to answer it alone (a bake-off). pinned[m] is
     * this kind answered by model m as its single, final tier (accept: the kind's first bar), its
     * checks and judge still asked and recorded (score_final), no cache, no shadow calls; batching
     * and compression as the kind says. Built once by config_load for every kind and model; a
     * variant's own pinned is NULL, its pinned_model the model, its base the kind it was made from
     * (base is the kind itself for the kinds of cfg->kinds; pinned_model -1). Variants share every
     * string and array with their base: only tiers is their own. */
    struct TqKind *pinned;
    const struct TqKind *base;
    int pinned_model;
    bool score_final;      /* the final tier's answer is scored in full (judge, second sample) too */
} TqKind;

typedef struct TqConfig {
    char *dir;
    TqProvider *providers;
    int nproviders;
    TqModel *models;
    int nmodels;
    TqKind *kinds;         /* sorted by name */
    int nkinds;
    TqCacheStore cache_store;
    char **warnings;       /* settings accepted but not yet in effect, one line each (file: key ...) */
    int nwarnings;
} TqConfig;

/* Load dir/models.json and every other .json file in dir as a kind. On error *out is untouched and err
 * names the file and key path. The result is immutable and owned by the caller. */
int config_load(const char *dir, TqConfig **out, TqErr *err);
void config_free(TqConfig *cfg);

/* Lookups: NULL / -1 when absent. */
const TqKind *config_kind(const TqConfig *cfg, const char *name);
const TqParam *config_kind_param(const TqKind *kind, const char *name, size_t len);
/* The kinds a comma-separated list names (--kinds a,b), each once, in list order; empty names are
 * skipped. Returns 0, or TQ_EINVAL when a name is no kind (bad gets it, cut to badcap) or the list
 * names more than cap kinds. */
int config_kind_list(const TqConfig *cfg, const char *csv, const TqKind **out, int cap, int *n, char *bad,
                     size_t badcap);
/* Whether s can name a kind (its file name, tierq.kinds_name_format): a lowercase letter, then up
 * to 62 lowercase letters, digits and _. False for NULL. */
bool config_kind_name_ok(const char *s);

/* The job parameters a kind reads, as a JSON object name -> type, for tierq.kinds.params (the
 * INSERT trigger refuses any other): {"max_tokens": "integer", "temperature": "number",
 * "labels": "labels", "target_language": "string", ...}. Appends to out. */
int config_kind_params_json(const TqKind *kind, Buf *out);
int config_model_index(const TqConfig *cfg, const char *name);

/* The kind a job pinned by params.model is answered under: kind->pinned[...] for a model of
 * jobs/models.json, or for "baseline" (the kind's baseline model); NULL when name is neither.
 * kind may be a base kind only. */
const TqKind *config_kind_pinned(const TqConfig *cfg, const TqKind *kind, const char *name);

/* The all-baseline model map: every kind answered by its baseline model alone (one tier, no
 * escalation, no judge, no batching). What the savings of the tiered map are measured against. */
int config_use_baseline_map(TqConfig *cfg, TqErr *err);

/* Default jobs directory: TIERQ_JOBS_DIR or "jobs". */
const char *config_default_dir(void);

#endif
