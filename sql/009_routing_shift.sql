-- 009: a free early warning of drift (issue 9). The share of a kind's jobs its first tier answers is
-- known for every job, at no cost: when a provider's model gets worse (or silently changes), that
-- share moves long before a 2% shadow sample has enough comparisons to show it. A tierq run compares
-- the latest jobs with the ones before them and, on a shift, says so and samples shadow calls at a
-- higher rate for a while (shadow.boost), so the shadow estimate confirms or clears it quickly.

-- The latest done jobs of a kind, newest first.
CREATE INDEX IF NOT EXISTS jobs_done_kind_idx ON tierq.jobs (kind, finished_at DESC) WHERE state = 'done';

-- Per kind that samples shadow calls: of its latest `recent` done jobs (run_name NULL = every run),
-- how many the first tier answered (jobs.tier = 1), and the
-- same for the `reference` jobs before them; z of the difference (two-proportion, pooled); shifted
-- when |z| >= 4 with at least recent/2 and 2 x recent/2 jobs on the two sides. |z| 4 is a false alarm
-- about once in 15,000 independent checks: the check runs every few seconds on overlapping windows.
CREATE OR REPLACE FUNCTION tierq.first_tier_shift(run text, recent int DEFAULT 200, reference int DEFAULT 1000)
RETURNS TABLE (kind text, recent_jobs bigint, recent_first bigint, reference_jobs bigint, reference_first bigint,
               z float8, shifted boolean)
LANGUAGE sql STABLE AS $$
    SELECT k.name, s.rn, s.rf, s.fn, s.ff, s.z,
           coalesce(s.rn >= recent / 2 AND s.fn >= recent AND abs(s.z) >= 4, false)
    FROM tierq.kinds k
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
        FROM (SELECT j.tier, row_number() OVER (ORDER BY j.finished_at DESC, j.id DESC) AS i
              FROM (SELECT j.tier, j.finished_at, j.id FROM tierq.jobs j
                    WHERE j.kind = k.name AND j.state = 'done' AND (run IS NULL OR j.run_name = run)
                    ORDER BY j.finished_at DESC, j.id DESC LIMIT recent + reference) j) d) s
    WHERE (k.shadow->>'rate')::float8 > 0 AND k.in_config
    ORDER BY k.name
$$;
