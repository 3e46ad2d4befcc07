-- 004_batching.sql — what batching saves.
--
-- solo_cost_usd: for a batched call, the estimated cost of sending each of its jobs alone on the same
-- model (the kind's system prompt and the item as input, the item's answer as output, no cached
-- tokens); NULL for calls that served one job. saved = solo_cost_usd - cost_usd.
-- solo_tokens_in: the same estimate in input tokens.
ALTER TABLE tierq.calls ADD COLUMN solo_cost_usd numeric(20,12);
ALTER TABLE tierq.calls ADD COLUMN solo_tokens_in bigint;
