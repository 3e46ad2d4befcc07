/* cacheadmin.h — `tierq cache stats` and `tierq cache purge`: what the response cache (sql/011,
 * scheduler/cache.h) holds and what it saved, and deleting entries by hand.
 *
 * Stats, sources (every figure can be checked with SQL; numbers are exact decimal text from
 * PostgreSQL):
 *   entries, expired, raw_bytes, compressed_bytes,   tierq.cache as it is now, whatever the filters:
 *   compression_ratio, hits                          count(*), count(*) FILTER (WHERE expires_at <=
 *                                                    now()) (expired, not yet deleted by upkeep),
 *                                                    sum(raw_len), sum(octet_length(answer_z)),
 *                                                    raw / compressed (2 decimals, null without
 *                                                    bytes), sum(hits) (lookups served by the entries
 *                                                    still stored: a purged entry takes its hits away)
 *   done_jobs, hit_jobs, hit_rate, saved_usd         tierq.jobs in state done, filtered like tierq
 *                                                    report (run_name; finished_at within since_s):
 *                                                    count(*), count(*) FILTER (WHERE cache_hit),
 *                                                    hit_jobs / done_jobs (share 0..1, 6 decimals,
 *                                                    null without done jobs), sum(cache_saved_usd)
 *                                                    (6 decimals: what the cached answers cost when
 *                                                    they were produced)
 * hits and hit_jobs differ: jobs that waited on an identical job's call in the same process are hit
 * jobs without a lookup, and purged or expired entries keep their hit jobs but lose their hits.
 *
 * JSON (keys and order are a contract):
 *   {"filters": {"run": null|"name", "since_s": N|null},
 *    "totals": {"entries", "expired", "raw_bytes", "compressed_bytes", "compression_ratio", "hits",
 *               "done_jobs", "hit_jobs", "hit_rate", "saved_usd"},
 *    "kinds": [{"kind", then the keys of totals}]}   (by name: every kind with entries or done jobs)
 *
 * Every call blocks on the database. */
#ifndef TQ_CACHEADMIN_H
#define TQ_CACHEADMIN_H

#include "err.h"
#include "report.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Write the stats to out, the jobs selected as opt selects them for tierq report. Returns 0, TQ_EINVAL (bad options), TQ_EDB, TQ_ENOMEM or TQ_EIO. The
 * output is built in memory and written only when the statement succeeded. */
int cacheadmin_stats(PGconn *c, const ReportOptions *opt, FILE *out, TqErr *err);

/* Which entries a purge deletes: those matching every filter given. A purge with no filter deletes
 * everything and must say so with all (a typo that drops the filter must not empty the cache). */
typedef struct CachePurgeFilter {
    const char *kind;  /* NULL = any kind; else a valid kind name (config_kind_name_ok), known or not */
    long older_than_s; /* 0 = any age; else created_at before (start of the purge) - older_than_s */
    bool expired;      /* only entries whose expires_at has passed at the start of the purge */
    bool all;          /* every entry; only without the filters above */
} CachePurgeFilter;

typedef struct CachePurgeResult {
    int64_t entries;   /* entries deleted */
    int64_t bytes;     /* their compressed answers, octet_length(answer_z) */
    int64_t raw_bytes; /* their answers' raw_len */
} CachePurgeResult;

/* Whether f is a purge that may run: 0, or TQ_EINVAL with err saying why in command-line terms
 * (--kind, --older-than, --expired, --all): no filter without all, all with a filter, a kind that is
 * no kind name, a negative age. The command line asks before it connects; cacheadmin_purge asks
 * again. */
int cacheadmin_purge_check(const CachePurgeFilter *f, TqErr *err);

/* Rows per DELETE statement: short locks, and a lookup waits at most one batch. */
#define CACHEADMIN_PURGE_BATCH 5000

/* Delete the matching entries, batch rows per statement (1..100000), walking the keys in order so
 * that the whole purge reads the table once; loops until no matching key is left. Outside a
 * transaction each statement commits on its own, so an error leaves the batches before it deleted.
 * "Start of the purge" is one now() read first: entries created or expiring while it runs are left.
 * Returns 0, TQ_EINVAL (cacheadmin_purge_check refused f, or a bad batch: nothing is deleted, err
 * says which) or TQ_EDB. *out always holds
 * what was deleted, also after TQ_EDB. */
int cacheadmin_purge(PGconn *c, const CachePurgeFilter *f, int batch, CachePurgeResult *out, TqErr *err);

#endif
