#!/bin/sh
# pg_cron recipe (README, Schedules): a tierq schedule fired by pg_cron through one SQL function,
# against a PostgreSQL of its own started with pg_cron preloaded (Debian: postgresql-NN-cron, which
# make deps installs). The schedule is '@external', so no tierq daemon fires it: pg_cron alone does,
# at the next whole minute, and the fire is recorded like any other.
set -u
root=${TIERQ_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${TIERQ_BIN:-$root/build/tierq}
tmp=${TIERQ_TEST_TMP:-/tmp}/pgcron.$$
pgdir="$tmp/pg"
mkdir -p "$tmp"
chmod 755 "$tmp"
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1"; fails=$((fails + 1)); }
fails=0
cleanup() { sh "$root/tests/pg.sh" stop "$pgdir" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

pgmaj=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if [ ! -f "/usr/lib/postgresql/$pgmaj/lib/pg_cron.so" ]; then
    notok "pg_cron is not installed (postgresql-$pgmaj-cron; run make deps)"
    exit 1
fi
conninfo=$(PG_EXTRA_OPTS="-c shared_preload_libraries=pg_cron -c cron.database_name=postgres -c cron.use_background_workers=on -c max_worker_processes=16" \
    sh "$root/tests/pg.sh" start "$pgdir") || { notok "start PostgreSQL with pg_cron"; exit 1; }
export TIERQ_DATABASE_URL="$conninfo"
psql_() { psql "$conninfo" -X -q -v ON_ERROR_STOP=1 -t -A "$@"; }

"$bin" --jobs "$root/jobs" migrate >/dev/null 2>&1 && ok "migrate" || notok "migrate"
# The recipe, as the README gives it.
psql_ >/dev/null <<'SQL' || notok "recipe SQL"
CREATE EXTENSION pg_cron;
CREATE SCHEMA app;
CREATE TABLE app.articles (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO app.articles SELECT g, 'Article ' || g || ': the council approved the new budget.' FROM generate_series(1, 3) g;
CREATE FUNCTION app.nightly_articles() RETURNS TABLE (kind text, prompt text, source_key text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
    AS $$ SELECT 'summarize', body, id::text FROM app.articles $$;
SQL
# the README's recipe as written, then its pg_cron job moved to every minute so that it fires now
awk '/^\*\*pg_cron\.\*\*/ {f = 1} f && /^```sql$/ {b = 1; next} b && /^```$/ {exit} b {print}' "$root/README.md" >"$tmp/recipe.sql"
grep -q "tierq.fire('nightly-summaries')" "$tmp/recipe.sql" && ok "README recipe found" || notok "README recipe found"
psql_ -f "$tmp/recipe.sql" >/dev/null || notok "README recipe runs"
psql_ -c "SELECT cron.alter_job(jobid, schedule => '* * * * *') FROM cron.job WHERE jobname = 'tierq-nightly-summaries'" >/dev/null ||
    notok "cron.alter_job"
[ "$(psql_ -c "SELECT count(*) FROM cron.job WHERE jobname = 'tierq-nightly-summaries'")" = 1 ] &&
    ok "pg_cron job scheduled" || notok "pg_cron job scheduled"
# pg_cron fires at the next whole minute
fired=0
for i in $(seq 1 80); do
    n=$(psql_ -c "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'nightly-summaries'")
    [ "$n" -ge 1 ] && { fired=1; break; }
    sleep 1
done
[ "$fired" = 1 ] && ok "pg_cron fired the schedule within 80 s" || notok "pg_cron fired the schedule within 80 s"
row=$(psql_ -c "SELECT fired_by || '|' || outcome || '|' || jobs FROM tierq.schedule_fires WHERE schedule = 'nightly-summaries' ORDER BY due_at LIMIT 1")
[ "$row" = "sql:tierq|ok|3" ] && ok "the fire enqueued the 3 rows, recorded as fired by SQL" || notok "fire row: $row"
jobs=$(psql_ -c "SELECT count(*) FROM tierq.jobs WHERE kind = 'summarize' AND run_name LIKE 'nightly-summaries-%'")
[ "$jobs" = 3 ] && ok "3 jobs under the fire's run name" || notok "jobs: $jobs"
st=$(psql_ -c "SELECT status FROM cron.job_run_details ORDER BY runid LIMIT 1")
[ "$st" = succeeded ] && ok "cron.job_run_details says succeeded" || notok "pg_cron status: $st"
# no tierq daemon fires an @external schedule: a drain run leaves it alone
"$bin" --jobs "$root/jobs" run --drain --quiet --kinds classify >/dev/null 2>&1
n=$(psql_ -c "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'nightly-summaries' AND fired_by NOT LIKE 'sql:%'")
[ "$n" = 0 ] && ok "daemons leave an @external schedule to pg_cron" || notok "a daemon fired it: $n"
psql_ -c "SELECT cron.unschedule('tierq-nightly-summaries')" >/dev/null
[ "$fails" -eq 0 ]
