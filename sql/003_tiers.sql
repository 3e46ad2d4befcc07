-- 003_tiers.sql — tiered routing: what each tier answered, for calibration.
--
-- In an all-tiers run (`tierq run --all-tiers`) every tier answers every job; the answer of each
-- call is kept in calls.answer so `tierq calibrate` can tell, per tier, which scores came with
-- right answers. In normal runs calls.answer stays NULL (the job's result is in tierq.jobs).
ALTER TABLE tierq.calls ADD COLUMN answer text;
-- How the job's answer was chosen: accepted (score met the tier's bar), final_tier, budget (the
-- next tier would have exceeded max_budget_usd; best answer so far kept), all_tiers.
COMMENT ON COLUMN tierq.jobs.reason IS 'stable reason of the last state change or of how the answer was chosen';
CREATE INDEX calls_run_name_idx ON tierq.calls (run_name) WHERE run_name IS NOT NULL;
