-- 013: schedules (issue 11). A schedule enqueues jobs on a cron expression in a time zone, fired by
-- the `tierq run` daemons themselves (any of them; each due fire exactly once) or by pg_cron through
-- tierq.fire(name).
--
-- What a schedule enqueues is the output of a SOURCE FUNCTION: a set-returning function without
-- arguments, SECURITY DEFINER, owned by (a role granted to) the role that writes the schedule row.
-- Its columns: kind, prompt (required), and any of system_prompt, context, params (jsonb), expected,
-- priority, source_key; any other column is refused when the schedule fires.
--
-- Why a SECURITY DEFINER function and not a view or a stored query: user-written SQL run by the
-- daemon would run with the daemon's rights. A view reads its tables with its owner's rights, but
-- functions called inside a view run as whoever reads it — the daemon — so a view calling a
-- function of its author's could read or change anything the daemon may. A SECURITY DEFINER
-- function runs all of its body, and everything it calls, as its owner, and PostgreSQL refuses
-- SET ROLE inside it, so its author cannot step back into the daemon's role. The trigger below
-- records who wrote the row (current_user, not settable by hand) and refuses a function that role
-- does not own; each fire checks again (CREATE OR REPLACE can drop SECURITY DEFINER), and a fire
-- whose function no longer qualifies fails with a readable error, enqueuing nothing. The columns must
-- be of built-in types (to_jsonb of a type of the author's would call the author's cast with the
-- firer's rights), a source that changes session settings fails its fire (tierq.session_settings_digest),
-- and every function here pins search_path (the trigger runs as the writer).
CREATE TABLE tierq.schedules (
    name           text PRIMARY KEY
                   CONSTRAINT schedules_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    -- five cron fields, a macro (@daily) or "@every 5m"; parsed by the daemon (common/cron.h), which
    -- writes cron_error when it cannot (the CLI checks before writing). "@external": the daemons never
    -- fire it; pg_cron (or a person) does, through tierq.fire()
    cron           text NOT NULL CONSTRAINT schedules_cron_length CHECK (length(cron) BETWEEN 1 AND 256),
    tz             text NOT NULL DEFAULT 'UTC' CONSTRAINT schedules_tz_length CHECK (length(tz) BETWEEN 1 AND 64),
    action         text NOT NULL DEFAULT 'enqueue' CONSTRAINT schedules_action_valid CHECK (action IN ('enqueue', 'prune')),
    source         regprocedure,             -- enqueue: the source function
    -- the fire's run_name: {schedule}, {date} (YYYY-MM-DD) and {time} (HHMMSS), local to tz, of the
    -- fire's due time
    run_name       text NOT NULL DEFAULT '{schedule}-{date}'
                   CONSTRAINT schedules_run_name_template CHECK (
                       length(run_name) BETWEEN 1 AND 120
                       AND replace(replace(replace(run_name, '{schedule}', ''), '{date}', ''), '{time}', '') !~ '[{}]'),
    enabled        boolean NOT NULL DEFAULT true,
    -- fires missed while no daemon ran: skip (none; a fire is on time within grace_s of its due
    -- time), latest (the latest one, once), all (each, the latest catch_up_max of them)
    catch_up       text NOT NULL DEFAULT 'latest' CONSTRAINT schedules_catch_up_valid CHECK (catch_up IN ('skip', 'latest', 'all')),
    catch_up_max   integer NOT NULL DEFAULT 10 CONSTRAINT schedules_catch_up_max_range CHECK (catch_up_max BETWEEN 1 AND 1000),
    grace_s        integer NOT NULL DEFAULT 300 CONSTRAINT schedules_grace_range CHECK (grace_s BETWEEN 1 AND 86400),
    -- per fire: the run's spend ceiling (claims of the run stop once its jobs' cost reaches it; what is
    -- in flight finishes) and the most jobs one fire enqueues (the rest: the next fire, with only_changed)
    budget_usd     numeric(14,6) CONSTRAINT schedules_budget_range CHECK (budget_usd > 0 AND budget_usd <= 1000000),
    max_jobs       integer CONSTRAINT schedules_max_jobs_range CHECK (max_jobs BETWEEN 1 AND 10000000),
    -- enqueue only source rows whose content changed since they were last enqueued, by source_key
    only_changed   boolean NOT NULL DEFAULT false,
    -- prune: finished jobs older than this, in these states (tierq prune)
    prune_older_than interval CONSTRAINT schedules_prune_older_positive CHECK (prune_older_than > interval '0'),
    prune_states   text[],
    created_by     name NOT NULL DEFAULT current_user, -- set by the trigger: whose rights the source runs with
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- the next fire is the first cron time after fire_from (creation, or the last change of cron, tz
    -- or enabled): a schedule written while no daemon ran still catches up
    fire_from      timestamptz NOT NULL DEFAULT now(),
    next_fire_at   timestamptz,              -- computed by a daemon; NULL until then
    cron_error     text,                     -- the daemon could not parse cron/tz: why
    last_due_at    timestamptz,
    last_fired_at  timestamptz,
    last_run_name  text,
    last_jobs      bigint,
    last_outcome   text,                     -- ok, empty, truncated, error, missed
    last_error     text,
    last_skipped   bigint NOT NULL DEFAULT 0,  -- due times passed over by the catch-up policy, last time
    fires          bigint NOT NULL DEFAULT 0,
    CONSTRAINT schedules_action_fields CHECK (
        (action = 'enqueue' AND source IS NOT NULL AND prune_older_than IS NULL)
        OR (action = 'prune' AND source IS NULL AND prune_older_than IS NOT NULL AND NOT only_changed))
);
CREATE INDEX schedules_due_idx ON tierq.schedules (next_fire_at) WHERE enabled;

-- Every fire, once per (schedule, due time): the primary key is the last guard of "exactly once".
CREATE TABLE tierq.schedule_fires (
    schedule   text NOT NULL REFERENCES tierq.schedules (name) ON DELETE CASCADE ON UPDATE CASCADE,
    due_at     timestamptz NOT NULL,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    fired_by   text NOT NULL,                -- the daemon's owner id, or "sql:<role>" for tierq.fire()
    run_name   text,
    jobs       bigint NOT NULL DEFAULT 0,    -- enqueued (prune: jobs deleted)
    outcome    text NOT NULL,
    error      text,
    PRIMARY KEY (schedule, due_at)
);

-- only_changed: what each source row looked like when last enqueued.
CREATE TABLE tierq.schedule_rows (
    schedule      text NOT NULL REFERENCES tierq.schedules (name) ON DELETE CASCADE ON UPDATE CASCADE,
    source_key    text NOT NULL,
    content_hash  text NOT NULL,             -- md5 of the row's columns as jsonb text
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, source_key)
);

-- A run's spend ceiling (a schedule's budget_usd, per fire): claims skip the run's jobs once
-- reached_at is set; the daemons set it when the run's jobs have cost budget_usd.
CREATE TABLE tierq.run_budgets (
    run_name    text PRIMARY KEY,
    budget_usd  numeric(14,6) NOT NULL CONSTRAINT run_budgets_positive CHECK (budget_usd > 0),
    spent_usd   numeric(20,12) NOT NULL DEFAULT 0,
    reached_at  timestamptz,
    schedule    text
);

-- Whether function src may be a schedule's source for role author: NULL when it may, else why not.
-- Checked when the schedule is written and before and after each fire (a function can be replaced,
-- change owner, or its row type altered, at any time). Besides SECURITY DEFINER and the owner:
-- the columns are named as a job's (kind and prompt at least), and their types are built-in ones
-- (oid below 16384): a fire turns each row into jsonb, and for a type of the author's that would
-- call the author's cast to json with the rights of whoever fires — the daemon's.
CREATE FUNCTION tierq.source_problem(src oid, author name) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fn record;
    cols text[];
    foreign_types text;
    allowed CONSTANT text[] := ARRAY['kind', 'prompt', 'system_prompt', 'context', 'params', 'expected', 'priority', 'source_key'];
BEGIN
    SELECT p.oid, p.proname, n.nspname, p.pronargs, p.proretset, p.prosecdef, p.proowner,
           (SELECT t.typtype FROM pg_type t WHERE t.oid = p.prorettype) = 'c'
           OR (p.prorettype = 'record'::regtype AND p.proargmodes IS NOT NULL) AS has_columns
        INTO fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = src;
    IF NOT FOUND THEN
        RETURN format('source function %s no longer exists', src);
    END IF;
    IF NOT fn.proretset OR fn.pronargs <> 0 OR NOT coalesce(fn.has_columns, false) THEN
        RETURN format('source %I.%I must be a set-returning function without arguments and with named columns'
                      ' (RETURNS TABLE (kind text, prompt text, ...))', fn.nspname, fn.proname);
    END IF;
    IF NOT fn.prosecdef THEN
        RETURN format('source %I.%I must be SECURITY DEFINER, so that it reads your tables with your rights, not'
                      ' tierq''s (CREATE OR REPLACE FUNCTION ... SECURITY DEFINER SET search_path = ...; README,'
                      ' Schedules)', fn.nspname, fn.proname);
    END IF;
    IF NOT pg_has_role(author, fn.proowner, 'MEMBER') THEN
        RETURN format('source %I.%I belongs to %s, not to %s: a schedule runs a function of its author''s',
                      fn.nspname, fn.proname, fn.proowner::regrole, author);
    END IF;
    WITH c AS (
        SELECT a.attname::text AS name, a.atttypid AS typ FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype
            JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE p.oid = src AND t.typtype = 'c'
        UNION ALL
        SELECT x.n, x.t FROM pg_proc p, unnest(p.proargnames, p.proallargtypes, p.proargmodes) AS x(n, t, m)
        WHERE p.oid = src AND x.m IN ('o', 't'))
    SELECT array_agg(name), string_agg(name || ' ' || format_type(typ, NULL), ', ') FILTER (WHERE typ >= 16384)
        INTO cols, foreign_types FROM c;
    IF NOT cols @> ARRAY['kind', 'prompt'] OR NOT cols <@ allowed THEN
        RETURN format('source %I.%I must yield columns kind and prompt, and only these others: %s; it yields %s',
                      fn.nspname, fn.proname, array_to_string(allowed[3:], ', '), array_to_string(cols, ', '));
    END IF;
    IF foreign_types IS NOT NULL THEN
        RETURN format('source %I.%I yields columns of types that are not built in (%s): cast them to text, integer'
                      ' or jsonb in the function', fn.nspname, fn.proname, foreign_types);
    END IF;
    RETURN NULL;
END
$$;

-- search_path pinned: the trigger runs as the writer, who must not be able to stand in functions of
-- their own for pg_has_role and the others it calls.
CREATE FUNCTION tierq.schedules_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    problem text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.created_by := OLD.created_by;
        NEW.created_at := OLD.created_at;
    ELSE
        NEW.created_by := current_user;
    END IF;
    IF NEW.action = 'prune' AND NOT pg_has_role(current_user, 'tierq_daemon', 'MEMBER')
       AND current_user <> (SELECT tableowner FROM pg_tables WHERE schemaname = 'tierq' AND tablename = 'schedules') THEN
        -- pruning deletes every team's finished jobs: the daemon's right, not a producer's
        RAISE EXCEPTION 'schedule %: only tierq''s owner or a tierq_daemon member may schedule a prune', NEW.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.source IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.source IS DISTINCT FROM OLD.source) THEN
        problem := tierq.source_problem(NEW.source, current_user);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'schedule %: %', NEW.name, problem
                USING ERRCODE = CASE WHEN problem LIKE '%belongs to%' THEN 'insufficient_privilege' ELSE 'check_violation' END;
        END IF;
        NEW.created_by := current_user;
    END IF;
    IF NEW.action = 'prune' AND NEW.cron = '@external' THEN
        RAISE EXCEPTION 'schedule %: a prune schedule is fired by the daemons; pg_cron users CALL tierq.prune(...) instead', NEW.name
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.tz IS DISTINCT FROM (CASE WHEN TG_OP = 'UPDATE' THEN OLD.tz END) THEN
        BEGIN
            PERFORM now() AT TIME ZONE NEW.tz;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'schedule %: unknown time zone "%"', NEW.name, NEW.tz
                USING ERRCODE = 'check_violation', HINT = 'an IANA name such as Europe/Berlin or UTC';
        END;
    END IF;
    IF NEW.prune_states IS NOT NULL AND NOT NEW.prune_states <@ ARRAY['done', 'failed', 'dead', 'cancelled'] THEN
        RAISE EXCEPTION 'schedule %: prune_states may hold only done, failed, dead, cancelled', NEW.name
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'INSERT' OR NEW.cron IS DISTINCT FROM OLD.cron OR NEW.tz IS DISTINCT FROM OLD.tz
       OR (NEW.enabled AND NOT OLD.enabled) THEN
        -- fires missed while disabled are not made up: counting starts again now
        NEW.fire_from := now();
        NEW.next_fire_at := NULL;
        NEW.cron_error := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER schedules_check BEFORE INSERT OR UPDATE ON tierq.schedules
    FOR EACH ROW EXECUTE FUNCTION tierq.schedules_check();

-- The fire's run name from the template, in the schedule's zone.
CREATE FUNCTION tierq.schedule_run_name(tpl text, sched text, tz text, due timestamptz) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT replace(replace(replace(tpl, '{schedule}', sched),
                   '{date}', to_char(due AT TIME ZONE tz, 'YYYY-MM-DD')),
                   '{time}', to_char(due AT TIME ZONE tz, 'HH24MISS'))
$$;

-- Enqueue what the schedule's source yields into run `run`; returns the jobs enqueued and the rows
-- left for a later fire (max_jobs). Raises on anything wrong; the caller keeps it apart.
-- The session's settings, as one digest: a source that changes one (set_config(..., false) outlives
-- its SECURITY DEFINER function) would leave it to whatever the daemon runs next.
CREATE FUNCTION tierq.session_settings_digest() RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT md5(string_agg(name || '=' || coalesce(setting, ''), ',' ORDER BY name)) FROM pg_catalog.pg_settings
    WHERE name <> 'search_path' -- pinned by this very function's SET clause; compared by the caller
$$;

CREATE FUNCTION tierq.schedule_enqueue(s tierq.schedules, run text, OUT enqueued bigint, OUT left_over bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fn record;
    problem text;
    settings_before text;
    bad text;
    dup text;
    nokey bigint;
    seen_n bigint;
    allowed CONSTANT text[] := ARRAY['kind', 'prompt', 'system_prompt', 'context', 'params', 'expected', 'priority', 'source_key'];
BEGIN
    problem := tierq.source_problem(s.source, s.created_by);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem;
    END IF;
    SELECT p.proname, n.nspname INTO fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.oid = s.source;
    -- The source runs alone in its own statement (its rows into a temporary table that goes with the
    -- transaction), so nothing of ours runs after it in a session it may have changed; then the
    -- session is checked, and the function again (replaced while it ran?). Any failure rolls the
    -- fire back, settings included.
    settings_before := tierq.session_settings_digest();
    EXECUTE format('CREATE TEMPORARY TABLE tierq_fire_rows ON COMMIT DROP AS SELECT to_jsonb(r) AS j FROM %I.%I() r',
                   fn.nspname, fn.proname);
    IF current_setting('search_path') <> 'pg_catalog, pg_temp' OR tierq.session_settings_digest() <> settings_before THEN
        RAISE EXCEPTION 'source %.% changed the session''s settings (set_config or SET without LOCAL): refused',
            fn.nspname, fn.proname;
    END IF;
    problem := tierq.source_problem(s.source, s.created_by);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem;
    END IF;
    -- The rows checked, deduplicated by key and compared with what was enqueued before, then
    -- inserted; the counts come back to check.
    EXECUTE $q$
        WITH src AS MATERIALIZED (SELECT j FROM pg_temp.tierq_fire_rows),
        keyed AS MATERIALIZED (
            SELECT j, j ->> 'source_key' AS key, md5(j::text) AS h,
                   count(*) OVER (PARTITION BY j ->> 'source_key') AS n_key
            FROM src),
        verdict AS MATERIALIZED (
            SELECT (SELECT string_agg(DISTINCT c, ', ') FROM src, jsonb_object_keys(src.j) c WHERE c <> ALL ($5)) AS bad,
                   (SELECT min(key) FROM keyed WHERE n_key > 1 AND key IS NOT NULL) AS dup,
                   (SELECT count(*) FROM keyed WHERE key IS NULL) AS nokey),
        changed AS MATERIALIZED (
            SELECT * FROM keyed k
            WHERE NOT $1 OR NOT EXISTS (SELECT 1 FROM tierq.schedule_rows sr
                                        WHERE sr.schedule = $2 AND sr.source_key = k.key AND sr.content_hash = k.h)),
        -- nothing goes in when the rows are wrong: the caller raises with the reason
        picked AS MATERIALIZED (
            SELECT * FROM changed
            WHERE (SELECT bad IS NULL AND (NOT $1 OR (dup IS NULL AND nokey = 0)) FROM verdict)
            LIMIT $3),
        ins AS (
            INSERT INTO tierq.jobs (kind, prompt, system_prompt, context, params, expected, priority, run_name)
            SELECT j ->> 'kind', j ->> 'prompt', j ->> 'system_prompt', j ->> 'context', coalesce(j -> 'params', '{}'),
                   j ->> 'expected', coalesce((j ->> 'priority')::integer, 0), $4
            FROM picked
            RETURNING 1),
        seen AS (
            INSERT INTO tierq.schedule_rows (schedule, source_key, content_hash)
            SELECT DISTINCT ON (key) $2, key, h FROM picked WHERE $1 AND key IS NOT NULL ORDER BY key
            ON CONFLICT (schedule, source_key) DO UPDATE
                SET content_hash = EXCLUDED.content_hash, enqueued_at = now()
            RETURNING 1)
        SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM changed) - (SELECT count(*) FROM picked),
               (SELECT bad FROM verdict), (SELECT dup FROM verdict), (SELECT nokey FROM verdict),
               (SELECT count(*) FROM seen)
        $q$
        INTO enqueued, left_over, bad, dup, nokey, seen_n
        USING s.only_changed, s.name, coalesce(s.max_jobs, 2147483647), run, allowed;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'source %.% yields column(s) % that a job does not have (it may yield: %)',
            fn.nspname, fn.proname, bad, array_to_string(allowed, ', ');
    END IF;
    IF s.only_changed AND nokey > 0 THEN
        RAISE EXCEPTION 'only_changed: source %.% yields % row(s) without a source_key', fn.nspname, fn.proname, nokey;
    END IF;
    IF s.only_changed AND dup IS NOT NULL THEN
        RAISE EXCEPTION 'only_changed: source_key "%" appears more than once in source %.%', dup, fn.nspname, fn.proname;
    END IF;
    DROP TABLE pg_temp.tierq_fire_rows;
END
$$;

-- Fire a schedule for one due time: enqueue (all or nothing), record the fire and its outcome, move
-- next_fire_at when given. The caller holds the schedule row (FOR UPDATE) or gets it here. A source
-- that fails records outcome 'error' with its message and enqueues nothing; the fire still counts.
-- Firing the same (schedule, due time) twice does nothing the second time (outcome 'already_fired').
CREATE FUNCTION tierq.schedule_fire(p_name text, p_due timestamptz, p_next timestamptz, p_by text,
                                    OUT run_name text, OUT jobs bigint, OUT outcome text, OUT error text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s tierq.schedules;
    left_over bigint := 0;
    detail text;
BEGIN
    SELECT * INTO s FROM tierq.schedules WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no schedule named "%"', p_name USING ERRCODE = 'no_data_found';
    END IF;
    run_name := CASE WHEN s.action = 'enqueue' THEN tierq.schedule_run_name(s.run_name, s.name, s.tz, p_due) END;
    jobs := 0;
    INSERT INTO tierq.schedule_fires (schedule, due_at, fired_by, run_name, outcome)
        VALUES (s.name, p_due, p_by, run_name, 'firing') ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'already_fired';
        RETURN;
    END IF;
    IF s.action = 'enqueue' THEN
        BEGIN
            SELECT e.enqueued, e.left_over INTO jobs, left_over FROM tierq.schedule_enqueue(s, run_name) e;
            outcome := CASE WHEN left_over > 0 THEN 'truncated' WHEN jobs = 0 THEN 'empty' ELSE 'ok' END;
            IF left_over > 0 THEN
                error := format('%s rows over max_jobs (%s) not enqueued: %s', left_over, s.max_jobs,
                                CASE WHEN s.only_changed THEN 'the next fire sends them'
                                     ELSE 'without only_changed, every fire starts again from the first rows' END);
            END IF;
            IF s.budget_usd IS NOT NULL AND jobs > 0 THEN
                -- one budget per fire, so one run per fire: a run name that has a budget already (an
                -- earlier fire's, or another schedule's) fails this fire, enqueuing nothing
                IF EXISTS (SELECT 1 FROM tierq.run_budgets b WHERE b.run_name = schedule_fire.run_name) THEN
                    RAISE EXCEPTION 'run % has a budget already (schedule %): with budget_usd, give each fire its own run'
                        ' (run_name with {time} when it fires more than once a day)', schedule_fire.run_name,
                        (SELECT b.schedule FROM tierq.run_budgets b WHERE b.run_name = schedule_fire.run_name);
                END IF;
                INSERT INTO tierq.run_budgets (run_name, budget_usd, schedule) VALUES (run_name, s.budget_usd, s.name);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            jobs := 0;
            outcome := 'error';
            -- the detail names the row (Key (kind)=(sumarize) is not present ...)
            error := SQLERRM || coalesce(nullif(' (' || detail || ')', ' ()'), '');
        END;
    ELSIF pg_has_role(s.created_by, 'tierq_daemon', 'MEMBER')
          OR s.created_by = (SELECT tableowner FROM pg_tables WHERE schemaname = 'tierq' AND tablename = 'schedules') THEN
        outcome := 'pruning'; -- the daemon prunes in batches after this commits and records the count
    ELSE
        outcome := 'error'; -- written by a role that may not prune (the checks when written stop that)
        error := format('schedule %s prunes, and its author %s is neither tierq''s owner nor a tierq_daemon member',
                        s.name, s.created_by);
    END IF;
    UPDATE tierq.schedule_fires f SET jobs = schedule_fire.jobs, outcome = schedule_fire.outcome,
           error = schedule_fire.error
        WHERE f.schedule = s.name AND f.due_at = p_due;
    UPDATE tierq.schedules SET last_due_at = p_due, last_fired_at = now(), last_run_name = schedule_fire.run_name,
           last_jobs = schedule_fire.jobs, last_outcome = schedule_fire.outcome, last_error = schedule_fire.error,
           fires = fires + 1, next_fire_at = coalesce(p_next, next_fire_at)
        WHERE name = s.name;
END
$$;

-- For pg_cron and by hand: fire now, whatever next_fire_at says (the daemons' own timetable is
-- unchanged). SECURITY DEFINER so a pg_cron job's role needs only EXECUTE; the source still runs
-- with its author's rights. The session's role must be the author's (or a daemon's).
CREATE FUNCTION tierq.fire(p_name text, OUT run_name text, OUT jobs bigint, OUT outcome text, OUT error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s tierq.schedules;
BEGIN
    SELECT * INTO s FROM tierq.schedules WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no schedule named "%"', p_name USING ERRCODE = 'no_data_found';
    END IF;
    IF s.action <> 'enqueue' THEN
        RAISE EXCEPTION 'schedule % prunes; call tierq.prune_batch() from pg_cron instead', p_name;
    END IF;
    IF NOT s.enabled THEN
        RAISE EXCEPTION 'schedule % is disabled: enable it to fire it (tierq schedule enable %)', p_name, p_name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- the caller (the session's role: current_user is this function's owner here) must be the
    -- schedule's author, in a role of the author's, or a daemon: one producer does not fire another's
    IF NOT (pg_has_role(session_user, s.created_by, 'MEMBER') OR pg_has_role(session_user, 'tierq_daemon', 'MEMBER')) THEN
        RAISE EXCEPTION 'schedule % belongs to %: % may not fire it', p_name, s.created_by, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT f.run_name, f.jobs, f.outcome, f.error INTO run_name, jobs, outcome, error
        FROM tierq.schedule_fire(p_name, clock_timestamp(), NULL, 'sql:' || session_user) f;
END
$$;

-- Set reached_at on budgeted runs whose jobs have cost their budget; returns how many were set.
CREATE FUNCTION tierq.check_run_budgets() RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    -- only runs with jobs still waiting or running: a run that finished under its budget costs nothing
    WITH spend AS (
        SELECT b.run_name, coalesce((SELECT sum(j.cost_usd) FROM tierq.jobs j WHERE j.run_name = b.run_name), 0) AS spent
        FROM tierq.run_budgets b WHERE b.reached_at IS NULL
          AND EXISTS (SELECT 1 FROM tierq.jobs j WHERE j.run_name = b.run_name AND j.state IN ('queued', 'running'))),
    upd AS (
        UPDATE tierq.run_budgets b SET spent_usd = spend.spent,
               reached_at = CASE WHEN spend.spent >= b.budget_usd THEN now() END
        FROM spend WHERE b.run_name = spend.run_name AND b.spent_usd IS DISTINCT FROM spend.spent
        RETURNING b.reached_at)
    SELECT count(*)::integer FROM upd WHERE reached_at IS NOT NULL
$$;

-- Rights. Producers write their own schedules (row-level security: read all, change only those they
-- wrote, or a role they are in wrote); the daemon reads and fires all of them.
ALTER TABLE tierq.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedules_read ON tierq.schedules FOR SELECT USING (true);
CREATE POLICY schedules_write ON tierq.schedules FOR INSERT
    WITH CHECK (action = 'enqueue' OR pg_catalog.pg_has_role(current_user, 'tierq_daemon', 'MEMBER'));
CREATE POLICY schedules_change ON tierq.schedules FOR UPDATE TO tierq_producer
    USING (pg_catalog.pg_has_role(current_user, created_by, 'MEMBER')) WITH CHECK (action = 'enqueue');
CREATE POLICY schedules_remove ON tierq.schedules FOR DELETE TO tierq_producer
    USING (pg_catalog.pg_has_role(current_user, created_by, 'MEMBER'));
CREATE POLICY schedules_daemon ON tierq.schedules FOR ALL TO tierq_daemon USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE, UPDATE (cron, tz, source, run_name, enabled, catch_up, catch_up_max, grace_s, budget_usd,
                                      max_jobs, only_changed, prune_older_than, prune_states)
    ON tierq.schedules TO tierq_producer;
GRANT SELECT, INSERT, UPDATE, DELETE ON tierq.schedules, tierq.schedule_fires, tierq.schedule_rows, tierq.run_budgets
    TO tierq_daemon;
GRANT SELECT ON tierq.schedule_fires, tierq.schedule_rows, tierq.run_budgets TO tierq_producer;
-- tierq status lists live processes for producers too (it failed on this table before)
GRANT SELECT ON tierq.workers TO tierq_producer;
REVOKE EXECUTE ON FUNCTION tierq.schedule_enqueue(tierq.schedules, text), tierq.schedule_fire(text, timestamptz, timestamptz, text),
    tierq.fire(text), tierq.check_run_budgets() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tierq.schedule_enqueue(tierq.schedules, text), tierq.schedule_fire(text, timestamptz, timestamptz, text),
    tierq.check_run_budgets() TO tierq_daemon;
GRANT EXECUTE ON FUNCTION tierq.fire(text) TO tierq_daemon, tierq_producer;
