-- 015: params.model (issue 11 item 5): a job may name the one model that answers it — a model of
-- jobs/models.json (tierq.models) or "baseline" (its kind's baseline model). Such a job is answered
-- by that model alone, as a single final tier: its checks (and judge) still run and are recorded in
-- jobs.quality and calls.score, but it never escalates, never reads or stores the response cache,
-- and makes no shadow call. `tierq bakeoff` pins copies of a run's jobs to each model it compares;
-- `tierq reprocess --model-map baseline|MODEL` pins a whole dataset pass.
--
-- Every kind reads it (config_kind_params_json: "model": "model"); the INSERT check learns the type:
-- a non-empty string naming a known model, else the row is refused with the list of models.
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
        IF want = 'model' AND (jsonb_typeof(NEW.params -> key) <> 'string'
                               OR (NEW.params ->> key <> 'baseline'
                                   AND NOT EXISTS (SELECT 1 FROM tierq.models m WHERE m.name = NEW.params ->> key))) THEN
            RAISE EXCEPTION 'params.% of kind % must name a model of jobs/models.json or "baseline"', key, NEW.kind
                USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_params_model_known',
                      DETAIL = format('got %s; models: %s', NEW.params -> key,
                                      (SELECT string_agg(m.name, ', ' ORDER BY m.name) FROM tierq.models m));
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;
