#!/bin/sh
# Calibration on the demo workload, end to end: an all-tiers labelled run, `tierq calibrate` for each
# kind, the recommended thresholds pasted into a copy of jobs/, a run with them — whose accuracy per
# kind must land within 1 point of what calibrate predicted.
set -u
root=${TIERQ_ROOT:?}
bin=${TIERQ_BIN:?}
simbin=${TIERQ_SIM_BIN:?}
base=${TIERQ_DATABASE_URL:?}
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }

tmp=$(mktemp -d)
trap 'kill $sim 2>/dev/null; rm -rf "$tmp"' EXIT
psql -q "$base" -c "DROP DATABASE IF EXISTS tq_calib WITH (FORCE)" -c "CREATE DATABASE tq_calib" >/dev/null 2>&1
export TIERQ_DATABASE_URL="$base dbname=tq_calib"
mkdir -p "$tmp/jobs"
cp "$root"/jobs/*.json "$tmp/jobs/"
"$simbin" --port 0 --port-file "$tmp/port" --models "$root/tests/sim/models.json" --answers "$root/tests/data/demo.tsv" \
    --latency-ms 1 >/dev/null 2>&1 &
sim=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
export TIERQ_BASE_URL="http://127.0.0.1:$(cat "$tmp/port")/v1"

load() {
    psql -q -v ON_ERROR_STOP=1 "$TIERQ_DATABASE_URL" <<SQL
CREATE TEMP TABLE staging (kind text, prompt text, expected text);
\copy staging (kind, prompt, expected) FROM '$root/tests/data/demo.tsv' WITH (FORMAT text, HEADER true)
INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT kind, prompt, expected, '$1' FROM staging;
SQL
}

"$bin" migrate >/dev/null
load labelled
if "$bin" run --drain --quiet --all-tiers --run labelled --max-in-flight 512 >"$tmp/run1" 2>&1; then
    ok all_tiers_run
else
    nok all_tiers_run "$(tail -3 "$tmp/run1")"
fi
n=$(psql -tA "$TIERQ_DATABASE_URL" -c "SELECT count(*) FROM tierq.calls WHERE run_name = 'labelled' AND purpose = 'answer' AND answer IS NOT NULL")
[ "$n" -gt 2446 ] && ok every_tier_answered || nok every_tier_answered "only $n tier answers"

kinds="classify simple summarize chat"
for k in $kinds; do
    if ! "$bin" --jobs "$tmp/jobs" calibrate --kind "$k" --run labelled >"$tmp/cal.$k" 2>&1; then
        nok "calibrate_$k" "$(tail -3 "$tmp/cal.$k")"
        continue
    fi
    # The snippet after "paste into" replaces the tiers block of the kind's file.
    sed -n '/^paste into/,$p' "$tmp/cal.$k" | sed '1d' > "$tmp/snippet.$k"
    if ! grep -q '"tiers": \[' "$tmp/snippet.$k"; then
        nok "calibrate_$k" "no snippet"
        continue
    fi
    awk -v snip="$tmp/snippet.$k" '
        /"tiers": \[/ { while ((getline line < snip) > 0) print line; skip = 1; next }
        skip && /^ *\],?$/ { skip = 0; if ($0 ~ /,$/) print "  ,"; next }
        !skip { print }' "$tmp/jobs/$k.json" > "$tmp/new.json"
    # keep the comma that followed the tiers array
    sed -i 's/^  \]$/  ],/' "$tmp/new.json"
    sed -i '/^  ,$/d' "$tmp/new.json"
    mv "$tmp/new.json" "$tmp/jobs/$k.json"
    grep -E '^ *recommended ' "$tmp/cal.$k" | sed -n 's/.*(\([0-9]*\)\/\([0-9]*\)).*/\1 \2/p' > "$tmp/pred.$k"
    ok "calibrate_$k"
    grep -E "^ *recommended " "$tmp/cal.$k" | sed "s/^ */# $k: /"
done
if "$bin" --jobs "$tmp/jobs" config check >"$tmp/check" 2>&1; then ok calibrated_config_valid; else nok calibrated_config_valid "$(cat "$tmp/check")"; fi

load calibrated
TIERQ_JOBS_DIR="$tmp/jobs" "$bin" --jobs "$tmp/jobs" run --drain --quiet --run calibrated --max-in-flight 512 >"$tmp/run2" 2>&1 ||
    nok calibrated_run "$(tail -3 "$tmp/run2")"
for k in $kinds; do
    [ -s "$tmp/pred.$k" ] || { nok "prediction_$k" "no prediction"; continue; }
    read -r pc pn < "$tmp/pred.$k"
    got=$(psql -tA "$TIERQ_DATABASE_URL" -c "SELECT count(*) FILTER (WHERE tierq.normalize_answer(result) = tierq.normalize_answer(expected)) || ' ' || count(*) FROM tierq.jobs WHERE run_name = 'calibrated' AND kind = '$k' AND state = 'done'")
    gc=${got% *}
    gn=${got#* }
    # within 1 point: |gc/gn - pc/pn| <= 0.01
    if awk -v a="$gc" -v b="$gn" -v c="$pc" -v d="$pn" 'BEGIN { x = a / b - c / d; if (x < 0) x = -x; exit !(b == d && x <= 0.01) }'; then
        ok "prediction_$k: predicted $pc/$pn, reached $gc/$gn"
    else
        nok "prediction_$k" "predicted $pc/$pn, reached $gc/$gn"
    fi
done
psql -tA "$TIERQ_DATABASE_URL" -c "SELECT '# calibrated run: cost ' || round(sum(cost_usd), 6) || ' usd = ' || round(100 * sum(cost_usd) / sum(baseline_cost_usd), 2) || '% of its baseline; accuracy ' || round(100.0 * avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int), 1) || '%' FROM tierq.jobs WHERE run_name = 'calibrated'"
