-- 009: a free early warning of drift (issue 9). The share of a kind's jobs its first tier answers is
-- known for every job, at no cost: when a provider's model gets worse (or silently changes), that
-- share moves long before a 2% shadow sample has enough comparisons to show it. A tierq run compares
-- the latest jobs with the ones before them and, on a shift, says so and samples shadow calls at a
-- higher rate for a while (shadow.boost), so the shadow estimate confirms or clears it quickly.

-- The latest settled jobs of a kind, in arrival order.
CREATE INDEX IF NOT EXISTS jobs_done_kind_id_idx ON tierq.jobs (kind, id DESC) WHERE state = 'done';

-- Per kind that samples shadow calls: of its latest `recent` done jobs (run_name NULL = every run),
-- how many the first tier answered (jobs.tier = 1), and the same for the `reference` jobs before them;
-- z of the difference (two-proportion, pooled); shifted when |z| >= 4 with at least recent/2 and
-- recent jobs on the two sides. |z| 4 is a false alarm about once in 15,000 independent checks: the
-- check runs every few seconds on overlapping windows. The windows are jobs in id (arrival) order,
-- and only those older than the kind's oldest running job: within a claim the jobs the first tier
-- accepts finish first and the escalated ones last, so "the latest 200 to finish" held too few
-- escalations whenever jobs arrive in batches (measured: 12 false warnings in 169 checks of steady
-- runs in finished_at order, 0 of 84 in arrival order).
CREATE OR REPLACE FUNCTION tierq.first_tier_shift(run text, recent int DEFAULT 200, reference int DEFAULT 1000)
RETURNS TABLE (kind text, recent_jobs bigint, recent_first bigint, reference_jobs bigint, reference_first bigint,
               z float8, shifted boolean)
LANGUAGE sql STABLE AS $$
    SELECT k.name, s.rn, s.rf, s.fn, s.ff, s.z,
           coalesce(s.rn >= recent / 2 AND s.fn >= recent AND abs(s.z) >= 4, false)
    FROM tierq.kinds k
    CROSS JOIN LATERAL (
        -- jobs still running hold back the window: nothing at or after the oldest of them counts yet
        SELECT min(r.id) AS first_running FROM tierq.jobs r
        WHERE r.state = 'running' AND r.kind = k.name AND (run IS NULL OR r.run_name = run)) c
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE d.i <= recent) AS rn,
               count(*) FILTER (WHERE d.i <= recent AND d.tier = 1) AS rf,
               count(*) FILTER (WHERE d.i > recent) AS fn,
               count(*) FILTER (WHERE d.i > recent AND d.tier = 1) AS ff,
               CASE WHEN count(*) FILTER (WHERE d.i <= recent) > 0 AND count(*) FILTER (WHERE d.i > recent) > 0
                    AND count(*) FILTER (WHERE d.tier = 1) BETWEEN 1 AND count(*) - 1 THEN
                   ((count(*) FILTER (WHERE d.i <= recent AND d.tier = 1))::float8 / count(*) FILTER (WHERE d.i <= recent)
                    - (count(*) FILTER (WHERE d.i > recent AND d.tier = 1))::float8 / count(*) FILTER (WHERE d.i > recent))
                   / sqrt((count(*) FILTER (WHERE d.tier = 1))::float8 / count(*)
                          * (1 - (count(*) FILTER (WHERE d.tier = 1))::float8 / count(*))
                          * (1.0 / count(*) FILTER (WHERE d.i <= recent) + 1.0 / count(*) FILTER (WHERE d.i > recent)))
               END AS z
        FROM (SELECT j.tier, row_number() OVER (ORDER BY j.id DESC) AS i
              FROM (SELECT j.tier, j.id FROM tierq.jobs j
                    WHERE j.kind = k.name AND j.state = 'done' AND (run IS NULL OR j.run_name = run)
                      AND (c.first_running IS NULL OR j.id < c.first_running)
                    ORDER BY j.id DESC LIMIT recent + reference) j) d) s
    WHERE (k.shadow->>'rate')::float8 > 0 AND k.in_config
    ORDER BY k.name
$$;
