#!/bin/sh
# make demo: a private PostgreSQL, the simulated provider on loopback, the Debian demo workload
# (tests/data/demo.tsv) enqueued with plain SQL, `tierq run --drain` with a live progress line, then
# the cost report.
#
# The cluster lives in a fresh directory under /tmp, not in the clone: PostgreSQL refuses to run as
# root, so as root the server runs as "nobody", which cannot reach a clone under a private (0700)
# home. The directory is removed at exit, so the demo can be run again and again; DEMO_KEEP=1 leaves
# the server running and prints how to connect and how to stop it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build}
demo=$(mktemp -d /tmp/tierq-demo.XXXXXX)
chmod 755 "$demo"

sim_pid=""
simqa_pid=""
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
    [ -n "$simqa_pid" ] && kill "$simqa_pid" 2>/dev/null
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "demo: PostgreSQL keeps running in $demo/pg (the simulator has stopped):"
        echo "  export TIERQ_DATABASE_URL=\"$conninfo\"; psql \"\$TIERQ_DATABASE_URL\""
        echo "  to run jobs again, start build/tierq-sim and export TIERQ_BASE_URL (see tests/sim/README.md)"
        echo "  stop it with: sh tests/pg.sh stop $demo/pg && rm -rf $demo"
    else
        sh tests/pg.sh stop "$demo/pg"
        rm -rf "$demo"
    fi
}
conninfo=""
trap cleanup EXIT
trap 'exit 130' INT TERM

conninfo=$(sh tests/pg.sh start "$demo/pg")
export TIERQ_DATABASE_URL="$conninfo"
export TIERQ_JOBS_DIR="$root/jobs"
export TIERQ_SPILL_DIR="$demo/spill" # the demo keeps everything in its own directory

rm -f "$demo/sim.port"
"$build/tierq-sim" --port 0 --port-file "$demo/sim.port" --models tests/sim/models.json \
    --answers tests/data/demo.tsv >"$demo/sim.log" 2>&1 &
sim_pid=$!
i=0
while [ ! -s "$demo/sim.port" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "demo: the simulator did not start (see $demo/sim.log)"; exit 1; }
    sleep 0.1
done
port=$(cat "$demo/sim.port")
export TIERQ_BASE_URL="http://127.0.0.1:$port/v1"
echo "demo: PostgreSQL in $demo/pg (removed at exit; DEMO_KEEP=1 keeps it), simulated provider on 127.0.0.1:$port"

"$build/tierq" migrate
run="demo-$(date +%Y%m%d-%H%M%S)"
psql -q -v ON_ERROR_STOP=1 "$conninfo" <<SQL
CREATE TEMP TABLE staging (kind text, prompt text, expected text);
\copy staging (kind, prompt, expected) FROM 'tests/data/demo.tsv' WITH (FORMAT text, HEADER true)
INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT kind, prompt, expected, '$run-tiered' FROM staging;
INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT kind, prompt, expected, '$run-baseline' FROM staging;
SQL
n=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name = '$run-tiered'")
echo "demo: enqueued the Debian workload twice ($n jobs each): $run-tiered and $run-baseline"

echo
echo "== 1. the shipped tiered model map (jobs/*.json) =="
"$build/tierq" run --drain --progress --run "$run-tiered" --max-in-flight 512
echo
echo "== 2. every kind on its baseline model (tierq run --model-map baseline) =="
"$build/tierq" run --drain --progress --run "$run-baseline" --max-in-flight 512 --model-map baseline
echo
"$build/tierq" report --run "$run-tiered"
echo
echo "== tiered against all-baseline, same $n jobs =="
psql -q "$conninfo" <<SQL
\pset footer off
SELECT coalesce(kind, 'all') AS kind,
       round(sum(cost_usd) FILTER (WHERE run_name = '$run-tiered'), 6) AS tiered_usd,
       round(sum(cost_usd) FILTER (WHERE run_name = '$run-baseline'), 6) AS baseline_usd,
       round(100 * sum(cost_usd) FILTER (WHERE run_name = '$run-tiered')
             / nullif(sum(cost_usd) FILTER (WHERE run_name = '$run-baseline'), 0), 2) AS cost_pct,
       round(100.0 * avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int)
             FILTER (WHERE run_name = '$run-tiered'), 1) AS tiered_acc,
       round(100.0 * avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int)
             FILTER (WHERE run_name = '$run-baseline'), 1) AS baseline_acc,
       round(100.0 * count(*) FILTER (WHERE run_name = '$run-tiered' AND tier = 1)
             / nullif(count(*) FILTER (WHERE run_name = '$run-tiered'), 0), 1) AS tier1_pct,
       round(100.0 * count(*) FILTER (WHERE run_name = '$run-tiered' AND tier = 2)
             / nullif(count(*) FILTER (WHERE run_name = '$run-tiered'), 0), 1) AS tier2_pct,
       round(100.0 * count(*) FILTER (WHERE run_name = '$run-tiered' AND tier >= 3)
             / nullif(count(*) FILTER (WHERE run_name = '$run-tiered'), 0), 1) AS tier3_pct
FROM tierq.jobs WHERE run_name IN ('$run-tiered', '$run-baseline') AND state = 'done'
GROUP BY ROLLUP (kind) ORDER BY kind NULLS LAST;
SQL

echo
echo "== 3. the nightly rerun: the same rows again, one in ten of them edited since (response cache) =="
# Unchanged rows have the same key (kind file, models, prompt, params) as last night's answer: they
# are answered from tierq.cache at $0. Edited rows are new requests and go to the models. The edit
# here is a trailing newline: a new request for tierq, while the simulator's answer key (which trims
# whitespace) still knows the question, so an edited row costs what a new row of this workload costs.
psql -q -v ON_ERROR_STOP=1 "$conninfo" <<SQL
INSERT INTO tierq.jobs (kind, prompt, expected, run_name)
SELECT kind, CASE WHEN id % 10 = 0 THEN prompt || E'\\n' ELSE prompt END, expected, '$run-nightly'
FROM tierq.jobs WHERE run_name = '$run-tiered' ORDER BY id;
SQL
"$build/tierq" run --drain --progress --run "$run-nightly" --max-in-flight 512
echo
psql -q "$conninfo" <<SQL
\pset footer off
SELECT CASE WHEN prompt LIKE E'%\\n' THEN 'edited' ELSE 'unchanged' END AS rows, count(*) AS jobs,
       count(*) FILTER (WHERE cache_hit) AS cache_hits,
       round(sum(cost_usd), 6) AS cost_usd, round(sum(cache_saved_usd), 6) AS saved_usd
FROM tierq.jobs WHERE run_name = '$run-nightly' GROUP BY 1 ORDER BY 1 DESC;
SELECT round(100 * (SELECT sum(cost_usd) FROM tierq.jobs WHERE run_name = '$run-nightly')
             / nullif((SELECT sum(cost_usd) FROM tierq.jobs WHERE run_name = '$run-tiered'), 0), 1)
           AS "rerun cost, % of the first run",
       (SELECT count(*) FROM tierq.cache) AS cache_entries,
       (SELECT sum(raw_len) FROM tierq.cache) AS answer_bytes,
       (SELECT sum(octet_length(answer_z)) FROM tierq.cache) AS stored_bytes;
SQL

echo
echo "== 4. questions over long documents: contexts compressed against sent whole (context compression) =="
# tests/data/qa.tsv: 258 questions over 61 Debian copyright files (1,500-7,400 tokens each) with the
# document as the job's context. The shipped qa kind compresses each document once (to about 400
# tokens, by deepseek-v4-flash) for all the questions over it; the same jobs with compression off
# (a copy of jobs/ whose qa.json says so) send every document whole. A second simulator holds
# the questions' answer key: an answer is right only if its fact reached the answering model.
rm -f "$demo/simqa.port"
"$build/tierq-sim" --port 0 --port-file "$demo/simqa.port" --models tests/sim/models.json \
    --answers tests/data/qa.tsv >"$demo/simqa.log" 2>&1 &
simqa_pid=$!
i=0
while [ ! -s "$demo/simqa.port" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "demo: the question-answering simulator did not start (see $demo/simqa.log)"; exit 1; }
    sleep 0.1
done
mkdir -p "$demo/jobs-whole"
cp jobs/*.json "$demo/jobs-whole/"
sed -i 's/"compress": {"enabled": true,/"compress": {"enabled": false,/' "$demo/jobs-whole/qa.json"
psql -q -v ON_ERROR_STOP=1 "$conninfo" <<SQL
CREATE TEMP TABLE qa (kind text, prompt text, context text, expected text);
\copy qa (kind, prompt, context, expected) FROM 'tests/data/qa.tsv' WITH (FORMAT text, HEADER true)
INSERT INTO tierq.jobs (kind, prompt, context, expected, run_name) SELECT kind, prompt, context, expected, '$run-qa-compressed' FROM qa;
INSERT INTO tierq.jobs (kind, prompt, context, expected, run_name) SELECT kind, prompt, context, expected, '$run-qa-whole' FROM qa;
SQL
TIERQ_BASE_URL="http://127.0.0.1:$(cat "$demo/simqa.port")/v1" \
    "$build/tierq" run --drain --progress --run "$run-qa-compressed" --max-in-flight 512
TIERQ_BASE_URL="http://127.0.0.1:$(cat "$demo/simqa.port")/v1" TIERQ_JOBS_DIR="$demo/jobs-whole" \
    "$build/tierq" run --drain --progress --run "$run-qa-whole" --max-in-flight 512
kill "$simqa_pid" 2>/dev/null
simqa_pid=""
echo
# Context tokens sent: the requests that carried the compressed context (jobs.compress_tokens_saved /
# the tokens each saved) at its size, the others (asked again with the original) at the document's
# (estimated as bytes / 4, as tierq estimates).
psql -q "$conninfo" <<SQL
\pset footer off
WITH req AS (SELECT x AS id, count(*) AS n FROM tierq.calls, unnest(job_ids) x WHERE purpose = 'answer' GROUP BY x),
     runs AS (SELECT CASE WHEN j.run_name = '$run-qa-compressed' THEN 'compressed' ELSE 'whole' END AS documents,
                     j.*, coalesce(req.n, 0) AS requests
              FROM tierq.jobs j LEFT JOIN req ON req.id = j.id
              WHERE j.run_name IN ('$run-qa-compressed', '$run-qa-whole'))
SELECT documents, count(*) AS jobs,
       sum(coalesce(compress_tokens_saved / nullif(context_tokens_before - context_tokens_after, 0), 0) * coalesce(context_tokens_after, 0)
           + (requests - coalesce(compress_tokens_saved / nullif(context_tokens_before - context_tokens_after, 0), 0))
             * ceil(octet_length(runs.context) / 4.0))::bigint AS context_tokens_sent,
       (SELECT count(*) FROM tierq.calls k WHERE k.purpose = 'compress' AND k.run_name = '$run-qa-compressed'
        AND runs.documents = 'compressed') AS compressions,
       round(coalesce((SELECT sum(cost_usd) FROM tierq.calls k WHERE k.purpose = 'compress'
                       AND k.run_name = '$run-qa-compressed' AND runs.documents = 'compressed'), 0), 6) AS compress_usd,
       round(sum(compress_saved_usd), 6) AS saved_usd,
       round(sum(cost_usd), 6) AS cost_usd,
       round(100.0 * avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int), 1) AS accuracy
FROM runs GROUP BY 1 ORDER BY 1;
SQL

echo
echo "== 5. a nightly schedule over a changing table, then a bake-off of two models (schedules) =="
# The demo's summarize rows become a table of articles. A schedule enqueues only the articles that
# are new or edited since its last fire (only_changed, by source_key); its source is a SECURITY
# DEFINER function, so it reads the table with its author's rights. Its cron is "@every 20s" so
# that two "nights" fit in the demo; a running `tierq run` daemon fires it. Between the two fires,
# one article in ten is edited. The articles are part 1's summarize prompts, so the first fire is
# answered from the response cache at $0; the second sends only the edited articles, and pays.
psql -q -v ON_ERROR_STOP=1 "$conninfo" <<SQL
CREATE SCHEMA app;
CREATE TABLE app.articles (id int PRIMARY KEY, body text NOT NULL, expected text);
INSERT INTO app.articles SELECT row_number() OVER (ORDER BY id), prompt, expected
FROM tierq.jobs WHERE run_name = '$run-tiered' AND kind = 'summarize';
CREATE FUNCTION app.nightly_articles() RETURNS TABLE (kind text, prompt text, expected text, source_key text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
    AS \$\$ SELECT 'summarize', body, expected, id::text FROM app.articles \$\$;
SQL
"$build/tierq" schedule add nightly-summaries --cron '@every 20s' --source app.nightly_articles --only-changed \
    --run-name 'nightly-summaries-{time}'
"$build/tierq" run --quiet --max-in-flight 256 >"$demo/daemon.log" 2>&1 &
daemon_pid=$!
# wait for a fire and for its jobs to be answered
wait_fires() {
    i=0
    while :; do
        f=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.schedule_fires WHERE schedule = 'nightly-summaries'")
        left=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name LIKE 'nightly-summaries-%' AND state IN ('queued', 'running')")
        [ "$f" -ge "$1" ] && [ "$left" = 0 ] && break
        i=$((i + 1))
        [ $i -gt 240 ] && { echo "demo: the schedule did not fire (see $demo/daemon.log)"; exit 1; }
        sleep 0.5
    done
}
wait_fires 1
psql -q -v ON_ERROR_STOP=1 "$conninfo" -c "UPDATE app.articles SET body = body || E'\\n' WHERE id % 10 = 0"
echo "demo: first fire answered; edited $(psql -tA "$conninfo" -c "SELECT count(*) FROM app.articles WHERE id % 10 = 0") of $(psql -tA "$conninfo" -c "SELECT count(*) FROM app.articles") articles; waiting for the next fire"
wait_fires 2
kill -TERM "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""
"$build/tierq" schedule disable nightly-summaries >/dev/null
"$build/tierq" schedule show nightly-summaries | sed -n '1,3p;/last fires/,$p'
psql -q "$conninfo" <<SQL
\pset footer off
SELECT f.run_name, f.jobs AS enqueued, count(j.id) FILTER (WHERE j.state = 'done') AS done,
       count(j.id) FILTER (WHERE j.cache_hit) AS cache_hits, round(coalesce(sum(j.cost_usd), 0), 6) AS cost_usd
FROM tierq.schedule_fires f LEFT JOIN tierq.jobs j ON j.run_name = f.run_name
WHERE f.schedule = 'nightly-summaries' AND f.jobs > 0 GROUP BY f.run_name, f.jobs, f.due_at ORDER BY f.due_at;
SQL
echo
# The same 300 classify jobs of the first run, each model alone (no escalation, no cache), side by
# side from the ledger, with the jobs/classify.json change the numbers recommend.
"$build/tierq" bakeoff --from-run "$run-tiered" --kind classify --models qwen3-8b,deepseek-v4-flash --sample 300 2>/dev/null
