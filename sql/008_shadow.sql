-- 008: shadow evaluation (issue 9). Each kind's shadow settings, synced from jobs/ like its other
-- settings, so `tierq report` and `tierq status` can judge the live agreement estimate against the
-- kind's own bar. Shadow calls are ledger rows of purpose 'shadow': their cost is in the ledger (total
-- spend) and charged to no job, so a job's cost stays what answering it cost.
ALTER TABLE tierq.kinds ADD COLUMN IF NOT EXISTS shadow jsonb NOT NULL
    DEFAULT '{"rate": 0, "min_agreement": 0.85, "window": 50}';

ALTER TABLE tierq.calls DROP CONSTRAINT IF EXISTS calls_purpose_valid;
ALTER TABLE tierq.calls ADD CONSTRAINT calls_purpose_valid
    CHECK (purpose IN ('answer', 'judge', 'compress', 'sample', 'shadow'));

-- The estimate reads a kind's latest shadow calls.
CREATE INDEX IF NOT EXISTS calls_shadow_idx ON tierq.calls (kind, id) WHERE purpose = 'shadow';

-- The 95% Wilson score interval of k successes in n trials (NULL when n = 0): an agreement rate
-- from a few dozen shadow calls is an estimate, and it is judged by its interval.
CREATE OR REPLACE FUNCTION tierq.wilson_bound(k bigint, n bigint, upper boolean) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN n <= 0 THEN NULL ELSE
        ((k::float8 / n) + 1.9208 / n
         + CASE WHEN upper THEN 1 ELSE -1 END
           * 1.96 * sqrt(greatest((k::float8 / n) * (1 - k::float8 / n) / n + 0.9604 / (n::float8 * n), 0)))
        / (1 + 3.8416 / n) END
$$;

-- Per kind that samples (or has sampled) shadow calls: the agreement of its latest `window` shadow
-- answers with the answers its jobs got, normalized as accuracy is; the interval; and whether the
-- interval lies wholly below the kind's min_agreement (at least 10 comparisons). run_name NULL = all.
CREATE OR REPLACE FUNCTION tierq.shadow_estimates(run text)
RETURNS TABLE (kind text, min_agreement float8, shadow_window int, compared bigint, agreed bigint,
               agreement float8, low float8, high float8, below boolean)
LANGUAGE sql STABLE AS $$
    SELECT k.name, (k.shadow->>'min_agreement')::float8, (k.shadow->>'window')::int, w.n, w.agreed,
           CASE WHEN w.n > 0 THEN w.agreed::float8 / w.n END,
           tierq.wilson_bound(w.agreed, w.n, false), tierq.wilson_bound(w.agreed, w.n, true),
           w.n >= 10 AND tierq.wilson_bound(w.agreed, w.n, true) < (k.shadow->>'min_agreement')::float8
    FROM tierq.kinds k
    CROSS JOIN LATERAL (
        SELECT count(*) AS n,
               count(*) FILTER (WHERE tierq.normalize_answer(s.answer) = tierq.normalize_answer(j.result)) AS agreed
        FROM (SELECT c.answer, c.job_ids[1] AS job_id FROM tierq.calls c
              WHERE c.kind = k.name AND c.purpose = 'shadow' AND c.status = 'ok' AND c.answer IS NOT NULL
                AND (run IS NULL OR c.run_name = run)
              ORDER BY c.id DESC LIMIT (k.shadow->>'window')::int) s
        JOIN tierq.jobs j ON j.id = s.job_id AND j.state = 'done') w
    WHERE (k.shadow->>'rate')::float8 > 0 OR w.n > 0
    ORDER BY k.name
$$;
