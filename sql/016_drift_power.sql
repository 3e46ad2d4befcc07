-- 016: drift seen sooner (issue 9). Two limits of 009/010, measured with make bench (f), where
-- qwen3-8b's skill drops from 0.55 under a running daemon:
-- * The first tier's share over the latest 200 jobs resolves a large move (61% -> 30%) but not a
--   moderate one: at skill 0.30 the share moves 61% -> 45%, z about -4.2 on 200 jobs against 1,000, so
--   the warning came in 1 run of 3. On 500 jobs the same move is z about -5.9. Both lengths are tested;
--   the strongest is reported.
-- * A tier held to its past by its latest 30 comparisons only sees falls of 25 points or more (0.87 ->
--   0.60 is z about -2.9 on 30 against 300). Once a first-tier shift has been seen, the change point is
--   known: the tier's comparisons since then (up to `reference` of them) are the ones to hold to the
--   past, and they grow with every comparison the boost buys.
-- * A run named anew each night was held to itself, so a model that got worse between two nights showed
--   no shift at all (a new user's trial): the run's latest jobs are now held to the kind's jobs before
--   them, of any run.

-- Every first-tier shift a running tierq saw: where it put the change point (the kind's last shadow
-- call at that moment), so the per-tier test of every process, the report and the status all count
-- from the same place, and a nightly run named anew is held to the nights before the shift.
CREATE TABLE tierq.tier_shifts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL,
    run_name        text,
    worker          text,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    shadow_mark     bigint NOT NULL CONSTRAINT tier_shifts_mark_not_negative CHECK (shadow_mark >= 0),
    recent_jobs     bigint NOT NULL,
    recent_first    bigint NOT NULL,
    reference_jobs  bigint NOT NULL,
    reference_first bigint NOT NULL,
    z               float8
);
CREATE INDEX tier_shifts_kind_idx ON tierq.tier_shifts (kind, detected_at);
GRANT SELECT, INSERT ON tierq.tier_shifts TO tierq_daemon;
GRANT SELECT ON tierq.tier_shifts TO tierq_producer;

-- z of the difference of two proportions a/n and b/m (pooled), the statistic of 009's, 010's and this
-- file's tests; NULL when either side is empty or the pooled share is 0 or 1.
CREATE FUNCTION tierq.two_proportion_z(a bigint, n bigint, b bigint, m bigint) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN n > 0 AND m > 0 AND a + b BETWEEN 1 AND n + m - 1 THEN
               (a::float8 / n - b::float8 / m)
               / sqrt((a + b)::float8 / (n + m) * (1 - (a + b)::float8 / (n + m)) * (1.0 / n + 1.0 / m))
           END
$$;

-- The strongest of several lengths of the latest window: per length in `recents`, 009's test (as
-- amended by 011: jobs a model answered, in arrival order, none at or after the kind's oldest running
-- job) of the latest `len` jobs against the `reference` jobs before them; per kind the shifted row with
-- the largest |z|, else the row with the largest |z|. Each length is a test of its own at |z| >= 4, so
-- two lengths double a false alarm's already small chance (about once in 15,000 checks each). With a
-- run named, the latest jobs are the run's and the jobs before them are the kind's of any run: a run
-- named anew each night is held to the nights before it (009 held it to itself, so a model that got
-- worse between two nights showed no shift at all).
CREATE FUNCTION tierq.first_tier_shift_windows(run text, recents int[] DEFAULT '{200,500}', reference int DEFAULT 1000)
RETURNS TABLE (kind text, recent_jobs bigint, recent_first bigint, reference_jobs bigint, reference_first bigint,
               z float8, shifted boolean)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (k.name) k.name, s.rn, s.rf, s.fn, s.ff, s.z, s.shifted
    FROM tierq.kinds k
    CROSS JOIN unnest(recents) AS w(len)
    CROSS JOIN LATERAL (
        -- jobs still running hold back the window: nothing at or after the oldest of them counts yet
        SELECT min(r.id) AS first_running FROM tierq.jobs r
        WHERE r.state = 'running' AND r.kind = k.name AND (run IS NULL OR r.run_name = run)) c
    CROSS JOIN LATERAL (
        SELECT count(*) AS rn, count(*) FILTER (WHERE x.tier = 1) AS rf, min(x.id) AS first_id
        FROM (SELECT j.id, j.tier FROM tierq.jobs j
              WHERE j.kind = k.name AND j.state = 'done' AND NOT j.cache_hit AND (run IS NULL OR j.run_name = run)
                AND (c.first_running IS NULL OR j.id < c.first_running)
              ORDER BY j.id DESC LIMIT w.len) x) r
    CROSS JOIN LATERAL (
        SELECT count(*) AS fn, count(*) FILTER (WHERE x.tier = 1) AS ff
        FROM (SELECT j.tier FROM tierq.jobs j
              WHERE j.kind = k.name AND j.state = 'done' AND NOT j.cache_hit AND j.id < r.first_id
              ORDER BY j.id DESC LIMIT reference) x) f
    CROSS JOIN LATERAL (
        SELECT r.rn, r.rf, f.fn, f.ff, tierq.two_proportion_z(r.rf, r.rn, f.ff, f.fn) AS z) z
    CROSS JOIN LATERAL (
        SELECT z.rn, z.rf, z.fn, z.ff, z.z,
               coalesce(z.rn >= w.len / 2 AND z.fn >= w.len AND abs(z.z) >= 4, false) AS shifted) s
    WHERE (k.shadow->>'rate')::float8 > 0 AND k.in_config
    ORDER BY k.name, s.shifted DESC, abs(s.z) DESC NULLS LAST, w.len
$$;

-- 010's test, with the change point: when the kind had a first-tier shift in the last 7 days, and the
-- tier has at least `recent` comparisons after it and at least `recent` before it, the latest are the
-- ones after it (up to `reference`) and the reference is the earliest before it; otherwise as 010
-- (the latest `recent` against the earliest before them). More comparisons after the change is more
-- power for the same one-sided z <= -3.5: tier 1's fall at skill 0.10 in bench (f), 0.85 -> 0.68, is
-- z about -2.4 on the latest 30 against 300 and -5.4 on 200 after the change point against 670 before. The reference grows from 010's
-- 300 to 1,000 where a week's history holds them, for the same reason (a 10-point fall needs about
-- 1,000 on each side). Slower to clear, too: a tier that recovers is held to the mixed comparisons
-- since the shift — until the recovery moves the first tier's share back, a shift of its own.
DROP FUNCTION tierq.shadow_tier_drift(text, int, int);
CREATE FUNCTION tierq.shadow_tier_drift(run text, recent int DEFAULT 30, reference int DEFAULT 1000)
RETURNS TABLE (kind text, tier int, recent_compared bigint, recent_agreed bigint, reference_compared bigint,
               reference_agreed bigint, z float8, dropped boolean)
LANGUAGE sql STABLE AS $$
    SELECT k.name, t.tier, s.rn, s.ra, s.fn, s.fa, s.z,
           coalesce(s.rn >= recent / 2 AND s.fn >= recent AND s.z <= -3.5, false)
    FROM tierq.kinds k
    CROSS JOIN generate_series(1, 8) AS t(tier)
    CROSS JOIN LATERAL (
        -- the change point: the kind's latest first-tier shift of the last 7 days (0: none)
        SELECT coalesce(max(ts.shadow_mark), 0) AS mark FROM tierq.tier_shifts ts
        WHERE ts.kind = k.name AND ts.detected_at > now() - interval '7 days') m
    CROSS JOIN LATERAL (
        -- the tier's comparisons after the change point (up to `reference`), and before it (7 days)
        SELECT (SELECT count(*) FROM (SELECT 1 FROM tierq.calls c JOIN tierq.jobs j ON j.id = c.job_ids[1] AND j.state = 'done'
                                      WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
                                        AND c.answer IS NOT NULL AND (run IS NULL OR c.run_name = run) AND c.id > m.mark
                                      LIMIT reference) x) AS after,
               (SELECT count(*) FROM (SELECT 1 FROM tierq.calls c
                                      WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
                                        AND c.answer IS NOT NULL AND c.id <= m.mark
                                        AND c.created_at > now() - interval '7 days'
                                      LIMIT recent) x) AS before) a
    CROSS JOIN LATERAL (
        SELECT m.mark > 0 AND a.after >= recent AND a.before >= recent AS since) u
    CROSS JOIN LATERAL (
        -- the tier's latest comparisons: those after the change point, or the latest `recent`
        SELECT count(*) AS rn, count(*) FILTER (WHERE x.agreed) AS ra, min(x.id) AS first_id
        FROM (SELECT c.id, tierq.normalize_answer(c.answer) = tierq.normalize_answer(j.result) AS agreed
              FROM tierq.calls c JOIN tierq.jobs j ON j.id = c.job_ids[1] AND j.state = 'done'
              WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
                AND c.answer IS NOT NULL AND (run IS NULL OR c.run_name = run) AND (NOT u.since OR c.id > m.mark)
              ORDER BY c.id DESC LIMIT CASE WHEN u.since THEN a.after ELSE recent END) x) r
    CROSS JOIN LATERAL (
        -- the reference ends before the change point, or before the latest
        SELECT CASE WHEN u.since THEN m.mark + 1 ELSE r.first_id END AS before_id) e
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM tierq.calls c
        WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
          AND c.answer IS NOT NULL AND c.id < e.before_id AND c.created_at > now() - interval '7 days') b
    CROSS JOIN LATERAL (
        -- the earliest of them: `reference`; without a change point only the first half when the
        -- history is shorter, so a recent change does not make up the reference it is measured against
        SELECT count(*) AS fn, count(*) FILTER (WHERE x.agreed) AS fa
        FROM (SELECT tierq.normalize_answer(c.answer) = tierq.normalize_answer(j.result) AS agreed
              FROM tierq.calls c JOIN tierq.jobs j ON j.id = c.job_ids[1] AND j.state = 'done'
              WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
                AND c.answer IS NOT NULL AND c.id < e.before_id AND c.created_at > now() - interval '7 days'
              ORDER BY c.id ASC
              LIMIT CASE WHEN u.since THEN least(reference, b.n) ELSE least(reference, greatest(b.n / 2, recent)) END) x) f
    CROSS JOIN LATERAL (
        SELECT r.rn, r.ra, f.fn, f.fa, tierq.two_proportion_z(r.ra, r.rn, f.fa, f.fn) AS z) s
    WHERE (k.shadow->>'rate')::float8 > 0 AND k.in_config AND s.rn > 0
    ORDER BY k.name, t.tier
$$;
GRANT EXECUTE ON FUNCTION tierq.first_tier_shift_windows(text, int[], int), tierq.shadow_tier_drift(text, int, int),
    tierq.two_proportion_z(bigint, bigint, bigint, bigint) TO tierq_producer, tierq_daemon;

-- No JIT inside the checks a running tierq makes every few seconds (and status and report read): the
-- planner prices their lateral subqueries far above jit_above_cost, and compiling them took 3.4 s of a
-- 3.45 s shadow_tier_drift on a 37,000-job database (45 ms without). tierq's own connections turn JIT
-- off as well (common/db.c); this covers anyone calling the functions from psql or a dashboard.
ALTER FUNCTION tierq.shadow_tier_drift(text, int, int) SET jit = off;
ALTER FUNCTION tierq.first_tier_shift_windows(text, int[], int) SET jit = off;
ALTER FUNCTION tierq.first_tier_shift(text, int, int) SET jit = off;
ALTER FUNCTION tierq.shadow_estimates(text) SET jit = off;
