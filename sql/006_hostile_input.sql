-- 006_hostile_input.sql — nothing a producer inserts can stop the queue or falsify the ledger.
--
-- Bounds on every counter and every text a producer can send, checked at INSERT (named, so the
-- refusal says what was wrong). They are added NOT VALID: rows already in the table are left as
-- they are (the claim statement copes with any value), new and updated rows must satisfy them.
-- The size limits are deliberately generous; a team that needs others changes them with
--   ALTER TABLE tierq.jobs DROP CONSTRAINT jobs_prompt_size,
--     ADD CONSTRAINT jobs_prompt_size CHECK (octet_length(prompt) <= 4194304) NOT VALID;
ALTER TABLE tierq.jobs
    ADD CONSTRAINT jobs_attempts_range CHECK (attempts BETWEEN 0 AND 1000) NOT VALID,
    ADD CONSTRAINT jobs_escalations_range CHECK (escalations BETWEEN 0 AND 1000) NOT VALID,
    ADD CONSTRAINT jobs_tokens_range CHECK (tokens_in BETWEEN 0 AND 1000000000000000
                                            AND tokens_cached_in BETWEEN 0 AND 1000000000000000
                                            AND tokens_out BETWEEN 0 AND 1000000000000000) NOT VALID,
    ADD CONSTRAINT jobs_cost_range CHECK (cost_usd BETWEEN 0 AND 10000000
                                          AND baseline_cost_usd BETWEEN 0 AND 10000000) NOT VALID,
    ADD CONSTRAINT jobs_max_budget_at_most_a_million CHECK (max_budget_usd <= 1000000) NOT VALID,
    ADD CONSTRAINT jobs_prompt_size CHECK (octet_length(prompt) <= 1048576) NOT VALID,
    ADD CONSTRAINT jobs_context_size CHECK (context IS NULL OR octet_length(context) <= 4194304) NOT VALID,
    ADD CONSTRAINT jobs_system_prompt_size CHECK (system_prompt IS NULL OR octet_length(system_prompt) <= 65536) NOT VALID,
    ADD CONSTRAINT jobs_params_size CHECK (octet_length(params::text) <= 65536) NOT VALID,
    ADD CONSTRAINT jobs_expected_size CHECK (expected IS NULL OR octet_length(expected) <= 65536) NOT VALID;

-- Roles (DESIGN.md §3 Security). Neither is a superuser; grant them to login roles:
--   CREATE ROLE nightly_etl LOGIN PASSWORD '...' IN ROLE tierq_producer;
--   CREATE ROLE tierq_run LOGIN PASSWORD '...' IN ROLE tierq_daemon;
-- tierq_producer may enqueue — the producer columns only, so it cannot set a job's state, lease,
-- result, cost or id — and read results and the ledger. tierq_daemon runs `tierq run`: it reads
-- and writes the queue and the ledger, and can neither create nor drop anything. Roles are
-- cluster-wide: created once, kept when they exist.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tierq_producer') THEN
        CREATE ROLE tierq_producer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tierq_daemon') THEN
        CREATE ROLE tierq_daemon NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA tierq TO tierq_producer, tierq_daemon;

GRANT INSERT (kind, prompt, system_prompt, context, params, expected, run_name, priority, run_after, max_attempts,
              max_budget_usd)
    ON tierq.jobs TO tierq_producer;
GRANT SELECT ON tierq.jobs, tierq.calls, tierq.kinds, tierq.models TO tierq_producer;

GRANT SELECT, INSERT, UPDATE ON tierq.jobs, tierq.calls, tierq.kinds, tierq.models, tierq.workers TO tierq_daemon;
GRANT DELETE ON tierq.workers TO tierq_daemon;
GRANT SELECT ON tierq.schema_migrations TO tierq_daemon;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tierq TO tierq_producer, tierq_daemon;
