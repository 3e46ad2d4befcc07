-- 014: retention (issue 11 item 6). `tierq prune --older-than D` deletes finished jobs and the ledger
-- rows that served only them, in bounded batches, each its own short transaction; what they added up
-- to is kept per UTC day in two summary tables, so `tierq report` totals still add up afterwards.
--
-- What references a job: tierq.calls.job_ids (no foreign key: a batched call serves several jobs;
-- the row goes when the last of them goes, so a call serving a pruned job and a kept one stays).
-- Shadow calls are ledger rows like any other. tierq.cache and tierq.compressed hold no job id (keyed
-- by content; they expire by their own TTL and `tierq cache purge`), so pruning leaves them alone.

-- The jobs a prune walks, oldest first. Partial: only finished rows carry an entry, so claims,
-- lease renewals and INSERTs of queued jobs pay nothing for it; a job pays one entry when it
-- finishes. The key is the time `tierq report --since` files a job under: finished_at, or
-- created_at for a job cancelled by hand without one.
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON tierq.jobs ((coalesce(finished_at, created_at)))
    WHERE state IN ('done', 'failed', 'dead', 'cancelled');

-- The ledger rows that served a set of jobs (job_ids && pruned ids). Without it every batch would
-- read the whole ledger. A call's row is inserted once and its completion leaves job_ids alone, so
-- the completion stays a HOT update (sql/007).
CREATE INDEX IF NOT EXISTS calls_job_ids_idx ON tierq.calls USING gin (job_ids);

-- Pruned jobs, summed per UTC day of coalesce(finished_at, created_at), run, kind, answering model and
-- state. Only what `tierq report` can add up is kept: counts, tokens and dollars. Latencies,
-- accuracy, tiers, failure reasons and answers go with the jobs.
CREATE TABLE IF NOT EXISTS tierq.daily_totals (
    day                    date NOT NULL,
    run_name               text NOT NULL DEFAULT '',   -- '' = jobs without a run_name (never a real one)
    kind                   text NOT NULL,
    model                  text NOT NULL DEFAULT '',   -- jobs.model; '' when no model answered
    state                  text NOT NULL,
    jobs                   bigint NOT NULL DEFAULT 0,
    tokens_in              bigint NOT NULL DEFAULT 0,  -- sums of the jobs' own columns
    tokens_cached_in       bigint NOT NULL DEFAULT 0,
    tokens_out             bigint NOT NULL DEFAULT 0,
    cost_usd               numeric NOT NULL DEFAULT 0,
    baseline_cost_usd      numeric NOT NULL DEFAULT 0,
    cache_hits             bigint NOT NULL DEFAULT 0,  -- jobs with cache_hit
    cache_saved_usd        numeric NOT NULL DEFAULT 0, -- their cache_saved_usd
    jobs_compressed        bigint NOT NULL DEFAULT 0,  -- compression 'compressed' or 'reused'
    jobs_reused            bigint NOT NULL DEFAULT 0,
    jobs_cleaned           bigint NOT NULL DEFAULT 0,
    jobs_compress_failed   bigint NOT NULL DEFAULT 0,
    context_tokens_before  bigint NOT NULL DEFAULT 0,  -- over jobs_compressed
    context_tokens_after   bigint NOT NULL DEFAULT 0,
    compress_cost_usd      numeric NOT NULL DEFAULT 0, -- each job's share (cost / jobs served) of its 'compress' calls
    compress_tokens_saved  bigint NOT NULL DEFAULT 0,
    compress_saved_usd     numeric NOT NULL DEFAULT 0,
    pruned_at              timestamptz NOT NULL DEFAULT now(), -- when rows were last added
    PRIMARY KEY (day, run_name, kind, model, state)
);

-- Pruned ledger rows, summed per UTC day of created_at, run, kind, model and purpose. Only rows
-- `tierq report` counts as calls (status neither 'sent' nor 'cancelled'); latencies and error texts
-- go with them.
CREATE TABLE IF NOT EXISTS tierq.daily_call_totals (
    day                date NOT NULL,
    run_name           text NOT NULL DEFAULT '',
    kind               text NOT NULL,
    model              text NOT NULL,
    purpose            text NOT NULL,
    calls              bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,      -- status other than 'ok'
    tokens_in          bigint NOT NULL DEFAULT 0,
    tokens_cached_in   bigint NOT NULL DEFAULT 0,
    tokens_out         bigint NOT NULL DEFAULT 0,
    tokens_reasoning   bigint NOT NULL DEFAULT 0,
    cost_usd           numeric NOT NULL DEFAULT 0,
    pruned_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, run_name, kind, model, purpose)
);

GRANT SELECT ON tierq.daily_totals, tierq.daily_call_totals TO tierq_producer, tierq_daemon;

-- Refuse arguments a prune must not run with, naming the argument (SQLSTATE 22023).
CREATE OR REPLACE FUNCTION tierq.prune_check_args(older_than interval, states text[], batch_limit int)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    bad text;
BEGIN
    IF older_than IS NULL OR older_than <= interval '0' THEN
        RAISE EXCEPTION 'prune: older_than must be a positive interval (got %)', coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF states IS NULL OR cardinality(states) = 0 THEN
        RAISE EXCEPTION 'prune: states must name at least one of done, failed, dead, cancelled'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(s, 'NULL') INTO bad FROM unnest(states) s
    WHERE s IS NULL OR s NOT IN ('done', 'failed', 'dead', 'cancelled') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'prune: state % is not a finished state (done, failed, dead, cancelled); queued and running jobs are never pruned', bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_limit IS NULL OR batch_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'prune: batch_limit must be from 1 to 100000 (got %)', coalesce(batch_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$fn$;

-- One batch of a prune, in the caller's transaction (autocommit: its own). Deletes at most
-- batch_limit jobs in one of states whose coalesce(finished_at, created_at) is older than
-- now() - older_than, oldest first, skipping rows another transaction holds (FOR UPDATE SKIP
-- LOCKED: it never waits on the queue, and a job requeued meanwhile no longer matches); then the
-- ledger rows that served them and serve no job left. Their sums go into tierq.daily_totals and
-- tierq.daily_call_totals in the same transaction: a crash keeps both or neither.
-- Returns what it deleted; jobs_deleted = 0 means nothing (unlocked) is left to prune.
-- One prune at a time (a transaction-level advisory lock): two would each see the other's job of a
-- shared call still there, and both keep the call. SECURITY DEFINER: tierq_daemon may prune
-- without holding DELETE on the queue.
CREATE OR REPLACE FUNCTION tierq.prune_batch(older_than interval,
                                             states text[] DEFAULT '{done,failed,dead,cancelled}',
                                             batch_limit int DEFAULT 5000,
                                             OUT jobs_deleted bigint, OUT calls_deleted bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    cutoff timestamptz;
    ids bigint[];
BEGIN
    PERFORM tierq.prune_check_args(older_than, states, batch_limit);
    PERFORM pg_advisory_xact_lock(hashtextextended('tierq.prune_batch', 0));
    cutoff := now() - older_than;
    jobs_deleted := 0;
    calls_deleted := 0;
    -- the literal state list lets the planner use jobs_finished_idx with a generic plan too
    SELECT array_agg(p.id) INTO ids FROM (
        SELECT j.id FROM tierq.jobs j
        WHERE j.state IN ('done', 'failed', 'dead', 'cancelled') AND j.state = ANY (states)
          AND coalesce(j.finished_at, j.created_at) < cutoff
        ORDER BY coalesce(j.finished_at, j.created_at)
        LIMIT batch_limit FOR UPDATE SKIP LOCKED) p;
    IF ids IS NULL THEN
        RETURN;
    END IF;

    WITH share AS (
        SELECT u.id, sum(c.cost_usd / cardinality(c.job_ids)) AS cost
        FROM tierq.calls c CROSS JOIN LATERAL unnest(c.job_ids) AS u(id)
        WHERE c.job_ids && ids AND c.purpose = 'compress' AND c.status NOT IN ('sent', 'cancelled')
          AND u.id = ANY (ids)
        GROUP BY u.id
    ), gone AS (
        DELETE FROM tierq.jobs j WHERE j.id = ANY (ids)
        RETURNING j.id, j.run_name, j.kind, j.model, j.state, j.finished_at, j.created_at, j.tokens_in,
                  j.tokens_cached_in, j.tokens_out, j.cost_usd, j.baseline_cost_usd, j.cache_hit, j.cache_saved_usd,
                  j.compression, j.context_tokens_before, j.context_tokens_after, j.compress_tokens_saved,
                  j.compress_saved_usd
    )
    INSERT INTO tierq.daily_totals AS t (day, run_name, kind, model, state, jobs, tokens_in, tokens_cached_in,
        tokens_out, cost_usd, baseline_cost_usd, cache_hits, cache_saved_usd, jobs_compressed, jobs_reused,
        jobs_cleaned, jobs_compress_failed, context_tokens_before, context_tokens_after, compress_cost_usd,
        compress_tokens_saved, compress_saved_usd)
    SELECT (coalesce(g.finished_at, g.created_at) AT TIME ZONE 'UTC')::date, coalesce(g.run_name, ''), g.kind,
           coalesce(g.model, ''), g.state, count(*), sum(g.tokens_in), sum(g.tokens_cached_in), sum(g.tokens_out),
           sum(g.cost_usd), sum(g.baseline_cost_usd), count(*) FILTER (WHERE g.cache_hit),
           coalesce(sum(g.cache_saved_usd) FILTER (WHERE g.cache_hit), 0),
           count(*) FILTER (WHERE g.compression IN ('compressed', 'reused')),
           count(*) FILTER (WHERE g.compression = 'reused'), count(*) FILTER (WHERE g.compression = 'cleaned'),
           count(*) FILTER (WHERE g.compression = 'failed'),
           coalesce(sum(g.context_tokens_before) FILTER (WHERE g.compression IN ('compressed', 'reused')), 0),
           coalesce(sum(g.context_tokens_after) FILTER (WHERE g.compression IN ('compressed', 'reused')), 0),
           coalesce(sum(s.cost), 0), sum(g.compress_tokens_saved), sum(g.compress_saved_usd)
    FROM gone g LEFT JOIN share s ON s.id = g.id
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (day, run_name, kind, model, state) DO UPDATE SET
        jobs = t.jobs + EXCLUDED.jobs, tokens_in = t.tokens_in + EXCLUDED.tokens_in,
        tokens_cached_in = t.tokens_cached_in + EXCLUDED.tokens_cached_in,
        tokens_out = t.tokens_out + EXCLUDED.tokens_out, cost_usd = t.cost_usd + EXCLUDED.cost_usd,
        baseline_cost_usd = t.baseline_cost_usd + EXCLUDED.baseline_cost_usd,
        cache_hits = t.cache_hits + EXCLUDED.cache_hits, cache_saved_usd = t.cache_saved_usd + EXCLUDED.cache_saved_usd,
        jobs_compressed = t.jobs_compressed + EXCLUDED.jobs_compressed,
        jobs_reused = t.jobs_reused + EXCLUDED.jobs_reused, jobs_cleaned = t.jobs_cleaned + EXCLUDED.jobs_cleaned,
        jobs_compress_failed = t.jobs_compress_failed + EXCLUDED.jobs_compress_failed,
        context_tokens_before = t.context_tokens_before + EXCLUDED.context_tokens_before,
        context_tokens_after = t.context_tokens_after + EXCLUDED.context_tokens_after,
        compress_cost_usd = t.compress_cost_usd + EXCLUDED.compress_cost_usd,
        compress_tokens_saved = t.compress_tokens_saved + EXCLUDED.compress_tokens_saved,
        compress_saved_usd = t.compress_saved_usd + EXCLUDED.compress_saved_usd, pruned_at = now();
    jobs_deleted := cardinality(ids);

    -- The ledger rows of these jobs that serve no job left (this statement sees the deletions above).
    WITH gone AS (
        DELETE FROM tierq.calls c
        WHERE c.job_ids && ids AND NOT EXISTS (SELECT 1 FROM tierq.jobs j WHERE j.id = ANY (c.job_ids))
        RETURNING c.created_at, c.run_name, c.kind, c.model, c.purpose, c.status, c.tokens_in, c.tokens_cached_in,
                  c.tokens_out, c.tokens_reasoning, c.cost_usd
    ), summed AS (
        INSERT INTO tierq.daily_call_totals AS t (day, run_name, kind, model, purpose, calls, errors, tokens_in,
            tokens_cached_in, tokens_out, tokens_reasoning, cost_usd)
        SELECT (g.created_at AT TIME ZONE 'UTC')::date, coalesce(g.run_name, ''), g.kind, g.model, g.purpose, count(*),
               count(*) FILTER (WHERE g.status <> 'ok'), sum(g.tokens_in), sum(g.tokens_cached_in), sum(g.tokens_out),
               sum(g.tokens_reasoning), sum(g.cost_usd)
        FROM gone g WHERE g.status NOT IN ('sent', 'cancelled')
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (day, run_name, kind, model, purpose) DO UPDATE SET
            calls = t.calls + EXCLUDED.calls, errors = t.errors + EXCLUDED.errors,
            tokens_in = t.tokens_in + EXCLUDED.tokens_in, tokens_cached_in = t.tokens_cached_in + EXCLUDED.tokens_cached_in,
            tokens_out = t.tokens_out + EXCLUDED.tokens_out,
            tokens_reasoning = t.tokens_reasoning + EXCLUDED.tokens_reasoning,
            cost_usd = t.cost_usd + EXCLUDED.cost_usd, pruned_at = now()
        RETURNING 1
    )
    SELECT count(*) INTO calls_deleted FROM gone;
END
$fn$;

REVOKE ALL ON FUNCTION tierq.prune_batch(interval, text[], int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tierq.prune_batch(interval, text[], int) TO tierq_daemon;
GRANT EXECUTE ON FUNCTION tierq.prune_check_args(interval, text[], int) TO tierq_producer, tierq_daemon;

-- What a prune with these arguments would delete now: jobs, their cost, and the ledger rows that
-- serve only jobs it would delete (or jobs already gone). Reads only. A prune that runs later, or
-- meets rows locked by the queue, deletes a little more or less.
CREATE OR REPLACE FUNCTION tierq.prune_preview(older_than interval,
                                               states text[] DEFAULT '{done,failed,dead,cancelled}',
                                               OUT jobs bigint, OUT calls bigint, OUT cost_usd numeric)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    PERFORM tierq.prune_check_args(older_than, states, 1);
    WITH e AS (
        SELECT j.id, j.cost_usd FROM tierq.jobs j
        WHERE j.state IN ('done', 'failed', 'dead', 'cancelled') AND j.state = ANY (states)
          AND coalesce(j.finished_at, j.created_at) < now() - older_than)
    SELECT (SELECT count(*) FROM e),
           (SELECT count(*) FROM tierq.calls c
            WHERE c.job_ids && (SELECT coalesce(array_agg(e.id), '{}') FROM e)
              AND NOT EXISTS (SELECT 1 FROM tierq.jobs j
                              WHERE j.id = ANY (c.job_ids) AND j.id NOT IN (SELECT e.id FROM e))),
           (SELECT coalesce(sum(e.cost_usd), 0) FROM e)
    INTO jobs, calls, cost_usd;
END
$fn$;
GRANT EXECUTE ON FUNCTION tierq.prune_preview(interval, text[]) TO tierq_producer, tierq_daemon;

-- A whole prune from SQL (pg_cron, psql): CALL tierq.prune('90 days'); outside a transaction block.
-- Commits after every batch, so no transaction lasts longer than one batch.
CREATE OR REPLACE PROCEDURE tierq.prune(older_than interval,
                                        states text[] DEFAULT '{done,failed,dead,cancelled}',
                                        batch_limit int DEFAULT 5000)
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    LOOP
        SELECT * INTO r FROM tierq.prune_batch(older_than, states, batch_limit);
        COMMIT;
        EXIT WHEN r.jobs_deleted = 0;
    END LOOP;
END
$fn$;
REVOKE ALL ON PROCEDURE tierq.prune(interval, text[], int) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE tierq.prune(interval, text[], int) TO tierq_daemon;
