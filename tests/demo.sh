#!/bin/sh
# make demo: a private PostgreSQL in .demo/, the simulated provider on loopback, the Debian demo
# workload (tests/data/demo.tsv) enqueued with plain SQL, `tierq run --drain` with a live progress
# line, then the cost report. Safe to run again: each run enqueues a fresh run_name.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build}
demo="$root/.demo"
mkdir -p "$demo"
chmod 755 "$demo"

conninfo=$(sh tests/pg.sh start "$demo/pg")
export TIERQ_DATABASE_URL="$conninfo"
export TIERQ_JOBS_DIR="$root/jobs"

sim_pid=""
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
    sh tests/pg.sh stop "$demo/pg"
}
trap cleanup EXIT INT TERM

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
echo "demo: PostgreSQL in $demo/pg, simulated provider on 127.0.0.1:$port"

"$build/tierq" migrate
run="demo-$(date +%Y%m%d-%H%M%S)"
psql -q -v ON_ERROR_STOP=1 "$conninfo" <<SQL
CREATE TEMP TABLE staging (kind text, prompt text, expected text);
\copy staging (kind, prompt, expected) FROM 'tests/data/demo.tsv' WITH (FORMAT text, HEADER true)
INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT kind, prompt, expected, '$run' FROM staging;
SQL
echo "demo: enqueued $(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name = '$run'") jobs as run $run"

"$build/tierq" run --drain --progress --run "$run" --max-in-flight 512
echo
"$build/tierq" report --run "$run"
