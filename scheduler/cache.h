/* cache.h — the response cache in PostgreSQL (sql/011_cache.sql): which jobs it serves, the one
 * lookup per claim, the stored form of an answer, and upkeep.
 *
 * Which jobs (cache_prepare_job): the kind's cache.enabled, not a run with --no-cache or a
 * calibration (all-tiers) run, the job's params.cache not false, no params.model (a job pinned to
 * one model neither reads nor feeds the cache), and a deterministic request —
 * temperature 0, the job's or the kind's — unless the kind sets cache.nondeterministic. Such a job
 * gets its key (cachekey.h) and JOB_CACHE_LOOKUP, and JOB_CACHE_STORE unless the run only reads
 * (--cache-only-read). What is stored (cache_answer_storable): only an answer that passed its
 * tier's bar (accepted, agreed) or the last tier's answer with every hard gate passed (final_tier);
 * never an error, a failed gate, a best-of-earlier-tiers answer kept at the budget or after a
 * failed escalation, or a hit.
 *
 * Every call blocks on the database: the scheduler thread's (lookups, upkeep) or the writer's. */
#ifndef TQ_CACHE_H
#define TQ_CACHE_H

#include "buf.h"
#include "call.h"
#include "config.h"
#include "err.h"
#include "job.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* The largest answer the cache stores or serves (the decompressed size a row may claim): the
 * default --max-response-bytes, which no answer from a provider exceeds. */
#define CACHE_MAX_ANSWER (8 << 20)
/* Answer bytes one lookup serves at most (the default --max-held-mb): a claim of entries claiming
 * megabytes each must not be decompressed all at once; the rest are misses this time. */
#define CACHE_LOOKUP_BYTES ((int64_t)64 << 20)
/* Costs an entry may record: what no single job costs. */
#define CACHE_MAX_USD 1000000LL

/* Set job's cache key and flags (see above); clears them when the cache is off for it. */
void cache_prepare_job(const TqConfig *cfg, const TqKind *kind, QueueJob *job, bool no_cache, bool read_only,
                       bool all_tiers);

/* Whether a finished job's answer may answer identical jobs: done, from a model (not a hit), and
 * passed its bar or came from the last tier with its gates passed. */
bool cache_answer_reusable(const CallJob *cj);
/* ... and goes into the cache (the job has JOB_CACHE_STORE). */
bool cache_answer_storable(const CallJob *cj);

/* A cached answer. */
typedef struct CacheHit {
    char *answer;             /* malloc'd; NULL: a miss */
    int model;                /* cfg->models index of the model that produced it */
    int tier;                 /* 0-based tier it came from */
    double quality;           /* NaN when it was not scored */
    int64_t cost_pico;        /* what producing it cost */
    int64_t baseline_pico;    /* its job's cost on the baseline model */
} CacheHit;

/* ONE read-only statement for a whole claim (a primary-key probe per distinct key), and a second only
 * when something was found (counting the hits, locked in key order): hits[i] is filled for each jobs[i] with JOB_CACHE_LOOKUP whose
 * key has an entry that has not expired (hits[i].answer NULL otherwise; several jobs with one key
 * each get a copy). Each entry found counts its hits and slides its expiry to now + the kind's
 * ttl_s. An entry that cannot be served (entry_servable: bytes that do not decompress to their
 * recorded length, an answer that is blank, not UTF-8 or larger than CACHE_MAX_ANSWER, a model or
 * tier that is not the kind's, a quality outside 0..1, implausible costs) is a miss, warned about and
 * deleted (one more statement, only then). *nhits: jobs answered. On error nothing is filled (every job is a miss). */
int cache_lookup(PGconn *c, const TqConfig *cfg, QueueJob *const *jobs, int n, CacheHit *hits, int *nhits,
                 TqErr *err);
void cache_hit_free(CacheHit *h);

/* Complete cj (still pending) with a cached answer: done, reason cache_hit, cost 0, the producing
 * model and tier, and the saved cost. Takes ownership of h->answer. */
void cache_complete_job(CallJob *cj, CacheHit *h);

/* The stored form of an answer as bytea input text ("\x" and hex digits), appended to out: one zstd
 * frame at level, or the answer's own bytes when the frame would not be smaller. */
int cache_pack_answer(const char *answer, size_t len, int level, Buf *out, TqErr *err);

/* Decode stored text (a zstd frame, or the bytes as they are: cache_pack_answer's two forms) of
 * recorded length raw into out, checking it is that long, at most max_len, non-blank UTF-8 without
 * NUL. Returns 0, or TQ_EINVAL with why filled (out restored). */
int cache_unpack_text(const unsigned char *bytes, size_t n, long long raw, size_t max_len, Buf *out, char *why,
                      size_t whycap);

/* Upkeep, a bounded amount per call (any process may run it; concurrent ones skip each other's
 * rows): delete up to limit expired entries; then per kind, the least recently used entries over
 * its cache.max_entries; then, while the compressed answers exceed cfg->cache_store.max_bytes, the
 * least recently used entries of any kind (up to limit each). */
typedef struct CacheUpkeep {
    int64_t expired, evicted;
    int64_t evicted_bytes;
} CacheUpkeep;
int cache_upkeep(PGconn *c, const TqConfig *cfg, int limit, CacheUpkeep *out, TqErr *err);

#endif
