#include "report.h"

#include "buf.h"
#include "cells.h"
#include "db.h"
#include "emit.h"
#include "json.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A report is a few dozen lines per model and kind; the cap only guards against a runaway. */
#define REPORT_MAX_BYTES (16u << 20)

/* Money is summed as numeric by PostgreSQL and rounded there, never in C: the text that comes
 * back is printed as is. GROUP BY ROLLUP gives the per-kind rows and the totals row (grouping = 1,
 * listed first) from one scan; on an empty selection only the totals row comes back. $1 = run name
 * or NULL, $2 = seconds or NULL. */
/* The summary rows of pruned days (sql/014) that a report adds: those of the run (run_name '' is
 * jobs without one, which no --run names), and with --since only days that lie wholly inside the
 * window (a day cut by it would count jobs from before the window). A prune with --older-than D
 * removes nothing from a --since window of D or less, so such windows add no summary row at all. */
#define PRUNED_DAYS_FILTER                                                                                           \
    "($1::text IS NULL OR run_name = $1::text)"                                                                     \
    " AND ($2::bigint IS NULL OR (day::timestamp AT TIME ZONE 'UTC') >= now() - $2::bigint * interval '1 second')"

/* Money is summed as numeric by PostgreSQL and rounded there, never in C: the text that comes
 * back is printed as is. GROUP BY ROLLUP gives the per-kind rows and the totals row (grouping = 1,
 * listed first) from one scan; on an empty selection only the totals row comes back. Each row of
 * j weighs n jobs: 1 for a stored job, the day's count for a summary row of pruned jobs (which has
 * no latency and is never evaluated). $1 = run name or NULL, $2 = seconds or NULL. */
static const char *const SQL_REPORT_JOBS =
    "WITH j AS ("
    "  SELECT kind, state, 1::bigint AS n, cost_usd, baseline_cost_usd,"
    "    CASE WHEN state = 'done' AND cache_hit THEN 1 ELSE 0 END AS hits,"
    "    CASE WHEN state = 'done' AND cache_hit THEN cache_saved_usd END AS cache_saved,"
    "    CASE WHEN state = 'done' AND NOT cache_hit AND started_at IS NOT NULL AND finished_at IS NOT NULL"
    "         THEN (extract(epoch FROM finished_at - started_at) * 1000)::float8 END AS latency_ms,"
    "    state = 'done' AND expected IS NOT NULL AS evaluated,"
    "    state = 'done' AND expected IS NOT NULL"
    "      AND coalesce(tierq.normalize_answer(result) = tierq.normalize_answer(expected), false) AS correct"
    "  FROM tierq.jobs"
    "  WHERE ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR coalesce(finished_at, created_at) >= now() - $2::bigint * interval '1 second')"
    "  UNION ALL"
    "  SELECT kind, state, jobs, cost_usd, baseline_cost_usd, CASE WHEN state = 'done' THEN cache_hits ELSE 0 END,"
    "    CASE WHEN state = 'done' THEN cache_saved_usd END, NULL, false, false"
    "  FROM tierq.daily_totals WHERE " PRUNED_DAYS_FILTER
    "), g AS ("
    "  SELECT grouping(kind) AS is_total, kind, coalesce(sum(n), 0) AS jobs,"
    "    coalesce(sum(n) FILTER (WHERE state = 'queued'), 0) AS queued,"
    "    coalesce(sum(n) FILTER (WHERE state = 'running'), 0) AS running,"
    "    coalesce(sum(n) FILTER (WHERE state = 'done'), 0) AS done,"
    "    coalesce(sum(n) FILTER (WHERE state = 'failed'), 0) AS failed,"
    "    coalesce(sum(n) FILTER (WHERE state = 'dead'), 0) AS dead,"
    "    coalesce(sum(n) FILTER (WHERE state = 'cancelled'), 0) AS cancelled,"
    "    coalesce(sum(cost_usd), 0) AS cost, coalesce(sum(baseline_cost_usd), 0) AS baseline,"
    "    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::bigint AS p50,"
    "    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::bigint AS p95,"
    "    count(*) FILTER (WHERE evaluated) AS evaluated, count(*) FILTER (WHERE correct) AS correct,"
    "    coalesce(sum(hits), 0) AS hits, coalesce(sum(cache_saved), 0) AS cache_saved"
    "  FROM j GROUP BY ROLLUP (kind)"
    ")"
    " SELECT is_total, kind, jobs, queued, running, done, failed, dead, cancelled, failed + dead,"
    "   round(cost, 6), round(baseline, 6), round(baseline - cost, 6),"
    "   CASE WHEN baseline > 0 THEN round(100 * (baseline - cost) / baseline, 2) END,"
    "   CASE WHEN baseline > 0 THEN round(100 * (baseline - cost) / baseline, 1) END,"
    "   p50, p95, evaluated, correct,"
    "   CASE WHEN evaluated > 0 THEN round(correct::numeric / evaluated, 6) END,"
    "   CASE WHEN evaluated > 0 THEN round(100 * correct::numeric / evaluated, 1) END,"
    "   hits, CASE WHEN done > 0 THEN round(hits::numeric / done, 6) END,"
    "   CASE WHEN done > 0 THEN round(100 * hits::numeric / done, 1) END, round(cache_saved, 6)"
    " FROM g ORDER BY is_total DESC, kind";

enum {
    RJ_IS_TOTAL, RJ_KIND, RJ_JOBS, RJ_QUEUED, RJ_RUNNING, RJ_DONE, RJ_FAILED, RJ_DEAD, RJ_CANCELLED,
    RJ_FAILED_OR_DEAD, RJ_COST, RJ_BASELINE, RJ_SAVED_USD, RJ_SAVED_PCT, RJ_SAVED_PCT1, RJ_P50, RJ_P95,
    RJ_EVALUATED, RJ_CORRECT, RJ_ACCURACY, RJ_ACCURACY_PCT1, RJ_HITS, RJ_HIT_RATE, RJ_HIT_PCT1, RJ_CACHE_SAVED,
    RJ_NCOLS
};

/* Done jobs by the tier that gave their answer (jobs.tier, jobs.model), per kind: how often each
 * tier answered and how often it was right. share_pct is of the kind's done jobs with a tier. Cache
 * hits are left out: no tier answered them (their tier is the one that answered an earlier job),
 * and counting them would weigh a tier's share and accuracy by how often its answers are reused.
 * Same filters and parameters as SQL_REPORT_JOBS. */
static const char *const SQL_REPORT_TIERS =
    "WITH j AS ("
    "  SELECT kind, tier, model, expected IS NOT NULL AS evaluated,"
    "    expected IS NOT NULL"
    "      AND coalesce(tierq.normalize_answer(result) = tierq.normalize_answer(expected), false) AS correct,"
    "    reason IS NOT DISTINCT FROM 'fallback' AS fallback"
    "  FROM tierq.jobs"
    "  WHERE state = 'done' AND tier IS NOT NULL AND NOT cache_hit"
    "    AND ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR coalesce(finished_at, created_at) >= now() - $2::bigint * interval '1 second')"
    "), g AS ("
    "  SELECT kind, tier, model, fallback, count(*) AS jobs, count(*) FILTER (WHERE evaluated) AS evaluated,"
    "    count(*) FILTER (WHERE correct) AS correct"
    "  FROM j GROUP BY kind, tier, model, fallback"
    ")"
    " SELECT kind, tier, model, jobs,"
    "   round(100 * jobs::numeric / sum(jobs) OVER (PARTITION BY kind), 2),"
    "   round(100 * jobs::numeric / sum(jobs) OVER (PARTITION BY kind), 1),"
    "   evaluated, correct,"
    "   CASE WHEN evaluated > 0 THEN round(correct::numeric / evaluated, 6) END,"
    "   CASE WHEN evaluated > 0 THEN round(100 * correct::numeric / evaluated, 1) END,"
    "   fallback"
    " FROM g ORDER BY kind, tier, fallback, model";

enum {
    RT_KIND, RT_TIER, RT_MODEL, RT_JOBS, RT_SHARE_PCT, RT_SHARE_PCT1, RT_EVALUATED, RT_CORRECT, RT_ACCURACY,
    RT_ACCURACY_PCT1, RT_FALLBACK, RT_NCOLS
};

/* Per model and in total, from the ledger and the summary rows of pruned calls (weight n as in
 * SQL_REPORT_JOBS; they have no latency). */
static const char *const SQL_REPORT_CALLS =
    "WITH c AS ("
    "  SELECT model, 1::bigint AS n, tokens_in, tokens_cached_in, tokens_out, cost_usd, latency_ms::float8 AS latency_ms,"
    "    CASE WHEN status <> 'ok' THEN 1 ELSE 0 END AS errors, purpose = 'shadow' AS shadow"
    "  FROM tierq.calls"
    /* requests still in flight (their intent, status sent) and never sent (cancelled) are not calls yet */
    "  WHERE status NOT IN ('sent', 'cancelled') AND ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR created_at >= now() - $2::bigint * interval '1 second')"
    "  UNION ALL"
    "  SELECT model, calls, tokens_in, tokens_cached_in, tokens_out, cost_usd, NULL, errors, false"
    "  FROM tierq.daily_call_totals WHERE " PRUNED_DAYS_FILTER
    ")"
    " SELECT grouping(model), model, coalesce(sum(n), 0),"
    "  coalesce(sum(tokens_in), 0), coalesce(sum(tokens_cached_in), 0), coalesce(sum(tokens_out), 0),"
    "  round(coalesce(sum(cost_usd), 0), 6),"
    "  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::bigint,"
    "  round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::bigint,"
    "  coalesce(sum(errors), 0), round(coalesce(sum(cost_usd) FILTER (WHERE shadow), 0), 6)"
    " FROM c GROUP BY ROLLUP (model) ORDER BY grouping(model) DESC, model";

/* RC_SHADOW_COST: the shadow calls' part of RC_COST (charged to no job; pruned days keep no purpose,
 * so their shadow calls count in RC_COST only). */
enum {
    RC_IS_TOTAL, RC_MODEL, RC_CALLS, RC_TOKENS_IN, RC_TOKENS_CACHED_IN, RC_TOKENS_OUT, RC_COST, RC_P50, RC_P95,
    RC_ERRORS, RC_SHADOW_COST, RC_NCOLS
};

/* Batching per kind, from the ledger, with the filters of SQL_REPORT_CALLS. One row per kind with
 * calls, by kind:
 *   mean batch size   average cardinality(job_ids) over answer calls (each call counts once,
 *                     whatever its status; NULL when the kind made no answer call)
 *   batched calls     answer calls that served more than one job
 *   tokens per job    sum(tokens_in) over every call of the kind (any purpose and status) divided
 *                     by the distinct jobs those calls served
 *   tokens / usd saved  sum(solo_tokens_in - tokens_in) and sum(solo_cost_usd - cost_usd) over the
 *                     calls that carry a solo estimate (the worker writes one for batched calls;
 *                     sum() skips the NULLs of single calls); can be negative
 * Every call serves at least one job (calls_serve_jobs), so the join finds every kind of g. */
static const char *const SQL_REPORT_BATCHING =
    "WITH c AS ("
    "  SELECT kind, job_ids, purpose = 'answer' AS answer, tokens_in, cost_usd, solo_tokens_in, solo_cost_usd"
    "  FROM tierq.calls"
    "  WHERE status NOT IN ('sent', 'cancelled') AND ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR created_at >= now() - $2::bigint * interval '1 second')"
    "), served AS ("
    "  SELECT kind, count(DISTINCT u.job_id) AS jobs FROM c CROSS JOIN LATERAL unnest(c.job_ids) AS u(job_id)"
    "  GROUP BY kind"
    "), g AS ("
    "  SELECT kind, avg(cardinality(job_ids)) FILTER (WHERE answer) AS mean_batch,"
    "    count(*) FILTER (WHERE answer AND cardinality(job_ids) > 1) AS batched,"
    "    sum(tokens_in) AS tokens_in,"
    "    coalesce(sum(solo_tokens_in - tokens_in), 0) AS tokens_saved,"
    "    coalesce(sum(solo_cost_usd - cost_usd), 0) AS saved"
    "  FROM c GROUP BY kind"
    ")"
    " SELECT g.kind, round(g.mean_batch, 2), g.batched,"
    "   CASE WHEN s.jobs > 0 THEN round(g.tokens_in / s.jobs, 2) END, g.tokens_saved, round(g.saved, 6)"
    " FROM g LEFT JOIN served s USING (kind) ORDER BY g.kind";

enum { RB_KIND, RB_MEAN_BATCH, RB_BATCHED, RB_TOKENS_PER_JOB, RB_TOKENS_SAVED, RB_SAVED_USD, RB_NCOLS };

/* Context compression per kind (sql/012), over the jobs of SQL_REPORT_JOBS (same filters), with the
 * totals row from ROLLUP (every kind of the selection has a row, zeros without compression):
 *   compressed, reused   jobs whose context went out compressed ('compressed' or 'reused'), and of
 *                        them the ones served by a stored compression; cleaned and failed counted
 *                        apart (cleaned: the free clean-up was enough; failed: the compressor's
 *                        output was unusable)
 *   tokens before/after  sums of context_tokens_before / _after over the compressed and reused jobs
 *   cost                 the 'compress' ledger rows that served jobs of the selection; a row whose
 *                        jobs lie partly outside it (--since cutting through a claim) counts for the
 *                        share of its jobs inside, so windows that tile time never count a row twice
 *   tokens / usd saved   sums of compress_tokens_saved / compress_saved_usd over every job (cleaned
 *                        ones too: their shorter context was billed for fewer tokens)
 *   net                  saved - cost, summed exactly and rounded once
 * A kind is active when any of these is not zero: the text lists only active kinds. The ledger is
 * joined through the jobs (not calls.run_name and created_at, as SQL_REPORT_BATCHING) so that the
 * cost and the savings it bought cover the same jobs, as cost and baseline do in SQL_REPORT_JOBS. */
static const char *const SQL_REPORT_COMPRESSION =
    "WITH j AS ("
    "  SELECT id, kind, compression, context_tokens_before, context_tokens_after, compress_tokens_saved,"
    "    compress_saved_usd"
    "  FROM tierq.jobs"
    "  WHERE ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR coalesce(finished_at, created_at) >= now() - $2::bigint * interval '1 second')"
    "), spent AS ("
    "  SELECT j.kind, c.cost_usd, cardinality(c.job_ids) AS served, count(*) AS inside"
    "  FROM tierq.calls c CROSS JOIN LATERAL unnest(c.job_ids) AS u(job_id) JOIN j ON j.id = u.job_id"
    "  WHERE c.purpose = 'compress' AND c.status NOT IN ('sent', 'cancelled')"
    "  GROUP BY c.id, j.kind"
    "), u AS ("
    "  SELECT kind, (compression IN ('compressed', 'reused'))::int AS compressed, (compression = 'reused')::int AS reused,"
    "    (compression = 'cleaned')::int AS cleaned, (compression = 'failed')::int AS failed,"
    "    CASE WHEN compression IN ('compressed', 'reused') THEN context_tokens_before END AS tb,"
    "    CASE WHEN compression IN ('compressed', 'reused') THEN context_tokens_after END AS ta,"
    "    compress_tokens_saved AS ts, compress_saved_usd AS su, NULL::numeric AS cost"
    "  FROM j"
    "  UNION ALL"
    "  SELECT kind, 0, 0, 0, 0, NULL, NULL, NULL, NULL,"
    "    CASE WHEN inside = served THEN cost_usd ELSE cost_usd * inside / served END"
    "  FROM spent"
    "  UNION ALL"
    /* pruned jobs: their sums, and the share of their compression calls each carried away */
    "  SELECT kind, jobs_compressed, jobs_reused, jobs_cleaned, jobs_compress_failed, context_tokens_before,"
    "    context_tokens_after, compress_tokens_saved, compress_saved_usd, compress_cost_usd"
    "  FROM tierq.daily_totals WHERE " PRUNED_DAYS_FILTER
    "), g AS ("
    "  SELECT grouping(kind) AS is_total, kind, coalesce(sum(compressed), 0) AS compressed,"
    "    coalesce(sum(reused), 0) AS reused, coalesce(sum(cleaned), 0) AS cleaned, coalesce(sum(failed), 0) AS failed,"
    "    coalesce(sum(tb), 0) AS tb, coalesce(sum(ta), 0) AS ta,"
    "    coalesce(sum(cost), 0) AS cost, coalesce(sum(ts), 0) AS ts, coalesce(sum(su), 0) AS su"
    "  FROM u GROUP BY ROLLUP (kind)"
    ")"
    " SELECT is_total, kind, compressed, reused, cleaned, failed, tb, ta,"
    "   CASE WHEN ta > 0 THEN round(tb::numeric / ta, 2) END, round(cost, 6), ts, round(su, 6), round(su - cost, 6),"
    "   compressed + cleaned + failed > 0 OR cost <> 0 OR ts <> 0 OR su <> 0"
    " FROM g ORDER BY is_total DESC, kind";

enum {
    RZ_IS_TOTAL, RZ_KIND, RZ_COMPRESSED, RZ_REUSED, RZ_CLEANED, RZ_FAILED, RZ_TOKENS_BEFORE, RZ_TOKENS_AFTER, RZ_RATIO,
    RZ_COST, RZ_TOKENS_SAVED, RZ_SAVED_USD, RZ_NET_USD, RZ_ACTIVE, RZ_NCOLS
};

/* Answers scored without the soft signals their kind's checks rely on (calls.missing_signals), per
 * kind and model, over answer calls that got a response: a provider that stops returning logprobs,
 * or a judge that stops giving verdicts, shows here instead of silently passing answers. Only
 * pairs with at least one such answer are listed. Same filters as SQL_REPORT_CALLS. */
static const char *const SQL_REPORT_SIGNALS =
    "SELECT kind, model, count(*) AS answers, count(*) FILTER (WHERE missing_signals IS NOT NULL) AS unscored,"
    "  string_agg(DISTINCT missing_signals, ' ')"
    " FROM tierq.calls"
    " WHERE purpose = 'answer' AND status = 'ok'"
    "   AND ($1::text IS NULL OR run_name = $1::text)"
    "   AND ($2::bigint IS NULL OR created_at >= now() - $2::bigint * interval '1 second')"
    " GROUP BY kind, model HAVING count(*) FILTER (WHERE missing_signals IS NOT NULL) > 0"
    " ORDER BY kind, model";

enum { RS_KIND, RS_MODEL, RS_ANSWERS, RS_UNSCORED, RS_SIGNALS, RS_NCOLS };

/* Jobs that ended without an answer, by kind, state and stable reason, with one example message:
 * what a nightly run's owner reads first. Same filters as SQL_REPORT_JOBS. */
static const char *const SQL_REPORT_FAILURES =
    "SELECT kind, state, coalesce(reason, '-'), count(*), left(min(error), 160)"
    " FROM tierq.jobs"
    " WHERE state IN ('failed', 'dead')"
    "   AND ($1::text IS NULL OR run_name = $1::text)"
    "   AND ($2::bigint IS NULL OR coalesce(finished_at, created_at) >= now() - $2::bigint * interval '1 second')"
    " GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC, 2, 3";

enum { RF_KIND, RF_STATE, RF_REASON, RF_JOBS, RF_EXAMPLE, RF_NCOLS };

/* What the router believed against what happened: done jobs with an expected answer, by kind, the
 * tier that answered and the score it accepted them with (jobs.quality) in tenths, with how many
 * were right. A calibrated router's 0.8-0.9 bucket is right 80-90% of the time; a bucket far above
 * its accuracy says the tier's confidence means less than its bar assumes. Cache hits are left
 * out, as in SQL_REPORT_TIERS (a reused answer's score was judged once). Same filters as
 * SQL_REPORT_JOBS. */
static const char *const SQL_REPORT_CONFIDENCE =
    "WITH j AS ("
    "  SELECT kind, tier, quality::float8 AS q,"
    "    coalesce(tierq.normalize_answer(result) = tierq.normalize_answer(expected), false) AS correct"
    "  FROM tierq.jobs"
    "  WHERE state = 'done' AND expected IS NOT NULL AND quality IS NOT NULL AND tier IS NOT NULL AND NOT cache_hit"
    "    AND ($1::text IS NULL OR run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR coalesce(finished_at, created_at) >= now() - $2::bigint * interval '1 second')"
    "), b AS (SELECT kind, tier, least(greatest(floor(q * 10)::int, 0), 9) AS bucket, q, correct FROM j)"
    " SELECT kind, tier, round(bucket / 10.0, 1), round((bucket + 1) / 10.0, 1), count(*),"
    "   round(avg(q)::numeric, 3), count(*) FILTER (WHERE correct),"
    "   round(count(*) FILTER (WHERE correct)::numeric / count(*), 3),"
    "   round(100 * count(*) FILTER (WHERE correct)::numeric / count(*), 1)"
    " FROM b GROUP BY kind, tier, bucket ORDER BY kind, tier, bucket";

enum { RQ_KIND, RQ_TIER, RQ_LO, RQ_HI, RQ_ANSWERS, RQ_MEAN, RQ_CORRECT, RQ_ACCURACY, RQ_ACCURACY_PCT1, RQ_NCOLS };

/* Shadow evaluation by kind and the tier that answered the job: shadow calls (their cost, charged to
 * no job), how many could be compared (an answer came back and the job is done), how many agreed
 * with the job's answer (normalized as accuracy is), with the 95% interval. Same filters as
 * SQL_REPORT_CALLS. */
static const char *const SQL_REPORT_SHADOW =
    "WITH s AS ("
    "  SELECT c.kind, c.tier, c.cost_usd,"
    "    c.status = 'ok' AND c.answer IS NOT NULL AND j.state = 'done' AS compared,"
    "    c.status = 'ok' AND j.state = 'done'"
    "      AND tierq.normalize_answer(c.answer) = tierq.normalize_answer(j.result) AS agreed"
    "  FROM tierq.calls c LEFT JOIN tierq.jobs j ON j.id = c.job_ids[1]"
    "  WHERE c.purpose = 'shadow' AND c.status NOT IN ('sent', 'cancelled')"
    "    AND ($1::text IS NULL OR c.run_name = $1::text)"
    "    AND ($2::bigint IS NULL OR c.created_at >= now() - $2::bigint * interval '1 second')"
    "), g AS ("
    "  SELECT kind, tier, count(*) AS calls, round(sum(cost_usd), 6) AS cost,"
    "    count(*) FILTER (WHERE compared) AS compared, count(*) FILTER (WHERE agreed) AS agreed"
    "  FROM s GROUP BY kind, tier"
    ")"
    " SELECT kind, tier, calls, cost, compared, agreed,"
    "   CASE WHEN compared > 0 THEN round(agreed::numeric / compared, 3) END,"
    "   round(100 * tierq.wilson_bound(agreed, compared, false))::int,"
    "   round(100 * tierq.wilson_bound(agreed, compared, true))::int,"
    "   CASE WHEN compared > 0 THEN round(100 * agreed::numeric / compared, 1) END"
    " FROM g ORDER BY kind, tier";

enum { RW_KIND, RW_TIER, RW_CALLS, RW_COST, RW_COMPARED, RW_AGREED, RW_AGREEMENT, RW_LOW, RW_HIGH, RW_PCT1, RW_NCOLS };

/* The live estimate per kind: its last shadow.window comparisons (tierq.shadow_estimates, sql/008),
 * flagged when the interval lies below the kind's min_agreement. Not limited by --since: the window
 * is the recent past already. */
static const char *const SQL_REPORT_SHADOW_LIVE =
    "SELECT kind, shadow_window, compared, agreed, round(agreement::numeric, 3), round(100 * low)::int,"
    "  round(100 * high)::int, round(min_agreement::numeric, 3), below, round(100 * agreement::numeric, 1)"
    " FROM tierq.shadow_estimates($1::text) WHERE $2::bigint IS NULL OR $2::bigint >= 0";

enum { RL_KIND, RL_WINDOW, RL_COMPARED, RL_AGREED, RL_AGREEMENT, RL_LOW, RL_HIGH, RL_MIN, RL_BELOW, RL_PCT1, RL_NCOLS };

/* Each tier against its own past (tierq.shadow_tier_drift, sql/010): its latest comparisons against
 * the ones before, flagged when the fall is far beyond chance. Not limited by --since either. */
static const char *const SQL_REPORT_SHADOW_DRIFT =
    "SELECT kind, tier, recent_compared, recent_agreed,"
    "  round(100 * recent_agreed::numeric / nullif(recent_compared, 0), 1), reference_compared,"
    "  round(100 * reference_agreed::numeric / nullif(reference_compared, 0), 1), round(z::numeric, 1), dropped"
    " FROM tierq.shadow_tier_drift($1::text) WHERE $2::bigint IS NULL OR $2::bigint >= 0";

enum { RD_KIND, RD_TIER, RD_RECENT, RD_RECENT_AGREED, RD_RECENT_PCT, RD_REFERENCE, RD_REFERENCE_PCT, RD_Z, RD_DROPPED,
       RD_NCOLS };

/* The first-tier shifts a running tierq saw (sql/016), newest first: each is the change point the
 * tiers of its kind are held to their past from, for 7 days. Limited by --run and --since. */
static const char *const SQL_REPORT_TIER_SHIFTS =
    "SELECT kind, to_char(detected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), run_name, recent_jobs,"
    "  round(100 * recent_first::numeric / nullif(recent_jobs, 0)), reference_jobs,"
    "  round(100 * reference_first::numeric / nullif(reference_jobs, 0)), round(z::numeric, 1)"
    " FROM tierq.tier_shifts WHERE ($1::text IS NULL OR run_name = $1::text)"
    "  AND ($2::bigint IS NULL OR detected_at > now() - make_interval(secs => $2::bigint))"
    " ORDER BY id DESC LIMIT 20";

enum { RH_KIND, RH_AT, RH_RUN, RH_RECENT, RH_RECENT_PCT, RH_REFERENCE, RH_REFERENCE_PCT, RH_Z, RH_NCOLS };

/* The pruned days this selection adds (sql/014), for the footnote and totals.pruned. */
static const char *const SQL_REPORT_PRUNED =
    "WITH d AS ("
    "  SELECT day, jobs, 0::bigint AS calls FROM tierq.daily_totals WHERE " PRUNED_DAYS_FILTER
    "  UNION ALL"
    "  SELECT day, 0, calls FROM tierq.daily_call_totals WHERE " PRUNED_DAYS_FILTER
    ")"
    " SELECT count(DISTINCT day), min(day)::text, max(day)::text, coalesce(sum(jobs), 0), coalesce(sum(calls), 0)"
    " FROM d";

enum { RP_DAYS, RP_FIRST, RP_LAST, RP_JOBS, RP_CALLS, RP_NCOLS };

static int find_total(const PGresult *r)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), "1") == 0)
            return i;
    return -1;
}

/* ", "tiers": [...]" for one kind: its rows of the tiers result (sorted by kind, so a kind's rows are
 * contiguous; a report has few kinds and tiers, a scan per kind is fine). */
static void emit_json_tiers(Emit *e, const PGresult *tiers, const char *kind)
{
    emit(e, ", \"tiers\": [");
    int first = 1;
    for (int i = 0; i < PQntuples(tiers); i++) {
        if (strcmp(PQgetvalue(tiers, i, RT_KIND), kind) != 0)
            continue;
        emit(e, "%s{\"tier\": %s, \"model\": ", first ? "" : ", ", PQgetvalue(tiers, i, RT_TIER));
        first = 0;
        emit_json_str(e, cell(tiers, i, RT_MODEL));
        emit(e, ", \"jobs\": %s, \"share_pct\": %s, \"accuracy\": %s, \"evaluated\": %s, \"fallback\": %s}",
             json_num(tiers, i, RT_JOBS), json_num(tiers, i, RT_SHARE_PCT), json_num(tiers, i, RT_ACCURACY),
             json_num(tiers, i, RT_EVALUATED), PQgetvalue(tiers, i, RT_FALLBACK)[0] == 't' ? "true" : "false");
    }
    emit(e, "]");
}

/* The row of a per-kind result whose column col is kind, or -1 (for batching: the kind made no
 * call). Totals rows have a NULL kind and never match. */
static int find_kind(const PGresult *r, int col, const char *kind)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (!PQgetisnull(r, i, col) && strcmp(PQgetvalue(r, i, col), kind) == 0)
            return i;
    return -1;
}

/* ", "batching": {...}" for one kind; a kind without calls in the selection gets nulls and zeros. */
static void emit_json_batching(Emit *e, const PGresult *batching, const char *kind)
{
    int i = find_kind(batching, RB_KIND, kind);
    if (i < 0) {
        emit(e, ", \"batching\": {\"mean_batch_size\": null, \"batched_calls\": 0, \"input_tokens_per_job\": null, "
                "\"tokens_saved\": 0, \"saved_usd\": 0.000000}");
        return;
    }
    emit(e,
         ", \"batching\": {\"mean_batch_size\": %s, \"batched_calls\": %s, \"input_tokens_per_job\": %s, "
         "\"tokens_saved\": %s, \"saved_usd\": %s}",
         json_num(batching, i, RB_MEAN_BATCH), json_num(batching, i, RB_BATCHED),
         json_num(batching, i, RB_TOKENS_PER_JOB), json_num(batching, i, RB_TOKENS_SAVED),
         json_num(batching, i, RB_SAVED_USD));
}

/* ", "cache": {...}" from a row of the jobs result (a kind's, or the totals). */
static void emit_json_cache(Emit *e, const PGresult *jobs, int i)
{
    emit(e, ", \"cache\": {\"hits\": %s, \"hit_rate\": %s, \"saved_usd\": %s}", json_num(jobs, i, RJ_HITS),
         json_num(jobs, i, RJ_HIT_RATE), json_num(jobs, i, RJ_CACHE_SAVED));
}

/* ", "compression": {...}" from row i of the compression result (a kind's, or the totals); -1 (a
 * kind the statement did not list) gets the zeros of a kind without compression. */
static void emit_json_compression(Emit *e, const PGresult *z, int i)
{
    if (i < 0) {
        emit(e, ", \"compression\": {\"jobs_compressed\": 0, \"jobs_reused\": 0, \"jobs_cleaned\": 0, \"jobs_failed\": 0, "
                "\"context_tokens_before\": 0, \"context_tokens_after\": 0, \"compression_ratio\": null, "
                "\"cost_usd\": 0.000000, \"tokens_saved\": 0, \"saved_usd\": 0.000000, \"net_saved_usd\": 0.000000}");
        return;
    }
    emit(e,
         ", \"compression\": {\"jobs_compressed\": %s, \"jobs_reused\": %s, \"jobs_cleaned\": %s, \"jobs_failed\": %s, "
         "\"context_tokens_before\": %s, \"context_tokens_after\": %s, \"compression_ratio\": %s, \"cost_usd\": %s, "
         "\"tokens_saved\": %s, \"saved_usd\": %s, \"net_saved_usd\": %s}",
         json_num(z, i, RZ_COMPRESSED), json_num(z, i, RZ_REUSED), json_num(z, i, RZ_CLEANED), json_num(z, i, RZ_FAILED),
         json_num(z, i, RZ_TOKENS_BEFORE), json_num(z, i, RZ_TOKENS_AFTER), json_num(z, i, RZ_RATIO),
         json_num(z, i, RZ_COST), json_num(z, i, RZ_TOKENS_SAVED), json_num(z, i, RZ_SAVED_USD),
         json_num(z, i, RZ_NET_USD));
}

/* The result sets one report is made of. */
typedef struct ReportData {
    const PGresult *jobs, *calls, *tiers, *batching, *signals, *failures, *confidence, *shadow, *shadow_live,
        *shadow_drift, *tier_shifts, *compression, *pruned;
    int jt, ct, zt; /* rows of the totals */
} ReportData;

static void render_json_extras(Emit *e, const ReportData *d)
{
    emit(e, " \"missing_signals\": [");
    for (int i = 0; i < PQntuples(d->signals); i++) {
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(d->signals, i, RS_KIND));
        emit(e, ", \"model\": ");
        emit_json_str(e, PQgetvalue(d->signals, i, RS_MODEL));
        emit(e, ", \"answer_calls\": %s, \"without_signals\": %s, \"signals\": ", json_num(d->signals, i, RS_ANSWERS),
             json_num(d->signals, i, RS_UNSCORED));
        emit_json_str(e, PQgetvalue(d->signals, i, RS_SIGNALS));
        emit(e, "}");
    }
    emit(e, "%s],\n \"failures\": [", PQntuples(d->signals) ? "\n " : "");
    for (int i = 0; i < PQntuples(d->failures); i++) {
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(d->failures, i, RF_KIND));
        emit(e, ", \"state\": ");
        emit_json_str(e, PQgetvalue(d->failures, i, RF_STATE));
        emit(e, ", \"reason\": ");
        emit_json_str(e, PQgetvalue(d->failures, i, RF_REASON));
        emit(e, ", \"jobs\": %s, \"example\": ", json_num(d->failures, i, RF_JOBS));
        emit_json_str(e, cell(d->failures, i, RF_EXAMPLE));
        emit(e, "}");
    }
    emit(e, "%s],\n \"confidence\": [", PQntuples(d->failures) ? "\n " : "");
    for (int i = 0; i < PQntuples(d->confidence); i++) {
        const PGresult *q = d->confidence;
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(q, i, RQ_KIND));
        emit(e, ", \"tier\": %s, \"score_from\": %s, \"score_to\": %s, \"answers\": %s, \"mean_score\": %s,"
                " \"correct\": %s, \"accuracy\": %s}",
             json_num(q, i, RQ_TIER), json_num(q, i, RQ_LO), json_num(q, i, RQ_HI), json_num(q, i, RQ_ANSWERS),
             json_num(q, i, RQ_MEAN), json_num(q, i, RQ_CORRECT), json_num(q, i, RQ_ACCURACY));
    }
    emit(e, "%s],\n \"shadow\": {\"tiers\": [", PQntuples(d->confidence) ? "\n " : "");
    for (int i = 0; i < PQntuples(d->shadow); i++) {
        const PGresult *w = d->shadow;
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(w, i, RW_KIND));
        emit(e, ", \"tier\": %s, \"calls\": %s, \"cost_usd\": %s, \"compared\": %s, \"agreed\": %s, \"agreement\": %s,"
                " \"low_pct\": %s, \"high_pct\": %s}",
             json_num(w, i, RW_TIER), json_num(w, i, RW_CALLS), json_num(w, i, RW_COST), json_num(w, i, RW_COMPARED),
             json_num(w, i, RW_AGREED), json_num(w, i, RW_AGREEMENT), json_num(w, i, RW_LOW), json_num(w, i, RW_HIGH));
    }
    emit(e, "%s], \"estimates\": [", PQntuples(d->shadow) ? "\n " : "");
    for (int i = 0; i < PQntuples(d->shadow_live); i++) {
        const PGresult *l = d->shadow_live;
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(l, i, RL_KIND));
        emit(e, ", \"window\": %s, \"compared\": %s, \"agreed\": %s, \"agreement\": %s, \"low_pct\": %s,"
                " \"high_pct\": %s, \"min_agreement\": %s, \"below\": %s}",
             json_num(l, i, RL_WINDOW), json_num(l, i, RL_COMPARED), json_num(l, i, RL_AGREED),
             json_num(l, i, RL_AGREEMENT), json_num(l, i, RL_LOW), json_num(l, i, RL_HIGH), json_num(l, i, RL_MIN),
             PQgetvalue(l, i, RL_BELOW)[0] == 't' ? "true" : "false");
    }
    emit(e, "%s], \"tier_drift\": [", PQntuples(d->shadow_live) ? "\n " : "");
    for (int i = 0; i < PQntuples(d->shadow_drift); i++) {
        const PGresult *r = d->shadow_drift;
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(r, i, RD_KIND));
        emit(e, ", \"tier\": %s, \"recent_compared\": %s, \"recent_agreed\": %s, \"reference_compared\": %s,"
                " \"recent_pct\": %s, \"reference_pct\": %s, \"z\": %s, \"dropped\": %s}",
             json_num(r, i, RD_TIER), json_num(r, i, RD_RECENT), json_num(r, i, RD_RECENT_AGREED),
             json_num(r, i, RD_REFERENCE), json_num(r, i, RD_RECENT_PCT), json_num(r, i, RD_REFERENCE_PCT),
             json_num(r, i, RD_Z), PQgetvalue(r, i, RD_DROPPED)[0] == 't' ? "true" : "false");
    }
    emit(e, "%s], \"tier_shifts\": [", PQntuples(d->shadow_drift) ? "\n " : "");
    for (int i = 0; i < PQntuples(d->tier_shifts); i++) {
        const PGresult *h = d->tier_shifts;
        emit(e, "%s\n  {\"kind\": ", i ? "," : "");
        emit_json_str(e, PQgetvalue(h, i, RH_KIND));
        emit(e, ", \"detected_at\": ");
        emit_json_str(e, PQgetvalue(h, i, RH_AT));
        emit(e, ", \"run\": ");
        emit_json_str(e, PQgetisnull(h, i, RH_RUN) ? NULL : PQgetvalue(h, i, RH_RUN));
        emit(e, ", \"recent_jobs\": %s, \"recent_first_pct\": %s, \"reference_jobs\": %s, \"reference_first_pct\": %s,"
                " \"z\": %s}",
             json_num(h, i, RH_RECENT), json_num(h, i, RH_RECENT_PCT), json_num(h, i, RH_REFERENCE),
             json_num(h, i, RH_REFERENCE_PCT), json_num(h, i, RH_Z));
    }
    emit(e, "%s]},\n", PQntuples(d->tier_shifts) ? "\n " : "");
}

static void render_text_extras(Emit *e, const ReportData *d)
{
    emit(e, "\nanswers scored without their signals (checks.missing_signal decides what they score)\n");
    emit(e, "  %-16s %-20s %12s %16s  %s\n", "kind", "model", "answer_calls", "without_signals", "missing");
    for (int i = 0; i < PQntuples(d->signals); i++)
        emit(e, "  %-16s %-20s %12s %16s  %s\n", PQgetvalue(d->signals, i, RS_KIND), PQgetvalue(d->signals, i, RS_MODEL),
             PQgetvalue(d->signals, i, RS_ANSWERS), PQgetvalue(d->signals, i, RS_UNSCORED),
             PQgetvalue(d->signals, i, RS_SIGNALS));
    if (PQntuples(d->signals) == 0)
        emit(e, "  (none: every configured signal arrived)\n");
    emit(e, "\njobs without an answer, by reason\n");
    emit(e, "  %-16s %-7s %-26s %7s  %s\n", "kind", "state", "reason", "jobs", "example");
    for (int i = 0; i < PQntuples(d->failures); i++)
        emit(e, "  %-16s %-7s %-26s %7s  %s\n", PQgetvalue(d->failures, i, RF_KIND), PQgetvalue(d->failures, i, RF_STATE),
             PQgetvalue(d->failures, i, RF_REASON), PQgetvalue(d->failures, i, RF_JOBS),
             text_cell(d->failures, i, RF_EXAMPLE));
    if (PQntuples(d->failures) == 0)
        emit(e, "  (none)\n");
    emit(e, "\nrouter confidence against what happened (done jobs with an expected answer)\n");
    emit(e, "  %-16s %4s  %-11s %7s %10s  %s\n", "kind", "tier", "score", "answers", "mean_score", "right");
    for (int i = 0; i < PQntuples(d->confidence); i++) {
        const PGresult *q = d->confidence;
        char range[32], right[64];
        snprintf(range, sizeof range, "%s-%s", PQgetvalue(q, i, RQ_LO), PQgetvalue(q, i, RQ_HI));
        snprintf(right, sizeof right, "%s%% (%s)", PQgetvalue(q, i, RQ_ACCURACY_PCT1), PQgetvalue(q, i, RQ_CORRECT));
        emit(e, "  %-16s %4s  %-11s %7s %10s  %s\n", PQgetvalue(q, i, RQ_KIND), PQgetvalue(q, i, RQ_TIER), range,
             PQgetvalue(q, i, RQ_ANSWERS), PQgetvalue(q, i, RQ_MEAN), right);
    }
    if (PQntuples(d->confidence) == 0)
        emit(e, "  (no done jobs with an expected answer)\n");
    emit(e, "\nshadow evaluation (jobs a cheaper tier answered, asked again of the baseline model; agreement\n"
            "estimates accuracy against it; cost charged to no job)\n");
    emit(e, "  %-16s %4s %7s %9s %9s  %-18s %12s\n", "kind", "tier", "calls", "compared", "agreed", "agreement (95%)",
         "cost_usd");
    for (int i = 0; i < PQntuples(d->shadow); i++) {
        const PGresult *w = d->shadow;
        char agree[48];
        if (cell(w, i, RW_PCT1))
            snprintf(agree, sizeof agree, "%s%% (%s-%s%%)", PQgetvalue(w, i, RW_PCT1), PQgetvalue(w, i, RW_LOW),
                     PQgetvalue(w, i, RW_HIGH));
        else
            snprintf(agree, sizeof agree, "-");
        emit(e, "  %-16s %4s %7s %9s %9s  %-18s %12s\n", PQgetvalue(w, i, RW_KIND), PQgetvalue(w, i, RW_TIER),
             PQgetvalue(w, i, RW_CALLS), PQgetvalue(w, i, RW_COMPARED), PQgetvalue(w, i, RW_AGREED), agree,
             text_cell(w, i, RW_COST));
    }
    if (PQntuples(d->shadow) == 0)
        emit(e, "  (no shadow calls: a kind samples them with \"shadow\": {\"rate\": ...})\n");
    for (int i = 0; i < PQntuples(d->shadow_live); i++) {
        const PGresult *l = d->shadow_live;
        if (i == 0)
            emit(e, "  live estimate, each kind's last shadow comparisons:\n");
        if (atoll(PQgetvalue(l, i, RL_COMPARED)) == 0) {
            emit(e, "    %-16s no comparison yet\n", PQgetvalue(l, i, RL_KIND));
            continue;
        }
        emit(e, "    %-16s %s%% of the last %s (95%%: %s-%s%%), min_agreement %s%s\n", PQgetvalue(l, i, RL_KIND),
             PQgetvalue(l, i, RL_PCT1), PQgetvalue(l, i, RL_COMPARED), PQgetvalue(l, i, RL_LOW), PQgetvalue(l, i, RL_HIGH),
             PQgetvalue(l, i, RL_MIN),
             PQgetvalue(l, i, RL_BELOW)[0] == 't' ? "  BELOW: its answers have drifted from the baseline model's" : "");
    }
    for (int i = 0; i < PQntuples(d->shadow_drift); i++) {
        const PGresult *r = d->shadow_drift;
        if (i == 0)
            emit(e, "  each tier against its own past (latest comparisons, the ones before):\n");
        emit(e, "    %-16s tier %s  %s%% of the last %s, %s%% of the %s before%s\n", PQgetvalue(r, i, RD_KIND),
             PQgetvalue(r, i, RD_TIER), text_cell(r, i, RD_RECENT_PCT), PQgetvalue(r, i, RD_RECENT),
             text_cell(r, i, RD_REFERENCE_PCT), PQgetvalue(r, i, RD_REFERENCE),
             PQgetvalue(r, i, RD_DROPPED)[0] == 't' ? "  DROPPED: this tier has drifted" : "");
    }
    for (int i = 0; i < PQntuples(d->tier_shifts); i++) {
        const PGresult *h = d->tier_shifts;
        if (i == 0)
            emit(e, "  first-tier shifts seen (each tier is held to its past from there, for 7 days):\n");
        bool named = !PQgetisnull(h, i, RH_RUN);
        emit(e, "    %-16s %s  first tier %s%% of the last %s jobs against %s%% of the %s before (z %s)%s%s\n",
             PQgetvalue(h, i, RH_KIND), PQgetvalue(h, i, RH_AT), text_cell(h, i, RH_RECENT_PCT),
             PQgetvalue(h, i, RH_RECENT), text_cell(h, i, RH_REFERENCE_PCT), PQgetvalue(h, i, RH_REFERENCE),
             text_cell(h, i, RH_Z), named ? ", run " : "", named ? PQgetvalue(h, i, RH_RUN) : "");
    }
}

static void render_json(Emit *e, const ReportOptions *opt, const ReportData *d)
{
    const PGresult *jobs = d->jobs, *calls = d->calls, *tiers = d->tiers, *batching = d->batching;
    int jt = d->jt, ct = d->ct;
    emit(e, "{\"filters\": {\"run\": ");
    emit_json_str(e, opt->run_name);
    if (opt->since_s > 0)
        emit(e, ", \"since_s\": %ld},\n", opt->since_s);
    else
        emit(e, ", \"since_s\": null},\n");

    emit(e,
         " \"totals\": {\"jobs\": %s, \"jobs_by_state\": {\"queued\": %s, \"running\": %s, \"done\": %s, "
         "\"failed\": %s, \"dead\": %s, \"cancelled\": %s}, ",
         json_num(jobs, jt, RJ_JOBS), json_num(jobs, jt, RJ_QUEUED), json_num(jobs, jt, RJ_RUNNING),
         json_num(jobs, jt, RJ_DONE), json_num(jobs, jt, RJ_FAILED), json_num(jobs, jt, RJ_DEAD),
         json_num(jobs, jt, RJ_CANCELLED));
    emit(e, "\"calls\": %s, \"tokens_in\": %s, \"tokens_cached_in\": %s, \"tokens_out\": %s, ",
         json_num(calls, ct, RC_CALLS), json_num(calls, ct, RC_TOKENS_IN), json_num(calls, ct, RC_TOKENS_CACHED_IN),
         json_num(calls, ct, RC_TOKENS_OUT));
    emit(e, "\"cost_usd\": %s, \"baseline_cost_usd\": %s, \"saved_usd\": %s, \"saved_pct\": %s",
         json_num(jobs, jt, RJ_COST), json_num(jobs, jt, RJ_BASELINE), json_num(jobs, jt, RJ_SAVED_USD),
         json_num(jobs, jt, RJ_SAVED_PCT));
    emit(e, ", \"spend_usd\": %s, \"shadow_cost_usd\": %s", json_num(calls, ct, RC_COST),
         json_num(calls, ct, RC_SHADOW_COST));
    emit_json_cache(e, jobs, jt);
    emit_json_compression(e, d->compression, d->zt);
    emit(e, ", \"pruned\": {\"days\": %s, \"first_day\": ", json_num(d->pruned, 0, RP_DAYS));
    emit_json_str(e, cell(d->pruned, 0, RP_FIRST));
    emit(e, ", \"last_day\": ");
    emit_json_str(e, cell(d->pruned, 0, RP_LAST));
    emit(e, ", \"jobs\": %s, \"calls\": %s}", json_num(d->pruned, 0, RP_JOBS), json_num(d->pruned, 0, RP_CALLS));
    emit(e, "},\n");

    emit(e, " \"models\": [");
    int first = 1;
    for (int i = 0; i < PQntuples(calls); i++) {
        if (i == ct)
            continue;
        emit(e, "%s\n  {\"model\": ", first ? "" : ",");
        first = 0;
        emit_json_str(e, PQgetvalue(calls, i, RC_MODEL));
        emit(e,
             ", \"calls\": %s, \"tokens_in\": %s, \"tokens_cached_in\": %s, \"tokens_out\": %s, \"cost_usd\": %s, "
             "\"latency_p50_ms\": %s, \"latency_p95_ms\": %s, \"errors\": %s}",
             json_num(calls, i, RC_CALLS), json_num(calls, i, RC_TOKENS_IN), json_num(calls, i, RC_TOKENS_CACHED_IN),
             json_num(calls, i, RC_TOKENS_OUT), json_num(calls, i, RC_COST), json_num(calls, i, RC_P50),
             json_num(calls, i, RC_P95), json_num(calls, i, RC_ERRORS));
    }
    emit(e, "%s],\n", first ? "" : "\n ");
    render_json_extras(e, d);

    emit(e, " \"kinds\": [");
    first = 1;
    for (int i = 0; i < PQntuples(jobs); i++) {
        if (i == jt)
            continue;
        emit(e, "%s\n  {\"kind\": ", first ? "" : ",");
        first = 0;
        emit_json_str(e, PQgetvalue(jobs, i, RJ_KIND));
        emit(e,
             ", \"jobs\": %s, \"done\": %s, \"failed\": %s, \"cost_usd\": %s, \"baseline_cost_usd\": %s, "
             "\"saved_pct\": %s, \"latency_p50_ms\": %s, \"latency_p95_ms\": %s, \"accuracy\": %s, "
             "\"evaluated\": %s",
             json_num(jobs, i, RJ_JOBS), json_num(jobs, i, RJ_DONE), json_num(jobs, i, RJ_FAILED_OR_DEAD),
             json_num(jobs, i, RJ_COST), json_num(jobs, i, RJ_BASELINE), json_num(jobs, i, RJ_SAVED_PCT),
             json_num(jobs, i, RJ_P50), json_num(jobs, i, RJ_P95), json_num(jobs, i, RJ_ACCURACY),
             json_num(jobs, i, RJ_EVALUATED));
        emit_json_tiers(e, tiers, PQgetvalue(jobs, i, RJ_KIND));
        emit_json_batching(e, batching, PQgetvalue(jobs, i, RJ_KIND));
        emit_json_cache(e, jobs, i);
        emit_json_compression(e, d->compression, find_kind(d->compression, RZ_KIND, PQgetvalue(jobs, i, RJ_KIND)));
        emit(e, "}");
    }
    emit(e, "%s]}\n", first ? "" : "\n ");
}

/* "40.0% (4/10)" of a jobs row's done jobs, or "-" without done jobs. */
static void cache_rate_text(const PGresult *jobs, int i, char *out, size_t cap)
{
    if (cell(jobs, i, RJ_HIT_PCT1))
        snprintf(out, cap, "%s%% (%s/%s)", PQgetvalue(jobs, i, RJ_HIT_PCT1), PQgetvalue(jobs, i, RJ_HITS),
                 PQgetvalue(jobs, i, RJ_DONE));
    else
        snprintf(out, cap, "-");
}

static bool compression_active(const PGresult *z, int i)
{
    return i >= 0 && PQgetvalue(z, i, RZ_ACTIVE)[0] == 't';
}

/* "8 (3 reused)": jobs whose context went out compressed. */
static void compressed_text(const PGresult *z, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s (%s reused)", PQgetvalue(z, i, RZ_COMPRESSED), PQgetvalue(z, i, RZ_REUSED));
}

/* The totals section's compression lines (row zt of the compression result), or one line saying
 * there was none. */
static void render_text_compression_totals(Emit *e, const PGresult *z, int zt)
{
    if (!compression_active(z, zt)) {
        emit(e, "  %-18s none in this selection\n", "compression");
        return;
    }
    char compressed[64];
    compressed_text(z, zt, compressed, sizeof compressed);
    emit(e, "  %-18s %s, %s cleaned, %s failed\n", "compressed", compressed, PQgetvalue(z, zt, RZ_CLEANED),
         PQgetvalue(z, zt, RZ_FAILED));
    emit(e, "  %-18s %s before, %s after (ratio %s)\n", "context_tokens", PQgetvalue(z, zt, RZ_TOKENS_BEFORE),
         PQgetvalue(z, zt, RZ_TOKENS_AFTER), text_cell(z, zt, RZ_RATIO));
    emit(e, "  %-18s %s (the compression calls; part of cost_usd)\n", "compress_cost_usd", PQgetvalue(z, zt, RZ_COST));
    emit(e, "  %-18s %s (%s input tokens the shorter contexts did not send)\n", "compress_saved_usd",
         PQgetvalue(z, zt, RZ_SAVED_USD), PQgetvalue(z, zt, RZ_TOKENS_SAVED));
    emit(e, "  %-18s %s (saved - cost)\n", "compress_net_usd", PQgetvalue(z, zt, RZ_NET_USD));
}

/* One line per kind with compression activity in the selection; a note when none had any. */
static void render_text_compression(Emit *e, const PGresult *z)
{
    emit(e, "\nper kind: context compression (cost: the compression calls; saved: what the shorter contexts\n"
            "did not send, in input tokens and dollars; net = saved - cost)\n");
    emit(e, "  %-16s %16s %7s %6s %13s %12s %7s %12s %12s %12s %12s\n", "kind", "compressed", "cleaned", "failed",
         "tokens_before", "tokens_after", "ratio", "cost_usd", "tokens_saved", "saved_usd", "net_usd");
    int shown = 0;
    for (int i = 0; i < PQntuples(z); i++) {
        if (PQgetvalue(z, i, RZ_IS_TOTAL)[0] == '1' || !compression_active(z, i))
            continue;
        char compressed[64];
        compressed_text(z, i, compressed, sizeof compressed);
        emit(e, "  %-16s %16s %7s %6s %13s %12s %7s %12s %12s %12s %12s\n", PQgetvalue(z, i, RZ_KIND), compressed,
             PQgetvalue(z, i, RZ_CLEANED), PQgetvalue(z, i, RZ_FAILED), PQgetvalue(z, i, RZ_TOKENS_BEFORE),
             PQgetvalue(z, i, RZ_TOKENS_AFTER), text_cell(z, i, RZ_RATIO), PQgetvalue(z, i, RZ_COST),
             PQgetvalue(z, i, RZ_TOKENS_SAVED), PQgetvalue(z, i, RZ_SAVED_USD), PQgetvalue(z, i, RZ_NET_USD));
        shown++;
    }
    if (shown == 0)
        emit(e, "  (none: a kind compresses long contexts with \"compress\": {\"enabled\": true, ...})\n");
}

/* The footnote of the totals when the selection includes pruned days (nothing otherwise). */
static void render_text_pruned(Emit *e, const ReportOptions *opt, const PGresult *p)
{
    if (atoll(PQgetvalue(p, 0, RP_DAYS)) == 0)
        return;
    emit(e, "  (includes %s pruned day%s, %s to %s UTC: %s jobs and %s calls from tierq.daily_totals\n"
            "   and tierq.daily_call_totals; latency, accuracy, tiers, batching, failures, confidence and\n"
            "   shadow cover the jobs still stored%s)\n",
         PQgetvalue(p, 0, RP_DAYS), strcmp(PQgetvalue(p, 0, RP_DAYS), "1") == 0 ? "" : "s",
         text_cell(p, 0, RP_FIRST), text_cell(p, 0, RP_LAST), PQgetvalue(p, 0, RP_JOBS), PQgetvalue(p, 0, RP_CALLS),
         opt->since_s > 0 ? "; a pruned day counts only when all of it lies inside --since" : "");
}

static void render_text(Emit *e, const ReportOptions *opt, const ReportData *d)
{
    const PGresult *jobs = d->jobs, *calls = d->calls, *tiers = d->tiers, *batching = d->batching;
    int jt = d->jt, ct = d->ct;
    emit(e, "tierq report: %s%s", opt->run_name ? "run " : "all runs", opt->run_name ? opt->run_name : "");
    if (opt->since_s > 0)
        emit(e, ", last %lds\n", opt->since_s);
    else
        emit(e, ", all time\n");

    emit(e, "\ntotals\n");
    emit(e, "  %-18s %s (queued %s, running %s, done %s, failed %s, dead %s, cancelled %s)\n", "jobs",
         text_cell(jobs, jt, RJ_JOBS), text_cell(jobs, jt, RJ_QUEUED), text_cell(jobs, jt, RJ_RUNNING),
         text_cell(jobs, jt, RJ_DONE), text_cell(jobs, jt, RJ_FAILED), text_cell(jobs, jt, RJ_DEAD),
         text_cell(jobs, jt, RJ_CANCELLED));
    emit(e, "  %-18s %s\n", "calls", text_cell(calls, ct, RC_CALLS));
    emit(e, "  %-18s %s in, %s cached in, %s out\n", "tokens", text_cell(calls, ct, RC_TOKENS_IN),
         text_cell(calls, ct, RC_TOKENS_CACHED_IN), text_cell(calls, ct, RC_TOKENS_OUT));
    emit(e, "  %-18s %s\n", "cost_usd", text_cell(jobs, jt, RJ_COST));
    emit(e, "  %-18s %s\n", "baseline_cost_usd", text_cell(jobs, jt, RJ_BASELINE));
    emit(e, "  %-18s %s\n", "saved_usd", text_cell(jobs, jt, RJ_SAVED_USD));
    if (cell(jobs, jt, RJ_SAVED_PCT1))
        emit(e, "  saved %s%% against the all-baseline cost\n", PQgetvalue(jobs, jt, RJ_SAVED_PCT1));
    else
        emit(e, "  saved: no baseline cost recorded\n");
    /* what was spent: every call, the shadow calls too (charged to no job, so not in cost_usd); the
     * dollars as the database summed them, the share below the baseline a ratio for reading only */
    double spend = strtod(PQgetvalue(calls, ct, RC_COST), NULL), base = strtod(PQgetvalue(jobs, jt, RJ_BASELINE), NULL);
    if (strtod(PQgetvalue(calls, ct, RC_SHADOW_COST), NULL) > 0 && base > 0)
        emit(e, "  %-18s %s (every call; shadow calls %s of it): %.1f%% below the all-baseline cost\n", "spend_usd",
             PQgetvalue(calls, ct, RC_COST), PQgetvalue(calls, ct, RC_SHADOW_COST), 100.0 * (1.0 - spend / base));
    else
        emit(e, "  %-18s %s (every call)\n", "spend_usd", PQgetvalue(calls, ct, RC_COST));
    char rate[96];
    cache_rate_text(jobs, jt, rate, sizeof rate);
    emit(e, "  %-18s %s\n", "cache_hits", rate);
    emit(e, "  %-18s %s (what the hits' answers cost when they were produced; part of saved_usd)\n",
         "cache_saved_usd", text_cell(jobs, jt, RJ_CACHE_SAVED));
    render_text_compression_totals(e, d->compression, d->zt);
    render_text_pruned(e, opt, d->pruned);

    emit(e, "\nper model\n");
    emit(e, "  %-20s %8s %12s %12s %12s %14s %9s %9s %7s\n", "model", "calls", "tokens_in", "cached_in",
         "tokens_out", "cost_usd", "p50_ms", "p95_ms", "errors");
    for (int i = 0; i < PQntuples(calls); i++) {
        if (i == ct)
            continue;
        emit(e, "  %-20s %8s %12s %12s %12s %14s %9s %9s %7s\n", PQgetvalue(calls, i, RC_MODEL),
             text_cell(calls, i, RC_CALLS), text_cell(calls, i, RC_TOKENS_IN),
             text_cell(calls, i, RC_TOKENS_CACHED_IN), text_cell(calls, i, RC_TOKENS_OUT),
             text_cell(calls, i, RC_COST), text_cell(calls, i, RC_P50), text_cell(calls, i, RC_P95),
             text_cell(calls, i, RC_ERRORS));
    }
    if (PQntuples(calls) <= 1)
        emit(e, "  (no calls)\n");

    emit(e, "\nper kind\n");
    emit(e, "  %-16s %7s %7s %7s %14s %14s %8s %9s %9s  %s\n", "kind", "jobs", "done", "failed", "cost_usd",
         "baseline_usd", "saved", "p50_ms", "p95_ms", "accuracy");
    for (int i = 0; i < PQntuples(jobs); i++) {
        if (i == jt)
            continue;
        char saved[32], accuracy[96];
        if (cell(jobs, i, RJ_SAVED_PCT1))
            snprintf(saved, sizeof saved, "%s%%", PQgetvalue(jobs, i, RJ_SAVED_PCT1));
        else
            snprintf(saved, sizeof saved, "-");
        if (cell(jobs, i, RJ_ACCURACY_PCT1))
            snprintf(accuracy, sizeof accuracy, "%s%% (%s/%s)", PQgetvalue(jobs, i, RJ_ACCURACY_PCT1),
                     PQgetvalue(jobs, i, RJ_CORRECT), PQgetvalue(jobs, i, RJ_EVALUATED));
        else
            snprintf(accuracy, sizeof accuracy, "-");
        emit(e, "  %-16s %7s %7s %7s %14s %14s %8s %9s %9s  %s\n", PQgetvalue(jobs, i, RJ_KIND),
             text_cell(jobs, i, RJ_JOBS), text_cell(jobs, i, RJ_DONE), text_cell(jobs, i, RJ_FAILED_OR_DEAD),
             text_cell(jobs, i, RJ_COST), text_cell(jobs, i, RJ_BASELINE), saved, text_cell(jobs, i, RJ_P50),
             text_cell(jobs, i, RJ_P95), accuracy);
    }
    if (PQntuples(jobs) <= 1)
        emit(e, "  (no jobs)\n");
    emit(e, "  (cost, baseline, saved and accuracy include cache hits, at $0; latency leaves them out)\n");

    emit(e, "\nper kind: response cache (done jobs answered from the cache; saved: what their answers cost)\n");
    emit(e, "  %-16s %7s %7s  %-22s %14s\n", "kind", "done", "hits", "hit_rate", "saved_usd");
    for (int i = 0; i < PQntuples(jobs); i++) {
        if (i == jt)
            continue;
        cache_rate_text(jobs, i, rate, sizeof rate);
        emit(e, "  %-16s %7s %7s  %-22s %14s\n", PQgetvalue(jobs, i, RJ_KIND), text_cell(jobs, i, RJ_DONE),
             text_cell(jobs, i, RJ_HITS), rate, text_cell(jobs, i, RJ_CACHE_SAVED));
    }
    if (PQntuples(jobs) <= 1)
        emit(e, "  (no jobs)\n");

    render_text_compression(e, d->compression);

    emit(e, "\nper kind and tier (done jobs by the tier that answered; cache hits left out)\n");
    emit(e, "  %-16s %4s  %-20s %7s %7s  %s\n", "kind", "tier", "model", "jobs", "share", "accuracy");
    for (int i = 0; i < PQntuples(tiers); i++) {
        char share[32], accuracy[96];
        snprintf(share, sizeof share, "%s%%", PQgetvalue(tiers, i, RT_SHARE_PCT1));
        if (cell(tiers, i, RT_ACCURACY_PCT1))
            snprintf(accuracy, sizeof accuracy, "%s%% (%s/%s)", PQgetvalue(tiers, i, RT_ACCURACY_PCT1),
                     PQgetvalue(tiers, i, RT_CORRECT), PQgetvalue(tiers, i, RT_EVALUATED));
        else
            snprintf(accuracy, sizeof accuracy, "-");
        emit(e, "  %-16s %4s  %-20s %7s %7s  %s%s\n", PQgetvalue(tiers, i, RT_KIND), PQgetvalue(tiers, i, RT_TIER),
             text_cell(tiers, i, RT_MODEL), PQgetvalue(tiers, i, RT_JOBS), share, accuracy,
             PQgetvalue(tiers, i, RT_FALLBACK)[0] == 't' ? "  fallback: the tier's model was unavailable" : "");
    }
    if (PQntuples(tiers) == 0)
        emit(e, "  (no answered jobs)\n");

    emit(e, "\nper kind: batching (saved against sending each job alone)\n");
    emit(e, "  %-16s %10s %8s %14s %13s %14s\n", "kind", "mean_batch", "batched", "tokens_in/job", "tokens_saved",
         "saved_usd");
    for (int i = 0; i < PQntuples(batching); i++)
        emit(e, "  %-16s %10s %8s %14s %13s %14s\n", PQgetvalue(batching, i, RB_KIND),
             text_cell(batching, i, RB_MEAN_BATCH), text_cell(batching, i, RB_BATCHED),
             text_cell(batching, i, RB_TOKENS_PER_JOB), text_cell(batching, i, RB_TOKENS_SAVED),
             text_cell(batching, i, RB_SAVED_USD));
    if (PQntuples(batching) == 0)
        emit(e, "  (no calls)\n");
    render_text_extras(e, d);
}

int report_run(PGconn *c, const ReportOptions *opt, FILE *out, TqErr *err)
{
    if (!opt || opt->since_s < 0 || (opt->format != REPORT_TEXT && opt->format != REPORT_JSON))
        return tq_err(err, TQ_EINVAL, "report: invalid options");
    char since[32];
    snprintf(since, sizeof since, "%ld", opt->since_s);
    const char *params[] = {opt->run_name, opt->since_s > 0 ? since : NULL};

    /* Every statement of the report, with the shape its renderer expects. */
    static const struct {
        const char *what, *sql;
        int ncols;
    } queries[] = {
        {"report jobs", SQL_REPORT_JOBS, RJ_NCOLS},           {"report calls", SQL_REPORT_CALLS, RC_NCOLS},
        {"report tiers", SQL_REPORT_TIERS, RT_NCOLS},         {"report batching", SQL_REPORT_BATCHING, RB_NCOLS},
        {"report signals", SQL_REPORT_SIGNALS, RS_NCOLS},     {"report failures", SQL_REPORT_FAILURES, RF_NCOLS},
        {"report confidence", SQL_REPORT_CONFIDENCE, RQ_NCOLS}, {"report shadow", SQL_REPORT_SHADOW, RW_NCOLS},
        {"report shadow estimate", SQL_REPORT_SHADOW_LIVE, RL_NCOLS},
        {"report shadow drift", SQL_REPORT_SHADOW_DRIFT, RD_NCOLS},
        {"report tier shifts", SQL_REPORT_TIER_SHIFTS, RH_NCOLS},
        {"report compression", SQL_REPORT_COMPRESSION, RZ_NCOLS},
        {"report pruned days", SQL_REPORT_PRUNED, RP_NCOLS},
    };
    enum { NQ = sizeof queries / sizeof queries[0] };
    PGresult *res[NQ] = {0};
    Emit e = {.rc = 0};
    buf_init(&e.b, REPORT_MAX_BYTES);
    int rc = 0, jt = -1, ct = -1, zt = -1;
    /* One snapshot and one now() for every statement, so the totals from jobs and from calls
     * describe the same moment and the same --since window. Inside a caller's transaction we
     * simply use theirs. */
    int own_tx = PQtransactionStatus(c) == PQTRANS_IDLE;
    if (own_tx && (rc = db_exec(c, "report begin", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err)))
        goto cleanup;
    for (int i = 0; i < NQ; i++) {
        if (!(res[i] = db_query(c, queries[i].what, queries[i].sql, 2, params, err))) {
            rc = TQ_EDB;
            goto cleanup;
        }
        if (PQnfields(res[i]) != queries[i].ncols) {
            rc = tq_err(err, TQ_EDB, "%s: unexpected result shape", queries[i].what);
            goto cleanup;
        }
    }
    if (own_tx) {
        own_tx = 0;
        if ((rc = db_exec(c, "report commit", "COMMIT", 0, NULL, err)))
            goto cleanup;
    }
    const PGresult *jobs = res[0], *calls = res[1];
    jt = find_total(jobs);
    ct = find_total(calls);
    zt = find_total(res[11]);
    if (jt < 0 || ct < 0 || zt < 0 || PQntuples(res[12]) != 1) {
        rc = tq_err(err, TQ_EDB, "report: totals row missing");
        goto cleanup;
    }

    ReportData d = {jobs,    calls,   res[2],  res[3],  res[4],  res[5], res[6], res[7],
                    res[8],  res[9],  res[10], res[11], res[12], jt,     ct,     zt};
    if (opt->format == REPORT_JSON)
        render_json(&e, opt, &d);
    else
        render_text(&e, opt, &d);
    if (e.rc) {
        rc = tq_err(err, e.rc, "report: output too large or out of memory");
        goto cleanup;
    }
    if (fwrite(e.b.data, 1, e.b.len, out) != e.b.len || fflush(out) != 0) {
        rc = tq_err(err, TQ_EIO, "report: write failed");
        goto cleanup;
    }

cleanup:
    if (own_tx)
        PQclear(PQexec(c, "ROLLBACK"));
    for (int i = 0; i < NQ; i++)
        PQclear(res[i]);
    buf_free(&e.b);
    return rc;
}

/* Units from largest to smallest; a duration names each at most once, in this order. */
static const struct {
    char unit;
    long seconds;
} REPORT_UNITS[] = {{'d', 86400L}, {'h', 3600L}, {'m', 60L}, {'s', 1L}};

int report_parse_duration(const char *s, long *seconds)
{
    if (!s || !*s || !seconds)
        return TQ_EINVAL;
    long total = 0;
    size_t next_unit = 0; /* index into REPORT_UNITS of the smallest unit still allowed */
    const char *p = s;
    while (*p) {
        if (*p < '0' || *p > '9')
            return TQ_EINVAL;
        long n = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            long digit = *p - '0';
            if (n > (REPORT_MAX_DURATION_S - digit) / 10)
                return TQ_EINVAL;
            n = n * 10 + digit;
        }
        size_t u = next_unit;
        while (u < sizeof REPORT_UNITS / sizeof REPORT_UNITS[0] && REPORT_UNITS[u].unit != *p)
            u++;
        if (u == sizeof REPORT_UNITS / sizeof REPORT_UNITS[0])
            return TQ_EINVAL; /* no unit, an unknown one, or one out of order / repeated */
        if (n > (REPORT_MAX_DURATION_S - total) / REPORT_UNITS[u].seconds)
            return TQ_EINVAL;
        total += n * REPORT_UNITS[u].seconds;
        next_unit = u + 1;
        p++;
    }
    if (total <= 0)
        return TQ_EINVAL;
    *seconds = total;
    return 0;
}
