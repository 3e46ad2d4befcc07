#!/bin/sh
# Replays every committed fuzz input (tests/fuzz/corpus/<name>/ and tests/fuzz/crashes/<name>/)
# through its harness, built without a fuzzing engine ($BUILD/tests/fuzz_replay_<name>, from make
# or make fuzz-replay), and again under ASan+UBSan when make asan built build-asan/tests/ too.
# Prints "ok - replay <name> (N inputs)" or "not ok - ..." per harness and build.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${BUILD:-build}
names="response batch json check template config headers"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tierq-fuzz-replay.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
failed=0

# The replay binaries come with make all (and make asan, which builds build-asan/ with the sanitizer
# flags: a plain make there would mix in objects without them); make again so a binary is never
# older than the code it replays (a no-op inside make test, which built everything just before).
if [ "$build" = build-asan ]; then
    remake="make -s asan"
else
    remake="make -s BUILD=$build fuzz-replay"
fi
if ! $remake >"$tmp/make.log" 2>&1; then
    sed 's/^/#   /' "$tmp/make.log" | tail -n 20
fi
asan=""
if [ -d build-asan/tests ] && [ "$build" != build-asan ]; then
    if make -s asan >"$tmp/make-asan.log" 2>&1; then
        asan=build-asan
    else
        echo "not ok - replay asan: make asan failed"
        failed=1
        sed 's/^/#   /' "$tmp/make-asan.log" | tail -n 20
    fi
fi

# replay LABEL BINARY [VAR=value...]: one harness over its corpus and its crash regressions.
replay() {
    label=$1
    bin=$2
    shift 2
    n=$(basename "$bin" | sed 's/^fuzz_replay_//')
    if [ ! -x "$bin" ]; then
        echo "not ok - replay $label: $bin was not built"
        failed=1
        return
    fi
    log="$tmp/$n.log"
    env TMPDIR="$tmp" "$@" "$bin" "tests/fuzz/corpus/$n" "tests/fuzz/crashes/$n" >"$log" 2>&1
    status=$?
    if [ "$status" -eq 0 ]; then
        count=$(sed -n 's/^replayed \([0-9]*\) inputs$/\1/p' "$log")
        if [ "${count:-0}" -gt 0 ]; then
            echo "ok - replay $label ($count inputs)"
            return
        fi
        echo "not ok - replay $label: no inputs in tests/fuzz/corpus/$n"
    else
        echo "not ok - replay $label: exited with status $status (the last input listed is the one that failed)"
        tail -n 30 "$log" | sed 's/^/#   /'
    fi
    failed=1
}

for n in $names; do
    replay "$n" "$build/tests/fuzz_replay_$n"
done
# The sanitizer build (make asan): leaks, overflows and undefined behaviour on the same inputs.
if [ -n "$asan" ]; then
    for n in $names; do
        replay "asan/$n" "build-asan/tests/fuzz_replay_$n" ASAN_OPTIONS=detect_leaks=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    done
fi
exit $failed
