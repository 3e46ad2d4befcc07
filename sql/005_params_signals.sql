-- 005_params_signals.sql — job parameters each kind reads, and honest quality records.
--
-- tierq.kinds.params: the job parameters a kind reads, name -> type, synced from jobs/ by
-- `tierq migrate` and `tierq run`: every kind reads max_tokens (integer) and temperature (number);
-- a kind with a label gate reads labels; a kind may declare string parameters for its templates
-- ({target_language} in translate's system prompt). A job that gives any other parameter is
-- refused at INSERT, with a message that names it and lists what the kind reads, instead of the
-- parameter being silently ignored.
ALTER TABLE tierq.kinds ADD COLUMN params jsonb NOT NULL
    DEFAULT '{"max_tokens": "integer", "temperature": "number", "labels": "labels"}';

CREATE FUNCTION tierq.check_job_params() RETURNS trigger LANGUAGE plpgsql AS $$
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
    END LOOP;
    RETURN NEW;
END
$$;

-- Only rows that carry parameters pay for the check: INSERT ... SELECT of plain jobs is untouched.
CREATE TRIGGER jobs_check_params BEFORE INSERT OR UPDATE OF params, kind ON tierq.jobs
    FOR EACH ROW WHEN (NEW.params <> '{}'::jsonb) EXECUTE FUNCTION tierq.check_job_params();

-- calls.missing_signals: the soft signals the kind's checks rely on that this answer came without
-- ("logprobs", "judge", "agreement", comma-separated); NULL when none was missing. An answer scored
-- without its signals is never scored as perfect (checks.missing_signal), and `tierq report` counts
-- them per kind and model, so a provider that silently stops returning logprobs shows.
ALTER TABLE tierq.calls ADD COLUMN missing_signals text;
-- calls.max_tokens: the output limit sent; max_tokens_capped: it is lower than the job asked for,
-- because the model's max_output_tokens or context_tokens left no more.
ALTER TABLE tierq.calls ADD COLUMN max_tokens integer;
ALTER TABLE tierq.calls ADD COLUMN max_tokens_capped boolean NOT NULL DEFAULT false;
