-- 011: the response cache (issue 14). An answer that passed its bar is kept, zstd-compressed, under
-- a SHA-256 key over everything that determines it (common/cachekey.h: the kind file's digest, each
-- tier's model definition, the job's system prompt, prompt, context and params). A later job with
-- the same key is answered from here at $0: state done, cache_hit true, the answer's producing
-- model and tier, and cache_saved_usd = what the answer cost when it was produced.
--
-- Why here and not in a separate Redis: the cache must survive deploys and be shared by every
-- `tierq run` process, which already share this database; a lookup is one statement per claim
-- (key = ANY(...)), so its cost is per claim, not per job; and there is no second server to run,
-- secure or back up.
CREATE TABLE tierq.cache (
    -- COLLATE "C": hex digits compare bytewise; under the database's locale collation every insert and
    -- probe of the key index cost about three times as much (measured: 100,000 inserts 2.3 s -> 0.6 s
    -- with this and one index fewer)
    key                 text COLLATE "C" PRIMARY KEY CONSTRAINT cache_key_is_sha256_hex CHECK (key ~ '^[0-9a-f]{64}$'),
    kind                text NOT NULL,
    -- the answer as one zstd frame (with its content checksum), or as its UTF-8 bytes when the frame
    -- would be larger (short answers: a frame costs ~17 bytes); a frame starts with 28 b5 2f fd, which
    -- no UTF-8 text does
    answer_z            bytea NOT NULL,
    raw_len             integer NOT NULL CONSTRAINT cache_raw_len_range CHECK (raw_len BETWEEN 0 AND 67108864),
    model               text NOT NULL,        -- the model and 1-based tier that produced the answer
    tier                integer NOT NULL CONSTRAINT cache_tier_range CHECK (tier BETWEEN 1 AND 8),
    quality             real,
    tokens_in           bigint NOT NULL DEFAULT 0,  -- what producing it took (every tier, check and retry)
    tokens_out          bigint NOT NULL DEFAULT 0,
    cost_usd            numeric(20,12) NOT NULL DEFAULT 0,
    baseline_cost_usd   numeric(20,12) NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_hit_at         timestamptz,
    last_used_at        timestamptz NOT NULL DEFAULT now(), -- stored or last hit: what eviction orders by
    expires_at          timestamptz NOT NULL, -- sliding: each hit moves it to now() + the kind's cache.ttl_s
    hits                bigint NOT NULL DEFAULT 0
);
-- One index besides the key, because each answer stored pays for every index: expiry deletes a kind's
-- entries unused for its ttl_s in small batches, eviction over cache.max_entries the kind's least
-- recently used (not those expiring first: a kind whose ttl_s was shortened would otherwise evict
-- its fresh entries and keep the old ones).
CREATE INDEX cache_kind_used_idx ON tierq.cache (kind, last_used_at);

-- Per job: served from the cache, and what the cached answer cost when it was produced (the money
-- a hit saved; the job's own cost_usd stays 0). A job that led a single flight (identical jobs in
-- one process waiting on its call) pays; the ones that waited are hits.
ALTER TABLE tierq.jobs ADD COLUMN cache_hit boolean NOT NULL DEFAULT false;
ALTER TABLE tierq.jobs ADD COLUMN cache_saved_usd numeric(20,12) NOT NULL DEFAULT 0;

-- The daemon reads, stores, extends and expires entries; a producer role never sees them (answers
-- to other producers' questions).
GRANT SELECT, INSERT, UPDATE, DELETE ON tierq.cache TO tierq_daemon;

-- params.cache (boolean): false skips the cache for that job, lookup and store. Every kind reads it
-- (config_kind_params_json); the INSERT check learns the boolean type.
CREATE OR REPLACE FUNCTION tierq.check_job_params() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    reads jsonb;
    key text;
    want text;
BEGIN
    IF jsonb_typeof(NEW.params) <> 'object' THEN
        RETURN NEW; -- jobs_params_must_be_a_json_object names the problem
    END IF;
    SELECT k.params INTO reads FROM tierq.kinds k WHERE k.name = NEW.kind;
    IF reads IS NULL THEN
        RETURN NEW; -- an unknown kind: the foreign key names the problem
    END IF;
    FOR key IN SELECT jsonb_object_keys(NEW.params) LOOP
        want := reads ->> key;
        IF want IS NULL THEN
            RAISE EXCEPTION 'params.% is not a parameter of kind %', key, NEW.kind
                USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_params_known_to_kind',
                      DETAIL = format('kind %s reads: %s', NEW.kind,
                                      (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(reads) k)),
                      HINT = 'remove the key, or declare it under "params" in the kind''s file and run tierq migrate '
                             || '(tierq run syncs it too)';
        END IF;
        IF want = 'string' AND (jsonb_typeof(NEW.params -> key) <> 'string' OR btrim(NEW.params ->> key) = '') THEN
            RAISE EXCEPTION 'params.% of kind % must be a non-empty string', key, NEW.kind
                USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_params_known_to_kind';
        END IF;
        IF want = 'boolean' AND jsonb_typeof(NEW.params -> key) <> 'boolean' THEN
            RAISE EXCEPTION 'params.% of kind % must be true or false', key, NEW.kind
                USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_params_known_to_kind';
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

-- The first tier's share (sql/009) counts only jobs a model answered: a cache hit repeats the tier of
-- an answer produced earlier, and a nightly rerun that is 90% hits would hide a shift behind last
-- night's shares. The same function with that one condition added.
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
                    WHERE j.kind = k.name AND j.state = 'done' AND NOT j.cache_hit AND (run IS NULL OR j.run_name = run)
                      AND (c.first_running IS NULL OR j.id < c.first_running)
                    ORDER BY j.id DESC LIMIT recent + reference) j) d) s
    WHERE (k.shadow->>'rate')::float8 > 0 AND k.in_config
    ORDER BY k.name
$$;
