-- 010: drift per tier, against the tier's own past (issue 9). A kind's live agreement mixes its
-- tiers, and they agree with the baseline at different rates when nothing is wrong (classify: tier 1
-- 0.84, tier 2 0.63). When the first tier's model gets worse, its bar sends more jobs up, so tier 2
-- answers more easy jobs and agrees more: measured, the kind's agreement fell 0.77 -> 0.68 while tier 1's
-- fell 0.84 -> 0.55. A tier is compared with itself: its latest `recent` comparisons against the
-- `reference` before them; dropped when the fall is far beyond chance (one-sided z <= -3.5). No bar
-- to set, so a kind whose steady agreement is low is not flagged for it.
CREATE INDEX IF NOT EXISTS calls_shadow_tier_idx ON tierq.calls (kind, tier, id) WHERE purpose = 'shadow';

-- The latest comparisons are the run's, when one is named; the reference is the tier's earliest
-- comparisons of the last 7 days, of any run (a nightly run named anew each night is held to the
-- nights before it; the first half of them when there are fewer than 2 x reference), not the ones
-- just before the latest: those fill with changed answers within a few dozen comparisons, and the
-- fall would vanish from view while it still holds.
CREATE OR REPLACE FUNCTION tierq.shadow_tier_drift(run text, recent int DEFAULT 30, reference int DEFAULT 300)
RETURNS TABLE (kind text, tier int, recent_compared bigint, recent_agreed bigint, reference_compared bigint,
               reference_agreed bigint, z float8, dropped boolean)
LANGUAGE sql STABLE AS $$
    SELECT k.name, t.tier, s.rn, s.ra, s.fn, s.fa, s.z,
           coalesce(s.rn >= recent / 2 AND s.fn >= recent AND s.z <= -3.5, false)
    FROM tierq.kinds k
    CROSS JOIN generate_series(1, 8) AS t(tier)
    CROSS JOIN LATERAL (
        -- the tier's latest `recent` comparisons
        SELECT count(*) AS rn, count(*) FILTER (WHERE x.agreed) AS ra, min(x.id) AS first_id
        FROM (SELECT c.id, tierq.normalize_answer(c.answer) = tierq.normalize_answer(j.result) AS agreed
              FROM tierq.calls c JOIN tierq.jobs j ON j.id = c.job_ids[1] AND j.state = 'done'
              WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
                AND c.answer IS NOT NULL AND (run IS NULL OR c.run_name = run)
              ORDER BY c.id DESC LIMIT recent) x) r
    CROSS JOIN LATERAL (
        -- how many came before those in the last 7 days
        SELECT count(*) AS n FROM tierq.calls c
        WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
          AND c.answer IS NOT NULL AND c.id < r.first_id AND c.created_at > now() - interval '7 days') b
    CROSS JOIN LATERAL (
        -- the earliest of them: `reference`, or the first half when the history is shorter, so a
        -- recent change does not make up the reference it is measured against
        SELECT count(*) AS fn, count(*) FILTER (WHERE x.agreed) AS fa
        FROM (SELECT tierq.normalize_answer(c.answer) = tierq.normalize_answer(j.result) AS agreed
              FROM tierq.calls c JOIN tierq.jobs j ON j.id = c.job_ids[1] AND j.state = 'done'
              WHERE c.kind = k.name AND c.tier = t.tier AND c.purpose = 'shadow' AND c.status = 'ok'
                AND c.answer IS NOT NULL AND c.id < r.first_id AND c.created_at > now() - interval '7 days'
              ORDER BY c.id ASC LIMIT least(reference, greatest(b.n / 2, recent))) x) f
    CROSS JOIN LATERAL (
        SELECT r.rn, r.ra, f.fn, f.fa,
               CASE WHEN r.rn > 0 AND f.fn > 0 AND r.ra + f.fa BETWEEN 1 AND r.rn + f.fn - 1 THEN
                   (r.ra::float8 / r.rn - f.fa::float8 / f.fn)
                   / sqrt((r.ra + f.fa)::float8 / (r.rn + f.fn) * (1 - (r.ra + f.fa)::float8 / (r.rn + f.fn))
                          * (1.0 / r.rn + 1.0 / f.fn))
               END AS z) s
    WHERE (k.shadow->>'rate')::float8 > 0 AND k.in_config AND s.rn > 0
    ORDER BY k.name, t.tier
$$;
