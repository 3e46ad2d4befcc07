#!/bin/sh
# make bench: throughput and concurrency figures (printed, never asserted). Everything runs on this
# machine over loopback: a private PostgreSQL in a fresh directory under /tmp (reachable by the
# server's user wherever the clone is; removed at exit), with pg_stat_statements to count every
# statement tierq sends, the simulator, and the real tierq binary.
#   (a) 20,000 jobs, zero simulated latency: jobs/s end to end, CPU seconds of tierq, PostgreSQL and
#       the simulator, database statements per job, peak RSS of tierq.
#   (b) 20,000 jobs, 1 s simulated latency, 5,000 allowed in flight: peak in flight, jobs/s against
#       the in-flight / latency bound, peak RSS.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build}
bench=$(mktemp -d /tmp/tierq-bench.XXXXXX)
N=${BENCH_JOBS:-20000}
cases=${BENCH_CASES:-a b c d e} # e.g. BENCH_CASES=e make bench: only (e)
wanted() { case " $cases " in *" $1 "*) return 0 ;; esac; return 1; }
chmod 755 "$bench"
echo "bench: working directory $bench (removed at exit)"
export PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top"
sim_pid=""
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
    sh tests/pg.sh stop "$bench/pg"
    rm -rf "$bench"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
conninfo=$(sh tests/pg.sh start "$bench/pg")
export TIERQ_DATABASE_URL="$conninfo"
# The throughput figures measure the pipeline at one call per job: a single-tier kind, so tiered
# routing (measured by the demo) does not add second calls to the count.
mkdir -p "$bench/jobs"
cp "$root/jobs/models.json" "$bench/jobs/"
cat > "$bench/jobs/bench.json" <<'JSON'
{"description": "benchmark kind: one tier, no checks", "system_prompt": "Answer briefly.",
 "tiers": [{"model": "qwen3-8b"}], "max_tokens": 16}
JSON
export TIERQ_JOBS_DIR="$bench/jobs"
export TIERQ_SPILL_DIR="$bench/spill"

# CPU seconds (user+system) of a process and its reaped children, from /proc/PID/stat.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"
}
# PostgreSQL: the postmaster, its live children, and (through cutime/cstime) exited backends.
pg_cpu() {
    pm=$(head -n 1 "$bench/pg/data/postmaster.pid")
    total=$(cpu_of "$pm")
    for c in $(cat /proc/"$pm"/task/*/children 2>/dev/null); do
        [ -r "/proc/$c/stat" ] && total=$(echo "$total $(awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$c/stat")" | awk '{print $1 + $2}')
    done
    echo "$total"
}

start_sim() {
    rm -f "$bench/sim.port"
    "$build/tierq-sim" --port 0 --port-file "$bench/sim.port" --models tests/sim/models.json "$@" >"$bench/sim.log" 2>&1 &
    sim_pid=$!
    while [ ! -s "$bench/sim.port" ]; do sleep 0.05; done
    export TIERQ_BASE_URL="http://127.0.0.1:$(cat "$bench/sim.port")/v1"
}
stop_sim() { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=""; }

enqueue() {
    psql -q "$conninfo" -c "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT 'bench', 'benchmark question ' || g, '$1' FROM generate_series(1, $N) g"
}

"$build/tierq" migrate >/dev/null
psql -q "$conninfo" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo

# ---- (a) zero latency ----
if wanted a; then
start_sim --latency-ms 0
enqueue bench-a
psql -q "$conninfo" -c "SELECT pg_stat_statements_reset()" >/dev/null
pg0=$(pg_cpu); sim0=$(cpu_of "$sim_pid")
/usr/bin/time -f "%e %U %S %M" -o "$bench/time.a" "$build/tierq" run --drain --quiet --run bench-a --max-in-flight 1024 \
    --claim-batch 2000 >"$bench/run.a" 2>"$bench/err.a"
pg1=$(pg_cpu); sim1=$(cpu_of "$sim_pid")
stmts=$(psql -tA "$conninfo" -c "SELECT sum(calls) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'")
done_a=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name = 'bench-a' AND state = 'done'")
stop_sim
read -r wall usr sys rss < "$bench/time.a"
echo "(a) $N jobs, zero simulated latency, 1024 in flight"
cat "$bench/run.a" | sed 's/^/    /'
awk -v n="$done_a" -v wall="$wall" -v usr="$usr" -v sys="$sys" -v rss="$rss" -v pg0="$pg0" -v pg1="$pg1" \
    -v s0="$sim0" -v s1="$sim1" -v st="$stmts" 'BEGIN {
    printf "    jobs done:            %d\n", n
    printf "    throughput:           %.0f jobs/s end to end (%.2f s wall, process start to exit)\n", n / wall, wall
    printf "    cpu seconds:          tierq %.2f, postgresql %.2f, simulator %.2f\n", usr + sys, pg1 - pg0, s1 - s0
    printf "    postgres cpu per job: %.1f us\n", (pg1 - pg0) * 1e6 / n
    printf "    statements per job:   %.4f (%d statements, all of them, from pg_stat_statements)\n", st / n, st
    printf "    tierq peak rss:       %.1f MB\n", rss / 1024
    printf "    targets:              >= 10000 jobs/s, <= 0.05 statements per job\n"
}'
echo
fi

# ---- (b) 1 s latency, 5,000 in flight ----
if wanted b; then
start_sim --latency-ms 1000
enqueue bench-b
/usr/bin/time -f "%e %U %S %M" -o "$bench/time.b" "$build/tierq" run --drain --quiet --run bench-b --max-in-flight 5000 \
    --claim-batch 5000 >"$bench/run.b" 2>"$bench/err.b"
peak_sim=$(curl -s "${TIERQ_BASE_URL%/v1}/sim/stats" | sed -n 's/.*"in_flight":{"current":[0-9]*,"peak":\([0-9]*\)}.*/\1/p')
done_b=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name = 'bench-b' AND state = 'done'")
stop_sim
read -r wall usr sys rss < "$bench/time.b"
peak=$(sed -n 's/.*peak \([0-9]*\) in flight.*/\1/p' "$bench/run.b")
echo "(b) $N jobs, 1 s simulated latency, 5000 allowed in flight"
cat "$bench/run.b" | sed 's/^/    /'
awk -v n="$done_b" -v wall="$wall" -v rss="$rss" -v peak="$peak" -v speak="$peak_sim" 'BEGIN {
    bound = 5000 / 1.0
    printf "    jobs done:            %d\n", n
    printf "    peak in flight:       %d (tierq), %s (simulator)\n", peak, speak
    printf "    throughput:           %.0f jobs/s = %.1f%% of the bound in-flight/latency = %.0f jobs/s\n", n / wall, 100 * n / wall / bound, bound
    printf "    (the bound also needs N/bound = %.1f s; the run took %.2f s wall including start and drain)\n", n / bound, wall
    printf "    tierq peak rss:       %.1f MB\n", rss / 1024
    printf "    targets:              >= 90%% of the bound, rss <= 64 MB\n"
}'
echo
fi

# ---- (c) the same at 1,000 in flight: where the in-flight/latency bound holds ----
if wanted c; then
start_sim --latency-ms 1000
N=10000
enqueue bench-c
/usr/bin/time -f "%e %U %S %M" -o "$bench/time.c" "$build/tierq" run --drain --quiet --run bench-c --max-in-flight 1000 \
    --claim-batch 2000 >"$bench/run.c" 2>"$bench/err.c"
stop_sim
read -r wall usr sys rss < "$bench/time.c"
echo "(c) $N jobs, 1 s simulated latency, 1000 allowed in flight"
sed 's/^/    /' "$bench/run.c"
awk -v n="$N" -v wall="$wall" -v rss="$rss" 'BEGIN {
    printf "    throughput:           %.0f jobs/s = %.1f%% of the bound 1000 jobs/s; peak rss %.1f MB\n", n / wall, 100 * n / wall / 1000, rss / 1024
}'
echo
fi

# ---- (d) batching: a kind with a ~400-token system prompt and short items, batch size 8 ----
if wanted d; then
# Same items, same single-tier model: once alone (kind bsolo), once batched (kind bbat), then batched
# again with 20% of the batches garbled by the simulator.
sys="You label short items. Reply with one of: {labels}."
i=0
while [ $i -lt 28 ]; do
    sys="$sys Read the item carefully, think about which label fits best, and answer with the label only."
    i=$((i + 1))
done
for k in bsolo bbat; do
    batch=""
    [ $k = bbat ] && batch=', "batch": {"enabled": true, "max_items": 8, "max_input_tokens": 8000}'
    cat > "$bench/jobs/$k.json" <<JSON
{"system_prompt": "$sys", "tiers": [{"model": "qwen3-8b"}], "max_tokens": 8,
 "checks": {"labels": ["alpha", "beta", "gamma"], "logprobs": true}$batch}
JSON
done
N=2000
{
    printf 'kind\tprompt\texpected\n'
    g=1
    while [ $g -le $N ]; do
        case $((g % 3)) in 0) l=alpha ;; 1) l=beta ;; *) l=gamma ;; esac
        printf 'bbat\tbenchmark item %d\t%s\n' "$g" "$l"
        g=$((g + 1))
    done
} > "$bench/answers.tsv"
"$build/tierq" migrate >/dev/null
batch_run() { # kind run [sim args...]
    k=$1
    run=$2
    shift 2
    start_sim --latency-ms 1 --answers "$bench/answers.tsv" "$@"
    psql -q "$conninfo" -c "INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT '$k', 'benchmark item ' || g,
        (ARRAY['alpha', 'beta', 'gamma'])[1 + g % 3], '$run' FROM generate_series(1, $N) g"
    "$build/tierq" run --drain --quiet --run "$run" --max-in-flight 256 >"$bench/run.$run" 2>&1
    stop_sim
}
batch_run bsolo d-solo
batch_run bbat d-batch
batch_run bbat d-garbled --fault-rate batch_garble=0.2
echo "(d) batching: $N short items, a ~400-token system prompt, batch size 8, one model (qwen3-8b)"
psql -q "$conninfo" <<SQL
\pset footer off
SELECT run_name AS run,
       count(*) FILTER (WHERE state = 'done') AS done,
       round(avg(tokens_in), 1) AS input_tokens_per_job,
       round(1e6 * avg(cost_usd), 4) AS micro_usd_per_job,
       round(100.0 * avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int), 1) AS accuracy_pct
FROM tierq.jobs WHERE run_name IN ('d-solo', 'd-batch', 'd-garbled') GROUP BY run_name ORDER BY run_name DESC;
SELECT r.run_name AS run,
       count(*) FILTER (WHERE r.state <> 'done') AS lost,
       count(*) FILTER (WHERE r.state = 'done' AND r.result IS DISTINCT FROM s.result) AS different_from_alone
FROM tierq.jobs r JOIN tierq.jobs s ON s.run_name = 'd-solo' AND s.prompt = r.prompt
WHERE r.run_name IN ('d-batch', 'd-garbled') GROUP BY r.run_name ORDER BY 1;
SELECT run_name AS run, count(*) AS calls, round(avg(cardinality(job_ids)), 2) AS mean_items,
       count(*) FILTER (WHERE reason = 'batch_unparsable') AS unparsable, sum(tokens_cached_in) AS cached_tokens
FROM tierq.calls WHERE run_name IN ('d-batch', 'd-garbled') GROUP BY run_name ORDER BY 1;
SQL
echo "    targets: >= 40% fewer input tokens per job, lower cost per job, no accuracy loss; garbled: 0 lost, 0 mismatched"
fi

# ---- (e) large inputs: memory held is bounded by bytes as well as by count ----
if wanted e; then
# 100 jobs with a 4 MB context each, 200 ms simulated latency. The cheap model here states no context
# size, so every job is sent. Once with the defaults (claims stop at 64 MB of input held), once with
# the byte bound lifted (--max-held-mb 65536): the count bound alone then claims all 100 at once.
mkdir -p "$bench/jobs-e"
sed 's/"context_tokens": 32768, //' "$root/jobs/models.json" > "$bench/jobs-e/models.json"
cat > "$bench/jobs-e/bbig.json" <<'JSON'
{"description": "benchmark kind: long contexts", "tiers": [{"model": "qwen3-8b"}], "max_tokens": 16}
JSON
TIERQ_JOBS_DIR="$bench/jobs-e" "$build/tierq" migrate >/dev/null
start_sim --latency-ms 200
for mode in default unbounded; do
    psql -q "$conninfo" -c "INSERT INTO tierq.jobs (kind, prompt, context, run_name) SELECT 'bbig',
        'Summarise the context in one word.', repeat('word ', 800000), 'e-$mode' FROM generate_series(1, 100) g"
    extra=""
    [ $mode = unbounded ] && extra="--max-held-mb 65536"
    # shellcheck disable=SC2086
    TIERQ_JOBS_DIR="$bench/jobs-e" /usr/bin/time -f "%e %U %S %M" -o "$bench/time.e-$mode" "$build/tierq" run --drain \
        --quiet --run "e-$mode" $extra >"$bench/run.e-$mode" 2>"$bench/err.e-$mode"
done
stop_sim
read -r wall_d usr sys rss_d < "$bench/time.e-default"
read -r wall_u usr sys rss_u < "$bench/time.e-unbounded"
done_d=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name = 'e-default' AND state = 'done'")
done_u=$(psql -tA "$conninfo" -c "SELECT count(*) FROM tierq.jobs WHERE run_name = 'e-unbounded' AND state = 'done'")
echo "(e) 100 jobs with a 4 MB context each (400 MB of input), 200 ms simulated latency"
awk -v dd="$done_d" -v du="$done_u" -v wd="$wall_d" -v wu="$wall_u" -v rd="$rss_d" -v ru="$rss_u" 'BEGIN {
    printf "    defaults (64 MB held):   %d done in %.2f s, tierq peak rss %.1f MB\n", dd, wd, rd / 1024
    printf "    byte bound lifted:       %d done in %.2f s, tierq peak rss %.1f MB\n", du, wu, ru / 1024
    printf "    peak rss ratio:          %.2f (defaults / lifted); wall ratio %.2f\n", rd / ru, wd / wu
    printf "    targets:                 all done both ways; defaults rss well under lifted (<= 0.5)\n"
}'
echo
fi
