/* report.h — `tierq report`: what a run cost, what it would have cost on the baseline model, and
 * how good the answers were; as an aligned text report or as one JSON object for scripts.
 *
 * Sources, so that every figure can be checked with SQL:
 *   totals.jobs*, cost_usd, baseline_cost_usd, saved_*   tierq.jobs (cost and baseline over the
 *                                                         same jobs, so saved_pct compares like
 *                                                         with like)
 *   totals.calls, tokens_*; models[]                     tierq.calls (the ledger)
 *   kinds[], kinds[].tiers[]                             tierq.jobs
 *   kinds[].batching                                     tierq.calls
 *   totals.cache, kinds[].cache                          tierq.jobs (done jobs with cache_hit)
 *   totals.compression, kinds[].compression              tierq.jobs, and the 'compress' rows of
 *                                                         tierq.calls that served them
 * Filters: run_name matches jobs.run_name and calls.run_name; since_s keeps jobs whose finished_at
 * (created_at while unfinished) and calls whose created_at lie within the last since_s seconds.
 * Pruned days (`tierq prune`, sql/014): the jobs and calls a prune deleted are summed per UTC day in
 * tierq.daily_totals and tierq.daily_call_totals, and the report adds those rows (their run_name
 * matched by run_name; with since_s, only days that lie wholly inside the window) to: totals.jobs,
 * jobs_by_state, calls, tokens_*, cost_usd, baseline_cost_usd, saved_*, cache, compression; models[]
 * calls, tokens, cost_usd and errors; kinds[] jobs, done, failed, cost_usd, baseline_cost_usd,
 * saved_pct, cache and compression. A kind or model with only pruned rows is listed. Everything else
 * covers the rows still stored: latencies, accuracy and evaluated, tiers, batching, missing signals,
 * failures, confidence, shadow. So totals before and after a prune are equal (to the 6 decimals
 * printed), but a pruned kind's accuracy is that of its remaining jobs. The text report says so in a
 * footnote under the totals when any pruned day is included.
 *
 * JSON (keys and order are a contract; numbers are exact decimal text from PostgreSQL, money with
 * 6 decimals, saved_pct with 2, accuracy as a share 0..1 with 6; latencies in whole ms):
 *   {"filters": {"run": null|"name", "since_s": N|null},
 *    "totals": {"jobs", "jobs_by_state": {"queued", "running", "done", "failed", "dead",
 *               "cancelled"}, "calls", "tokens_in", "tokens_cached_in", "tokens_out", "cost_usd",
 *               "baseline_cost_usd", "saved_usd", "saved_pct" (null when baseline is 0),
 *               "cache" (as kinds[].cache, over every kind), "compression" (as
 *               kinds[].compression, over every kind),
 *               "pruned": {"days", "first_day", "last_day" ("YYYY-MM-DD", UTC; null without
 *                          days), "jobs", "calls"} (the summary rows of pruned days the figures
 *                          include: see below)},
 *    "models": [{"model", "calls", "tokens_in", "tokens_cached_in", "tokens_out", "cost_usd",
 *                "latency_p50_ms", "latency_p95_ms" (null without latencies), "errors" (calls
 *                whose status is not 'ok')}],
 *    "kinds": [{"kind", "jobs", "done", "failed" (failed + dead), "cost_usd", "baseline_cost_usd",
 *               "saved_pct", "latency_p50_ms", "latency_p95_ms" (finished_at - started_at of done
 *               jobs), "accuracy" (null when nothing was evaluated), "evaluated" (done jobs with
 *               expected),
 *               "tiers": [{"tier", "model" (jobs.tier and jobs.model: the tier that gave the answer),
 *                          "jobs" (done jobs it answered), "share_pct" (of the kind's done jobs with
 *                          a tier, 2 decimals), "accuracy" (null when none evaluated), "evaluated",
 *                          "fallback" (true: answers by a fallback of the tier while its model was
 *                          unavailable, jobs.reason 'fallback')}]
 *                        (by tier, then fallback, then model; a tier served by two models over time
 *                        has two entries),
 *               "batching": {"mean_batch_size" (average cardinality(job_ids) over the kind's answer
 *                              calls, each call counted once whatever its status; 2 decimals; null
 *                              without answer calls),
 *                            "batched_calls" (answer calls that served more than one job),
 *                            "input_tokens_per_job" (sum of tokens_in over all the kind's calls, any
 *                              purpose or status, divided by the distinct jobs in their job_ids;
 *                              2 decimals; null without calls),
 *                            "tokens_saved" (sum of solo_tokens_in - tokens_in),
 *                            "saved_usd" (sum of solo_cost_usd - cost_usd, 6 decimals)}
 *                 (saved figures are over the calls that carry a solo estimate, i.e. batched calls
 *                 whose answers were parsed; negative when batching cost more; a kind without calls
 *                 in the selection gets null, 0, null, 0, 0.000000),
 *               "cache": {"hits" (done jobs answered from the response cache: cache_hit),
 *                         "hit_rate" (hits / done, a share 0..1 with 6 decimals; null without done
 *                           jobs),
 *                         "saved_usd" (sum of cache_saved_usd: what the hits' answers cost when
 *                           they were produced, 6 decimals)},
 *               "compression": {"jobs_compressed" (jobs whose context went out compressed:
 *                                 compression 'compressed' or 'reused'),
 *                               "jobs_reused" (of them, served by a stored compression),
 *                               "jobs_cleaned", "jobs_failed" (compression 'cleaned' / 'failed'),
 *                               "context_tokens_before", "context_tokens_after" (sums over the
 *                                 jobs_compressed jobs),
 *                               "compression_ratio" (before / after, 2 decimals; null when after
 *                                 is 0),
 *                               "cost_usd" (the cost_usd of the 'compress' ledger rows, any status
 *                                 but sent and cancelled, that served jobs of the selection; a row
 *                                 serving jobs outside it too counts for the share of its jobs
 *                                 inside; part of the jobs' cost_usd),
 *                               "tokens_saved", "saved_usd" (sums of compress_tokens_saved and
 *                                 compress_saved_usd over every job: what the shorter contexts,
 *                                 cleaned ones too, saved on every request that carried them),
 *                               "net_saved_usd" (saved_usd - cost_usd, summed exactly then
 *                                 rounded)}
 *                 (a kind without compression gets zeros and a null ratio)}]}
 * Cache hits (cost 0, their baseline, jobs.tier and jobs.model those of the answer they reuse) count
 * in jobs, done, cost, baseline, saved (so saved_usd includes what the cache saved: it is not added
 * on top) and accuracy (answers users got), and are left out of the latencies (claim to finish
 * without a call), of kinds[].tiers and of confidence (no tier answered them; a reused answer would
 * weigh a tier by its popularity). models[] and batching come from tierq.calls, where hits make no
 * call.
 * Accuracy compares tierq.normalize_answer(result) with tierq.normalize_answer(expected)
 * (sql/002_report.sql). Models and kinds are listed by name. The text report adds a "per kind:
 * response cache" section, a "per kind: context compression" section (one line per kind with any
 * compression figure not zero; a note when none has), a "per kind and tier" section and a "per
 * kind: batching" section (one line per kind with calls in the selection, even a kind whose jobs
 * fall outside it) with the same figures; its totals show the compression totals, or one line
 * saying there were none.
 *
 * Blocking: runs one statement per section (in one read-only snapshot when the connection is idle). */
#ifndef TQ_REPORT_H
#define TQ_REPORT_H

#include "err.h"

#include <libpq-fe.h>
#include <stdio.h>

typedef enum { REPORT_TEXT = 0, REPORT_JSON } ReportFormat;

typedef struct ReportOptions {
    ReportFormat format;
    const char *run_name; /* NULL = every run (and jobs without a run_name) */
    long since_s;         /* 0 = all time; negative is TQ_EINVAL */
} ReportOptions;

/* Write the report to out. Returns 0, TQ_EINVAL (bad options), TQ_EDB (statement failed),
 * TQ_ENOMEM or TQ_EIO (writing to out failed). The report is built in memory and written only
 * when every query succeeded, so a failure leaves out untouched (except after TQ_EIO). */
int report_run(PGconn *c, const ReportOptions *opt, FILE *out, TqErr *err);

/* Parse a --since duration: one or more <digits><unit> parts with units d, h, m, s, each at most
 * once and from largest to smallest ("90s", "15m", "24h", "7d", "1h30m", "1d12h"). The total must
 * be positive and at most REPORT_MAX_DURATION_S. Returns 0 and sets *seconds, or TQ_EINVAL and
 * leaves *seconds unchanged. */
#define REPORT_MAX_DURATION_S (3650L * 86400L) /* ten years; fits a 32-bit long */
int report_parse_duration(const char *s, long *seconds);

#endif
