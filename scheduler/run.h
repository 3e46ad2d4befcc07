/* run.h — `tierq run`: claim jobs, feed the worker pool, write results back, until stopped (daemon)
 * or until nothing is left (--drain).
 *
 * Threads: this (scheduler) thread claims, renews leases, requeues expired ones, heartbeats and
 * prints progress; the worker pool sends requests; the writer persists results. SIGTERM/SIGINT stop
 * claiming and let in-flight work finish within the grace period, then hand the rest back; a second
 * signal hands back at once. Ledger rows of calls cut short are written with their jobs handed back.
 * With the database out of reach, the process still exits a few seconds after the grace period:
 * what the writer holds is spilled to a local file, replayed first thing by the next run on this
 * machine. A kill -9 loses no job: leases expire and any process requeues. */
#ifndef TQ_RUN_H
#define TQ_RUN_H

#include "config.h"
#include "pool.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct RunOptions {
    PoolOptions pool;        /* the worker pool's: threads, max_in_flight, max_tries, response cap */
    bool drain;              /* exit 0 once nothing is queued or running */
    int lease_s;
    int claim_batch;
    int64_t max_held_bytes;  /* input text (prompt, context, system prompt) held at once; claims stop
                              * at it (one job always fits: a larger one runs alone) */
    int poll_ms;             /* claim at least this often even without NOTIFY */
    int grace_s;             /* shutdown: time for in-flight work to finish */
    bool poll_only;          /* no LISTEN (PgBouncer in transaction mode) */
    bool progress;           /* live progress line on stderr */
    const char *run_name;    /* only claim jobs of this run */
    const char *kinds_csv;   /* only claim these kinds */
    bool all_tiers;          /* calibration: every tier answers every job */
    int64_t budget_micro;    /* per-run ceiling in micro-USD; 0 = none */
    const char *spill_dir;   /* results that cannot be written at shutdown go here, and are replayed
                              * from here at start; NULL: spill_default_dir */
    bool fail_on_drift;      /* exit RUN_EXIT_DRIFT when a kind's shadow estimate ends below its bar */
    bool no_cache;           /* the response cache is neither read nor written (an evaluation) */
    bool cache_read_only;    /* answers come from the cache, none is added to it */
    bool no_schedules;       /* fire no schedules (scheduler/firer.h); a --drain run also fires what is due at start */
} RunOptions;

/* The defaults, one place: the pool's (pool_default_options) and the scheduler's. */
void run_default_options(RunOptions *o);

enum {
    RUN_EXIT_OK = 0,
    RUN_EXIT_RUNTIME = 1,
    RUN_EXIT_BUDGET = 4,     /* the run's budget was reached; unclaimed jobs stay queued */
    RUN_EXIT_QUOTA = 5,      /* a provider refused the account (out of quota, or the key: 401); its
                              * jobs were deferred without spending an attempt */
    RUN_EXIT_NOTHING_DONE = 6, /* jobs were attempted and none succeeded (every one failed or went
                                * back to the queue): e.g. a gateway refusing every request */
    RUN_EXIT_DRIFT = 7,      /* with fail_on_drift: a kind's answers agree with its baseline model's
                              * less than its shadow.min_agreement (95% interval wholly below) */
};

/* Returns a RUN_EXIT_* code; prints a summary on stdout and errors on stderr. The caller has
 * checked that the schema is current and synced jobs/ into the database (tierq run does both). */
int run_main(const TqConfig *cfg, const RunOptions *opt);

#endif
