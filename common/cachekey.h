/* cachekey.h — the response cache's key for a job (issue 14, being built): SHA-256 over everything
 * that determines its answer, so a change to any of it is a miss and nothing stale is ever served.
 *
 * In the key, each as a length-prefixed field (no two different inputs serialise alike):
 *   a version tag; the kind file's SHA-256 (its system prompt, tiers, bars, checks, temperature,
 *   max_tokens, response format — every byte of it); for each tier, its model's definition (our name,
 *   the name sent, the provider's name and base URL, where the system prompt goes, extra_body); the
 *   job's own system prompt (or a marker for the kind's), its prompt, its context (or a marker for
 *   none), and its params as stored (labels, max_tokens, temperature and any template parameter).
 * Params are taken as text: the same params written with keys in another order give another key —
 * a miss, never a wrong hit. */
#ifndef TQ_CACHEKEY_H
#define TQ_CACHEKEY_H

#include "config.h"
#include "job.h"
#include "sha256.h"

#define CACHE_KEY_HEX (2 * SHA256_BYTES + 1)

/* The key of job under kind kd of cfg, as 64 lower-case hex digits and a NUL. */
void cache_key(const TqConfig *cfg, const TqKind *kd, const QueueJob *job, char hex[CACHE_KEY_HEX]);

#endif
