-- 007: ledger intents (issue 8). Every request's row is written before the request leaves (status
-- 'sent') and completed in place when the exchange ends; rows a dead process left 'sent' are settled
-- as 'unknown' by any other process.
--
-- The completion rewrites the row a few milliseconds after it was inserted. Free room on each page
-- lets that update stay on the page (a HOT update: no new index entries for call_key, created_at,
-- run_name), which is most of its cost.
ALTER TABLE tierq.calls SET (fillfactor = 50);

-- Settling looks for old 'sent' rows only: a small partial index instead of a scan of the ledger.
CREATE INDEX IF NOT EXISTS calls_sent_idx ON tierq.calls (created_at) WHERE status = 'sent';
