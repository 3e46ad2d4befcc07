/* Schedules (sql/013, scheduler/firer.c, cli/schedule.c) against a real PostgreSQL, real `tierq run`
 * daemons and the simulator: three daemons fire each due time exactly once; a daemon killed with
 * SIGKILL mid-fire leaves the whole fire or none; missed fires follow each catch-up policy; the
 * only-changed mode enqueues exactly the new and edited rows; a schedule's source runs with its
 * author's rights, never the daemon's; a per-fire budget stops the run's claims. */
#include "runhelp.h"

#include <signal.h>
#include <time.h>

static SimProc sim;
static const SimProc *s = &sim;
static PGconn *c;

/* A source of n rows over app.items, SECURITY DEFINER, owned by the current role. */
static void make_items(int n)
{
    char sql[1024], err[512];
    snprintf(sql, sizeof sql,
             "CREATE SCHEMA IF NOT EXISTS app;"
             "DROP TABLE IF EXISTS app.items CASCADE;"
             "CREATE TABLE app.items (id int PRIMARY KEY, body text NOT NULL);"
             "INSERT INTO app.items SELECT g, 'Is item ' || g || ' in stock? positive or negative' FROM generate_series(1, %d) g;"
             "CREATE OR REPLACE FUNCTION app.items_src() RETURNS TABLE (kind text, prompt text, source_key text)"
             " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog"
             " AS $$ SELECT 'classify', body, id::text FROM app.items $$;",
             n);
    if (testdb_exec(c, sql, err, sizeof err))
        printf("# make_items: %s", err);
}

/* tierq ARGS connected as role user (the test database's conninfo plus user=...). */
static int run_as(const char *user, const char *args, char *out, size_t cap)
{
    char saved[sizeof testdb_conninfo];
    snprintf(saved, sizeof saved, "%s", testdb_conninfo);
    snprintf(testdb_conninfo, sizeof testdb_conninfo, "%.900s user=%.60s", saved, user);
    int st = testdb_run(args, out, cap);
    snprintf(testdb_conninfo, sizeof testdb_conninfo, "%s", saved);
    return st;
}

static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Three daemons, a schedule every 3 s, a minute: every due time between the first and the last fire
 * fired once (the due times are consecutive), each fire's run holds the source's 4 rows once. */
static void test_three_daemons_fire_each_due_time_once(void)
{
    make_items(4);
    CHECK(testdb_exec(c, "INSERT INTO tierq.schedules (name, cron, source, run_name)"
                         " VALUES ('every3', '@every 3s', 'app.items_src()', '{schedule}-{date}-{time}')", NULL, 0) == 0);
    int pids[3];
    char log[3][256];
    for (int i = 0; i < 3; i++) {
        snprintf(log[i], sizeof log[i], "%s/sched_daemon_%d.log", getenv("TIERQ_TEST_TMP"), i);
        pids[i] = start_daemon_logged(s, "--max-in-flight 16", log[i]);
    }
    sleep(60);
    for (int i = 0; i < 3; i++)
        kill(pids[i], SIGTERM);
    for (int i = 0; i < 3; i++)
        waitpid(pids[i], NULL, 0);
    CHECK(testdb_exec(c, "UPDATE tierq.schedules SET enabled = false WHERE name = 'every3'", NULL, 0) == 0);
    long long fires = q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'every3'");
    long long span = q(c, "SELECT (extract(epoch FROM max(due_at) - min(due_at)) / 3)::bigint + 1"
                          " FROM tierq.schedule_fires WHERE schedule = 'every3'");
    printf("# %lld fires over the minute\n", fires);
    CHECK(fires >= 18 && fires <= 21);
    CHECK_INT(span, fires); /* no due time missed, none twice (the primary key would refuse it anyway) */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'every3' AND outcome = 'ok' AND jobs = 4"),
              fires);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name LIKE 'every3-%'"), 4 * fires);
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT run_name FROM tierq.jobs WHERE run_name LIKE 'every3-%'"
                   " GROUP BY run_name HAVING count(*) = 4 AND count(DISTINCT prompt) = 4) x"),
              fires);
    /* the fires were shared out: more than one daemon fired */
    long long firers = q(c, "SELECT count(DISTINCT fired_by) FROM tierq.schedule_fires WHERE schedule = 'every3'");
    printf("# %lld daemons fired\n", firers);
    CHECK(firers >= 2);
    CHECK_INT(q(c, "SELECT fires FROM tierq.schedules WHERE name = 'every3'"), fires);
}

/* SIGKILL during fires (the source takes a second; each daemon is killed while its fire statement is
 * running): each fire is whole or absent, and a fresh daemon then fires the due time the dead ones
 * left. A sequence, which no rollback undoes, counts the source's runs: the kills did cut fires. */
static void test_kill9_mid_fire_whole_or_none(void)
{
    make_items(5);
    CHECK(testdb_exec(c,
                      "CREATE SEQUENCE app.source_runs;"
                      "CREATE OR REPLACE FUNCTION app.slow_src() RETURNS TABLE (kind text, prompt text)"
                      " LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog"
                      " AS $$ SELECT 'classify', body FROM app.items, pg_sleep(1), nextval('app.source_runs') $$;"
                      "INSERT INTO tierq.schedules (name, cron, source, run_name)"
                      " VALUES ('slow', '@every 2s', 'app.slow_src()', '{schedule}-{time}')",
                      NULL, 0) == 0);
    for (int k = 0; k < 4; k++) {
        /* the last killed daemon's session ends when its statement does: wait, so the fire seen next
         * is the new daemon's */
        CHECK_INT(wait_for(c, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%tierq.schedule_fire(%'"
                              " AND pid <> pg_backend_pid()", 0, 10000), 0);
        int pid = start_daemon(s, "--max-in-flight 4");
        CHECK_INT(wait_for(c, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                              " AND query LIKE '%tierq.schedule_fire(%' AND pid <> pg_backend_pid()", 1, 10000), 1);
        usleep(300000); /* inside the source's second */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    /* the killed daemons' sessions end with them: their open fires roll back */
    CHECK_INT(wait_for(c, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%schedule_fire%'"
                          " AND pid <> pg_backend_pid()", 0, 10000), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT run_name FROM tierq.jobs WHERE run_name LIKE 'slow-%'"
                   " GROUP BY run_name HAVING count(*) <> 5) x"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires f WHERE schedule = 'slow' AND"
                   " jobs <> (SELECT count(*) FROM tierq.jobs j WHERE j.run_name = f.run_name)"), 0);
    long long before = q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'slow'");
    long long cut = q(c, "SELECT last_value FROM app.source_runs") - before;
    printf("# %lld whole fires recorded, %lld cut by the 4 kills and rolled back\n", before, cut);
    CHECK(cut >= 4);
    /* a daemon that lives fires again, exactly once per due time */
    int pid = start_daemon(s, "--max-in-flight 4");
    char more[256];
    snprintf(more, sizeof more, "SELECT (count(*) >= %lld + 2)::int FROM tierq.schedule_fires WHERE schedule = 'slow'",
             before);
    CHECK_INT(wait_for(c, more, 1, 15000), 1);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    CHECK(testdb_exec(c, "UPDATE tierq.schedules SET enabled = false WHERE name = 'slow'", NULL, 0) == 0);
    CHECK(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'slow'") > before);
    CHECK_INT(q(c, "SELECT count(*) FROM (SELECT run_name FROM tierq.jobs WHERE run_name LIKE 'slow-%'"
                   " GROUP BY run_name HAVING count(*) <> 5) x"), 0);
    CHECK_INT(q(c, "SELECT count(*) - count(DISTINCT run_name) FROM tierq.schedule_fires WHERE schedule = 'slow'"), 0);
}

/* Sources that try to act with more than their author's rights: a column type of the author's whose
 * cast to json would run as the firer; a source that changes the session's settings for what the
 * daemon runs next; a writer that stands in its own pg_has_role to write a prune schedule. Each is
 * refused, readably, and nothing of theirs runs as anyone else. */
static void test_hostile_sources(void)
{
    char err[1024], out[4096];
    CHECK(testdb_exec(c,
                      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sched_mal') THEN"
                      "  CREATE ROLE sched_mal LOGIN IN ROLE tierq_producer; END IF; END $$;"
                      "CREATE SCHEMA IF NOT EXISTS mal AUTHORIZATION sched_mal;"
                      "GRANT USAGE ON SCHEMA mal TO tierq_daemon;"
                      "CREATE TABLE IF NOT EXISTS app.canary (who text);",
                      err, sizeof err) == 0);
    /* 1. a type of the author's, with a cast to json that would record who ran it */
    CHECK(testdb_exec(c,
                      "SET ROLE sched_mal;"
                      "CREATE TYPE mal.mood AS ENUM ('x');"
                      "CREATE FUNCTION mal.mood_json(mal.mood) RETURNS json LANGUAGE sql AS"
                      " $$ SELECT to_json(current_user::text) $$;"
                      "CREATE CAST (mal.mood AS json) WITH FUNCTION mal.mood_json(mal.mood);"
                      "CREATE FUNCTION mal.moody() RETURNS TABLE (kind text, prompt mal.mood) LANGUAGE sql"
                      " SECURITY DEFINER AS $$ SELECT 'classify', 'x'::mal.mood $$;"
                      "RESET ROLE", err, sizeof err) == 0);
    if (err[0])
        printf("# %s", err);
    CHECK(testdb_exec(c, "SET ROLE sched_mal; INSERT INTO tierq.schedules (name, cron, source)"
                         " VALUES ('moody', '@daily', 'mal.moody()')", err, sizeof err) != 0);
    CHECK(strstr(err, "yields columns of types that are not built in (prompt mal.mood)") != NULL);
    testdb_exec(c, "RESET ROLE", NULL, 0);
    /* 2. a source that leaves the session's search_path pointing at its own schema */
    CHECK(testdb_exec(c,
                      "SET ROLE sched_mal;"
                      "CREATE FUNCTION mal.leaky() RETURNS TABLE (kind text, prompt text) LANGUAGE plpgsql"
                      " SECURITY DEFINER SET search_path = pg_catalog AS $$ BEGIN"
                      " PERFORM set_config('search_path', 'mal, pg_catalog, pg_temp', false);"
                      " RETURN QUERY SELECT 'classify'::text, 'leak'::text; END $$;"
                      "INSERT INTO tierq.schedules (name, cron, source) VALUES ('leaky', '@daily', 'mal.leaky()');"
                      "RESET ROLE", err, sizeof err) == 0);
    if (err[0])
        printf("# %s", err);
    CHECK_INT(run_as("sched_mal", "schedule fire-now leaky", out, sizeof out), 1);
    CHECK(strstr(out, "source mal.leaky changed the session's settings") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt = 'leak'"), 0);
    /* 3. its own pg_has_role and search_path, to pass the prune check when writing */
    CHECK(testdb_exec(c,
                      "SET ROLE sched_mal;"
                      "CREATE FUNCTION mal.pg_has_role(name, name, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;"
                      "CREATE FUNCTION mal.pg_has_role(name, oid, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;"
                      "SET search_path = mal, pg_catalog;"
                      "INSERT INTO tierq.schedules (name, cron, action, prune_older_than)"
                      " VALUES ('wipe2', '@every 2s', 'prune', '1 second')",
                      err, sizeof err) != 0);
    CHECK(strstr(err, "may schedule a prune") != NULL || strstr(err, "row-level security") != NULL);
    testdb_exec(c, "RESET ROLE; RESET search_path", NULL, 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name IN ('moody', 'wipe2')"), 0);
    CHECK(testdb_exec(c, "DELETE FROM tierq.schedules WHERE name = 'leaky'", NULL, 0) == 0);
}

/* Fires missed while no daemon ran: an hourly schedule counted from 5 h 0 m ago (5 due times: the
 * last 5 hour marks), then one drain run. */
static void test_catch_up_policies(void)
{
    make_items(2);
    CHECK(testdb_exec(c,
                      "INSERT INTO tierq.schedules (name, cron, source, catch_up, catch_up_max, grace_s, run_name) VALUES"
                      " ('cu_skip', '@every 1h', 'app.items_src()', 'skip', 10, 60, '{schedule}-{time}'),"
                      " ('cu_latest', '@every 1h', 'app.items_src()', 'latest', 10, 300, '{schedule}-{time}'),"
                      " ('cu_all', '@every 1h', 'app.items_src()', 'all', 3, 300, '{schedule}-{time}');"
                      "UPDATE tierq.schedules SET fire_from = date_trunc('hour', now()) - interval '5 hours'"
                      " + interval '1 second' WHERE name LIKE 'cu_%'",
                      NULL, 0) == 0);
    /* a drain run limited to kinds (or a run) is a targeted job: it fires nothing */
    CHECK_INT(run_drain(s, "--max-in-flight 8 --kinds classify"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule LIKE 'cu_%'"), 0);
    CHECK_INT(run_drain(s, "--max-in-flight 8"), 0);
    long long age = q(c, "SELECT extract(epoch FROM now() - date_trunc('hour', now()))::bigint");
    /* latest: the latest hour mark, once; the other 4 skipped */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'cu_latest'"), 1);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'cu_latest'"
                   " AND due_at = date_trunc('hour', now())"), 1);
    CHECK_INT(q(c, "SELECT last_skipped FROM tierq.schedules WHERE name = 'cu_latest'"), 4);
    /* all, at most 3: the latest three hour marks, oldest first; 2 skipped */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'cu_all'"
                   " AND due_at > date_trunc('hour', now()) - interval '3 hours'"), 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'cu_all'"), 3);
    CHECK_INT(q(c, "SELECT last_skipped FROM tierq.schedules WHERE name = 'cu_all'"), 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name LIKE 'cu_all-%'"), 6);
    /* skip, grace 60 s: nothing, unless the latest hour mark is under a minute old */
    long long want = age <= 60 ? 1 : 0;
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'cu_skip'"), want);
    CHECK_INT(q(c, "SELECT last_skipped FROM tierq.schedules WHERE name = 'cu_skip'"), 5 - want);
    if (!want)
        CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'cu_skip' AND last_outcome = 'missed'"), 1);
    /* each moves on to the next hour mark */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name LIKE 'cu_%'"
                   " AND next_fire_at = date_trunc('hour', now()) + interval '1 hour'"), 3);
    CHECK(strstr(run_out, "run: schedules: ") != NULL);
    CHECK(testdb_exec(c, "DELETE FROM tierq.schedules WHERE name LIKE 'cu_%'", NULL, 0) == 0);
}

/* only_changed: the second fire enqueues exactly the edited and new rows; a third, nothing. */
static void test_only_changed(void)
{
    make_items(10);
    CHECK(testdb_exec(c, "INSERT INTO tierq.schedules (name, cron, source, only_changed, run_name)"
                         " VALUES ('changed', '@daily', 'app.items_src()', true, 'changed-{time}')", NULL, 0) == 0);
    char out[4096];
    CHECK_INT(testdb_run("schedule fire-now changed", out, sizeof out), 0);
    CHECK(strstr(out, "10 jobs into run changed-") != NULL);
    CHECK(testdb_exec(c, "UPDATE app.items SET body = body || ' (edited)' WHERE id IN (3, 7);"
                         "INSERT INTO app.items VALUES (11, 'Is the new item 11 in stock?');"
                         "DELETE FROM app.items WHERE id = 5", NULL, 0) == 0);
    usleep(1100000); /* run names by the second */
    CHECK_INT(testdb_run("schedule fire-now changed", out, sizeof out), 0);
    CHECK(strstr(out, "3 jobs into run changed-") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = (SELECT last_run_name FROM tierq.schedules"
                   " WHERE name = 'changed') AND prompt IN ('Is item 3 in stock? positive or negative (edited)',"
                   " 'Is item 7 in stock? positive or negative (edited)', 'Is the new item 11 in stock?')"), 3);
    usleep(1100000);
    CHECK_INT(testdb_run("schedule fire-now changed", out, sizeof out), 0);
    CHECK(strstr(out, "0 jobs into run") != NULL && strstr(out, "(empty)") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_rows WHERE schedule = 'changed'"), 11);
    /* a source without source_key is refused by only_changed, readably, enqueuing nothing */
    CHECK(testdb_exec(c, "CREATE FUNCTION app.nokey() RETURNS TABLE (kind text, prompt text) LANGUAGE sql"
                         " SECURITY DEFINER AS $$ SELECT 'classify', 'x' $$;"
                         "INSERT INTO tierq.schedules (name, cron, source, only_changed)"
                         " VALUES ('nokey', '@daily', 'app.nokey()', true)", NULL, 0) == 0);
    CHECK_INT(testdb_run("schedule fire-now nokey", out, sizeof out), 1);
    CHECK(strstr(out, "only_changed: source app.nokey yields 1 row(s) without a source_key") != NULL);
    /* an unknown column is refused when the schedule is written; a bad kind fails the fire whole, the
     * row named */
    char err[1024];
    CHECK(testdb_exec(c, "CREATE FUNCTION app.typo() RETURNS TABLE (kind text, promt text) LANGUAGE sql"
                         " SECURITY DEFINER AS $$ SELECT 'classify', 'x' $$;"
                         "CREATE FUNCTION app.badkind() RETURNS TABLE (kind text, prompt text) LANGUAGE sql"
                         " SECURITY DEFINER AS $$ VALUES ('classify', 'fine'), ('no_such_kind', 'x') $$;"
                         "INSERT INTO tierq.schedules (name, cron, source) VALUES ('badkind', '@daily', 'app.badkind()')",
                      NULL, 0) == 0);
    CHECK(testdb_exec(c, "INSERT INTO tierq.schedules (name, cron, source) VALUES ('typo', '@daily', 'app.typo()')",
                      err, sizeof err) != 0);
    CHECK(strstr(err, "must yield columns kind and prompt, and only these others") != NULL && strstr(err, "it yields kind, promt"));
    CHECK_INT(testdb_run("schedule fire-now badkind", out, sizeof out), 1);
    CHECK(strstr(out, "Key (kind)=(no_such_kind) is not present in table \"kinds\"") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name LIKE 'badkind-%'"), 0);
    /* a disabled schedule does not fire by hand (or from pg_cron) either */
    CHECK(testdb_exec(c, "UPDATE tierq.schedules SET enabled = false WHERE name = 'badkind'", NULL, 0) == 0);
    CHECK_INT(testdb_run("schedule fire-now badkind", out, sizeof out), 1);
    CHECK(strstr(out, "schedule badkind is disabled") != NULL);
    /* max_jobs without only_changed says what happens to the rest */
    CHECK(testdb_exec(c, "INSERT INTO tierq.schedules (name, cron, source, max_jobs) VALUES ('cap', '@daily', 'app.items_src()', 4)",
                      NULL, 0) == 0);
    CHECK_INT(testdb_run("schedule fire-now cap", out, sizeof out), 0);
    CHECK(strstr(out, "4 jobs into run cap-") && strstr(out, "rows over max_jobs (4) not enqueued: without only_changed"));
}

/* The source runs with its author's rights: a producer role without SELECT on a table cannot read it
 * through a schedule, whichever role the daemon runs as (here: a superuser and a tierq_daemon). */
static void test_source_runs_with_authors_rights(void)
{
    char err[1024];
    CHECK(testdb_exec(c,
                      "DO $$ BEGIN"
                      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sched_eve') THEN"
                      "    CREATE ROLE sched_eve NOLOGIN IN ROLE tierq_producer; END IF;"
                      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sched_bob') THEN"
                      "    CREATE ROLE sched_bob LOGIN IN ROLE tierq_producer; END IF;"
                      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sched_runner') THEN"
                      "    CREATE ROLE sched_runner LOGIN IN ROLE tierq_daemon; END IF;"
                      " END $$;"
                      "ALTER ROLE sched_bob LOGIN;"
                      "CREATE SCHEMA IF NOT EXISTS eve AUTHORIZATION sched_eve;"
                      "CREATE TABLE app.salaries (who text, pay int); INSERT INTO app.salaries VALUES ('ceo', 1000000);"
                      "GRANT USAGE ON SCHEMA app TO sched_eve, sched_runner;"
                      "GRANT USAGE ON SCHEMA eve TO sched_bob;"
                      "GRANT CREATE ON SCHEMA public TO sched_runner;",
                      err, sizeof err) == 0);
    if (err[0])
        printf("# %s", err);
    /* eve's SECURITY DEFINER function reads a table she may not read */
    CHECK(testdb_exec(c,
                      "SET ROLE sched_eve;"
                      "GRANT USAGE ON SCHEMA eve TO tierq_daemon;" /* the daemon must reach her functions */
                      "CREATE FUNCTION eve.peek() RETURNS TABLE (kind text, prompt text) LANGUAGE sql STABLE"
                      " SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT 'classify', who || pay FROM app.salaries $$;"
                      "CREATE FUNCTION eve.peek_invoker() RETURNS TABLE (kind text, prompt text) LANGUAGE sql STABLE"
                      " AS $$ SELECT 'classify', who || pay FROM app.salaries $$;"
                      "CREATE FUNCTION eve.escape() RETURNS TABLE (kind text, prompt text) LANGUAGE plpgsql"
                      " SECURITY DEFINER AS $$ BEGIN RESET ROLE; RETURN QUERY SELECT 'classify'::text, who || pay"
                      " FROM app.salaries; END $$;"
                      "INSERT INTO tierq.schedules (name, cron, source) VALUES ('peek', '@every 2s', 'eve.peek()'),"
                      " ('escape', '@every 2s', 'eve.escape()');"
                      "RESET ROLE",
                      err, sizeof err) == 0);
    if (err[0])
        printf("# %s", err);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name IN ('peek', 'escape') AND created_by = 'sched_eve'"), 2);
    /* an invoker function would run with the daemon's rights: refused when written */
    CHECK(testdb_exec(c, "SET ROLE sched_eve; INSERT INTO tierq.schedules (name, cron, source)"
                         " VALUES ('inv', '@daily', 'eve.peek_invoker()')", err, sizeof err) != 0);
    CHECK(strstr(err, "must be SECURITY DEFINER") != NULL);
    testdb_exec(c, "RESET ROLE", NULL, 0);
    /* so would someone else's function */
    CHECK(testdb_exec(c, "SET ROLE sched_bob; INSERT INTO tierq.schedules (name, cron, source)"
                         " VALUES ('bobs', '@daily', 'eve.peek()')", err, sizeof err) != 0);
    CHECK(strstr(err, "belongs to sched_eve, not to sched_bob") != NULL);
    testdb_exec(c, "RESET ROLE", NULL, 0);
    /* bob cannot change eve's schedule, nor eve the recorded author, nor either schedule a prune */
    CHECK(testdb_exec(c, "SET ROLE sched_bob; UPDATE tierq.schedules SET cron = '@hourly' WHERE name = 'peek'", NULL, 0) == 0);
    testdb_exec(c, "RESET ROLE", NULL, 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'peek' AND cron = '@every 2s'"), 1);
    CHECK(testdb_exec(c, "SET ROLE sched_eve; UPDATE tierq.schedules SET created_by = 'tierq' WHERE name = 'peek'",
                      err, sizeof err) != 0);
    testdb_exec(c, "RESET ROLE", NULL, 0);
    CHECK(testdb_exec(c, "SET ROLE sched_eve; INSERT INTO tierq.schedules (name, cron, action, prune_older_than)"
                         " VALUES ('wipe', '@daily', 'prune', '1 second')", err, sizeof err) != 0);
    CHECK(strstr(err, "may schedule a prune") != NULL);
    testdb_exec(c, "RESET ROLE", NULL, 0);
    /* bob may read eve's schedule (show), but not fire it by hand */
    char out2[4096];
    CHECK_INT(run_as("sched_bob", "schedule show peek", out2, sizeof out2), 0);
    CHECK(strstr(out2, "source         eve.peek(), run as sched_eve") != NULL);
    CHECK_INT(run_as("sched_bob", "schedule fire-now peek", out2, sizeof out2), 1);
    CHECK(strstr(out2, "schedule peek belongs to sched_eve: sched_bob may not fire it") != NULL);
    /* fired by a superuser daemon, then by a tierq_daemon one: permission denied each time, nothing read */
    CHECK(testdb_exec(c, "UPDATE tierq.schedules SET fire_from = now() - interval '3 seconds', next_fire_at = NULL"
                         " WHERE name IN ('peek', 'escape')", NULL, 0) == 0);
    CHECK_INT(run_drain(s, "--max-in-flight 4"), 0);
    sleep(2);
    CHECK(testdb_exec(c, "UPDATE tierq.schedules SET fire_from = now() - interval '3 seconds', next_fire_at = NULL"
                         " WHERE name IN ('peek', 'escape')", NULL, 0) == 0);
    sleep(1);
    setenv("TIERQ_BASE_URL", s->base_url, 1);
    int st = run_as("sched_runner", "run --drain --quiet --max-in-flight 4", run_out, sizeof run_out);
    unsetenv("TIERQ_BASE_URL");
    CHECK_INT(st, 0);
    if (st)
        printf("# %s\n", run_out);
    CHECK(q(c, "SELECT count(DISTINCT fired_by) FROM tierq.schedule_fires WHERE schedule = 'peek'") >= 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'peek'"
                   " AND (outcome <> 'error' OR error <> 'permission denied for table salaries')"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'escape'"
                   " AND (outcome <> 'error' OR error NOT LIKE '%cannot set parameter \"role\" within security-definer function%')"), 0);
    CHECK(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'escape'") >= 2);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt LIKE '%1000000%'"), 0);
    /* with SELECT granted, the same schedule reads it (the test above can fail) */
    CHECK(testdb_exec(c, "GRANT SELECT ON app.salaries TO sched_eve", NULL, 0) == 0);
    char out[2048];
    CHECK_INT(testdb_run("schedule fire-now peek", out, sizeof out), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt = 'ceo1000000'"), 1);
    CHECK(testdb_exec(c, "DELETE FROM tierq.schedules WHERE name IN ('peek', 'escape'); DELETE FROM tierq.jobs"
                         " WHERE prompt = 'ceo1000000'", NULL, 0) == 0);
}

/* A per-fire budget: once the run's jobs have cost it, its queued jobs are not claimed. */
static void test_budget_per_fire(void)
{
    make_items(400);
    CHECK(testdb_exec(c, "INSERT INTO tierq.schedules (name, cron, source, budget_usd, run_name)"
                         " VALUES ('budgeted', '@daily', 'app.items_src()', 0.000100, 'budgeted')", NULL, 0) == 0);
    char out[2048];
    CHECK_INT(testdb_run("schedule fire-now budgeted", out, sizeof out), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.run_budgets WHERE run_name = 'budgeted' AND reached_at IS NULL"), 1);
    /* a daemon at 4 in flight (the simulator answers in ~300 ms): the budget is checked each second */
    int pid = start_daemon(s, "--max-in-flight 4");
    long long reached = wait_for(c, "SELECT count(*) FROM tierq.run_budgets WHERE run_name = 'budgeted'"
                                    " AND reached_at IS NOT NULL", 1, 60000);
    sleep(3);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    CHECK_INT(reached, 1);
    long long done = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'budgeted' AND state = 'done'");
    long long queued = q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'budgeted' AND state = 'queued'");
    printf("# budget reached after %lld jobs; %lld stay queued\n", done, queued);
    CHECK(done > 0 && queued > 0 && done + queued == 400);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.run_budgets b WHERE run_name = 'budgeted' AND spent_usd >= budget_usd"), 1);
    /* a drain run leaves them queued and ends */
    CHECK_INT(run_drain(s, "--max-in-flight 4"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'budgeted' AND state = 'queued'"), queued);
    check_sums(c);
}

/* A prune schedule (the daemon's role or tierq's owner only): fired like any other, it prunes in
 * batches after its fire commits and records how many jobs it deleted. */
static void test_prune_schedule(void)
{
    CHECK(testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, state, result, run_name, started_at, finished_at)"
                         " SELECT 'classify', 'old ' || g, 'done', 'positive', 'old-run', now() - interval '40 days',"
                         " now() - interval '40 days' FROM generate_series(1, 30) g;"
                         "INSERT INTO tierq.jobs (kind, prompt, state, result, run_name, started_at, finished_at)"
                         " SELECT 'classify', 'recent ' || g, 'done', 'positive', 'recent-run', now(), now()"
                         " FROM generate_series(1, 5) g;"
                         "INSERT INTO tierq.schedules (name, cron, action, prune_older_than, prune_states)"
                         " VALUES ('retention', '@every 1h', 'prune', '30 days', '{done}');"
                         "UPDATE tierq.schedules SET fire_from = date_trunc('hour', now()) - interval '1 second'"
                         " WHERE name = 'retention'", NULL, 0) == 0);
    CHECK_INT(run_drain(s, "--max-in-flight 4"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'old-run'"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'recent-run'"), 5);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'retention' AND outcome = 'ok' AND jobs = 30"), 1);
    CHECK_INT(q(c, "SELECT last_jobs FROM tierq.schedules WHERE name = 'retention'"), 30);
    CHECK_INT(q(c, "SELECT coalesce(sum(jobs), 0) FROM tierq.daily_totals WHERE run_name = 'old-run'"), 30);
    CHECK(testdb_exec(c, "DELETE FROM tierq.schedules WHERE name = 'retention'", NULL, 0) == 0);
}

/* The README's copy-paste SQL for schedules, run as written (over a table it assumes), then fired. */
static void test_readme_schedule_example(void)
{
    char *sql = readme_sql_after("### Schedules");
    CHECK(strstr(sql, "CREATE FUNCTION app.nightly_articles()") != NULL);
    char err[1024];
    CHECK(testdb_exec(c, "DROP TABLE IF EXISTS app.articles CASCADE;"
                         "CREATE TABLE app.articles (id int PRIMARY KEY, body text NOT NULL, published boolean NOT NULL);"
                         "INSERT INTO app.articles SELECT g, 'Article ' || g || ': the council approved the budget.', g % 4 <> 0"
                         " FROM generate_series(1, 12) g",
                      NULL, 0) == 0);
    CHECK(testdb_exec(c, sql, err, sizeof err) == 0);
    if (err[0])
        printf("# README SQL: %s", err);
    free(sql);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'nightly-summaries' AND cron = '30 2 * * *'"
                   " AND tz = 'Europe/Berlin' AND only_changed AND budget_usd = 5"), 1);
    char out[2048];
    CHECK_INT(testdb_run("schedule fire-now nightly-summaries", out, sizeof out), 0);
    CHECK(strstr(out, "9 jobs into run nightly-summaries-") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE kind = 'summarize' AND run_name LIKE 'nightly-summaries-%'"), 9);
    CHECK(testdb_exec(c, "DELETE FROM tierq.schedules WHERE name = 'nightly-summaries'", NULL, 0) == 0);
}

/* The CLI: add refuses a bad cron or zone before writing, list/show print next fires, enable/disable. */
static void test_cli(void)
{
    make_items(1);
    char out[8192];
    CHECK_INT(testdb_run("schedule add bad --cron '0 25 * * *' --source app.items_src", out, sizeof out), 2);
    CHECK(strstr(out, "cron: field 2 (hour) \"25\" is out of 0-23") != NULL);
    CHECK_INT(testdb_run("schedule add bad --cron '@daily' --tz Mars/Olympus --source app.items_src", out, sizeof out), 2);
    CHECK(strstr(out, "Mars/Olympus") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'bad'"), 0);
    CHECK_INT(testdb_run("schedule add berlin --cron '30 2 * * *' --tz Europe/Berlin --source app.items_src"
                         " --only-changed --max-jobs 100", out, sizeof out), 0);
    CHECK(count_lines(out, "02:30:00 +01:00 Europe/Berlin (01:30:00 UTC)") + count_lines(out, "02:30:00 +02:00 Europe/Berlin (00:30:00 UTC)") == 3);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'berlin' AND tz = 'Europe/Berlin' AND only_changed"
                   " AND max_jobs = 100 AND source = 'app.items_src()'::regprocedure"), 1);
    CHECK_INT(testdb_run("schedule list", out, sizeof out), 0);
    CHECK(strstr(out, "berlin") != NULL && strstr(out, "Europe/Berlin") != NULL);
    CHECK_INT(testdb_run("schedule show berlin", out, sizeof out), 0);
    CHECK(count_lines(out, " Europe/Berlin (") == 5);
    CHECK_INT(testdb_run("schedule disable berlin", out, sizeof out), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'berlin' AND NOT enabled"), 1);
    CHECK_INT(testdb_run("schedule enable berlin", out, sizeof out), 0);
    CHECK_INT(testdb_run("schedule add berlin --cron @daily --source app.items_src", out, sizeof out), 2);
    CHECK(strstr(out, "a schedule named \"berlin\" already exists") != NULL);
    CHECK_INT(testdb_run("schedule remove berlin", out, sizeof out), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'berlin'"), 0);
    CHECK_INT(testdb_run("schedule remove berlin", out, sizeof out), 2);
    CHECK_INT(testdb_run("schedule add x --cron '@daily'", out, sizeof out), 2);
    CHECK(strstr(out, "give either --source") != NULL);
    CHECK_INT(testdb_run("schedule frobnicate", out, sizeof out), 2);
    /* values the table would refuse are refused by the command, by option */
    CHECK_INT(testdb_run("schedule add y --cron @daily --source app.items_src --run-name '{schedule}-{hour}'", out, sizeof out), 2);
    CHECK(strstr(out, "the only placeholders are {schedule}, {date} and {time}") != NULL);
    CHECK_INT(testdb_run("schedule add y --cron @daily --source app.items_src --max-jobs 999999999999", out, sizeof out), 2);
    CHECK(strstr(out, "--max-jobs takes a whole number from 1 to 10000000") != NULL);
    CHECK_INT(testdb_run("schedule add y --cron @daily --source app.items_src --budget-usd abc", out, sizeof out), 2);
    CHECK_INT(testdb_run("schedule add 'bad name' --cron @daily --source app.items_src", out, sizeof out), 2);
    CHECK_INT(testdb_run("schedule add y --cron @external --prune-older-than 30d", out, sizeof out), 2);
    CHECK(strstr(out, "a prune schedule is fired by the daemons") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name IN ('y', 'bad name')"), 0);
    /* @external: left to pg_cron; the daemons never set a next fire time */
    CHECK_INT(testdb_run("schedule add outside --cron @external --source app.items_src", out, sizeof out), 0);
    CHECK(strstr(out, "SELECT tierq.fire('outside')") != NULL);
    /* a cron the database accepted but no parser can read: the daemon says so on the row */
    CHECK(testdb_exec(c, "INSERT INTO tierq.schedules (name, cron, source) VALUES ('garbled', '61 * * * *', 'app.items_src()')",
                      NULL, 0) == 0);
    CHECK_INT(testdb_run("run --drain --quiet --max-in-flight 2", out, sizeof out), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'garbled' AND next_fire_at IS NULL"
                   " AND cron_error LIKE 'cron: field 1 (minute) \"61\"%'"), 1);
    CHECK_INT(testdb_run("schedule list", out, sizeof out), 0);
    CHECK(strstr(out, "never: cron: field 1") != NULL);
    CHECK(strstr(out, "when tierq.fire() is called") != NULL);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.schedules WHERE name = 'outside' AND next_fire_at IS NULL AND fires = 0"), 1);
    CHECK(testdb_exec(c, "DELETE FROM tierq.schedules WHERE name IN ('garbled', 'outside')", NULL, 0) == 0);
}

int main(void)
{
    testdb_setup("tq_schedule", 1);
    c = testdb_connect();
    if (sim_start(&sim, NULL, NULL)) {
        printf("not ok - simulator\n");
        return 1;
    }
    setenv("TIERQ_SPILL_DIR", getenv("TIERQ_TEST_TMP") ? getenv("TIERQ_TEST_TMP") : "/tmp", 0);
    RUN(test_cli);
    RUN(test_only_changed);
    RUN(test_readme_schedule_example);
    RUN(test_source_runs_with_authors_rights);
    RUN(test_hostile_sources);
    RUN(test_catch_up_policies);
    RUN(test_prune_schedule);
    RUN(test_budget_per_fire);
    RUN(test_kill9_mid_fire_whole_or_none);
    RUN(test_three_daemons_fire_each_due_time_once);
    sim_stop(&sim);
    PQfinish(c);
    return check_done();
}
