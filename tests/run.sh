#!/bin/sh
# The whole test suite: unit tests, integration tests against a private PostgreSQL started for
# this run (and the simulator, which tests start themselves), and the unit tests again under
# ASan+UBSan. Every test binary prints "ok - name" / "not ok - name" lines; a binary that crashes
# or exits non-zero without saying why counts as one failure. Ends with "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build}
tmp=$(mktemp -d /tmp/tierq-test.XXXXXX)
chmod 755 "$tmp"
pgdir="$tmp/pg"
cleanup() {
    [ -n "${cron_pid:-}" ] && kill "$cron_pid" 2>/dev/null
    sh "$root/tests/pg.sh" stop "$pgdir" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if ! conninfo=$(sh "$root/tests/pg.sh" start "$pgdir"); then
    echo "run.sh: could not start PostgreSQL"
    echo "0 passed, 1 failed"
    exit 1
fi
export TIERQ_DATABASE_URL="$conninfo"
export TIERQ_BIN="$root/$build/tierq"
export TIERQ_SIM_BIN="$root/$build/tierq-sim"
export TIERQ_JOBS_DIR="$root/jobs"
export TIERQ_TEST_TMP="$tmp"
export TIERQ_ROOT="$root"
export TIERQ_BUILD_DIR="$root/$build"
# results spilled at shutdown stay inside this run (never in the home directory of whoever runs it)
export TIERQ_SPILL_DIR="$tmp/spill"

passed=0
failed=0
failures=""

run_one() {
    name=$1
    shift
    log="$tmp/out.$$.txt"
    "$@" >"$log" 2>&1
    tally "$name" "$log" $?
}

# tally NAME LOG STATUS: count a finished test's "ok" / "not ok" lines
tally() {
    name=$1
    log=$2
    status=$3
    p=$(grep -c '^ok - ' "$log")
    f=$(grep -c '^not ok - ' "$log")
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "not ok - $name exited with status $status"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ] || [ -n "${VERBOSE:-}" ]; then
        sed 's/^/    /' "$log" | tail -n 60
        failures="$failures $name"
    fi
    echo "$name: $p passed, $f failed"
}

# pgcron.sh spends most of its time waiting for pg_cron's next whole minute, against a PostgreSQL of
# its own: it runs beside the rest of the suite (about 30-60 s saved) and is counted at the end
cron_log="$tmp/pgcron.out"
cron_pid=""
if [ -f tests/integration/pgcron.sh ]; then
    env BUILD="$build" sh tests/integration/pgcron.sh >"$cron_log" 2>&1 &
    cron_pid=$!
fi

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    run_one "$(basename "$t")" "$t"
done
for t in tests/integration/*.sh tests/conformance/test_*.sh tests/fuzz/test_*.sh; do
    [ -f "$t" ] || continue
    [ "$t" = tests/integration/pgcron.sh ] && continue # running in the background since the start
    run_one "$(basename "$t")" env BUILD="$build" sh "$t"
done
if [ -d build-asan/tests ]; then
    for src in tests/unit/test_*.c; do
        t="build-asan/tests/$(basename "$src" .c)"
        [ -x "$t" ] || continue
        run_one "asan/$(basename "$t")" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$t"
    done
fi
# The tierq binary itself under ASan+UBSan, driven by the integration tests of the paths where jobs
# change hands between threads (cache hits, single flight, compression, tiers, batches): a report from
# any tierq process it starts (logged, not printed: the tests read their output) is one failure.
if [ -x build-asan/tierq ]; then
    for name in test_cache test_compress test_tiers test_batch; do
        [ -x "$build/tests/$name" ] || continue
        logs="$tmp/asan-$name"
        mkdir -p "$logs"
        run_one "asan-tierq/$name" env TIERQ_BIN="$root/build-asan/tierq" \
            ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan" UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan" \
            "$build/tests/$name"
        if ls "$logs"/* >/dev/null 2>&1; then
            echo "not ok - asan-tierq/$name: sanitizer reports"
            head -n 40 "$logs"/* | sed 's/^/    /'
            failed=$((failed + 1))
            failures="$failures asan-tierq/$name"
        fi
    done
fi
if [ -n "$cron_pid" ]; then
    wait "$cron_pid"
    tally pgcron.sh "$cron_log" $?
fi
[ -n "$failures" ] && echo "failing:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
