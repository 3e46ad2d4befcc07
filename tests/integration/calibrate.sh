#!/bin/sh
# Calibration on the demo workload, end to end and held out: the demo's jobs are split in two halves.
# Half A: a normal run (so the ledger knows what batched calls cost), then an all-tiers labelled run;
# `tierq calibrate --run labelled` chooses every kind's tiers and bars at once, shows them as a diff
# (patch -p0) and writes them (--write). Half B — jobs calibrate never saw — runs with the written
# files; its accuracy must land inside each kind's held-out 95% interval and, over all kinds, within
# 1 point of the prediction; its cost within 10% of the predicted cost; no kind's plan dearer than
# its baseline alone. Half B also runs on the baseline model alone, for the ratios.
#
# CAL_MODELS (default tests/sim/models.json) and CAL_TARGET (default 0.98) vary the simulator catalog
# and the target: tests/bench.sh runs this with the harsher catalogs. CAL_COPIES=N (default 1) makes
# the workload N times the demo's: each row N times with a last line "Copy: c", a distinct item to the
# simulator (every draw comes from a hash of the prompt), so the halves are N x 1,223 jobs and the
# sampling error of what is measured on them shrinks by sqrt(N).
set -u
root=${TIERQ_ROOT:?}
bin=${TIERQ_BIN:?}
simbin=${TIERQ_SIM_BIN:?}
base=${TIERQ_DATABASE_URL:?}
models=${CAL_MODELS:-$root/tests/sim/models.json}
target=${CAL_TARGET:-0.98}
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }

copies=${CAL_COPIES:-1}
tmp=$(mktemp -d)
trap 'kill $sim 2>/dev/null; rm -rf "$tmp"' EXIT
if [ "$copies" -gt 1 ]; then
    awk -F '\t' -v n="$copies" 'NR == 1 { print; next } { for (c = 1; c <= n; c++) printf "%s\t%s\\nCopy: %d\t%s\n", $1, $2, c, $3 }' \
        "$root/tests/data/demo.tsv" > "$tmp/demo.tsv"
else
    cp "$root/tests/data/demo.tsv" "$tmp/demo.tsv"
fi
psql -q "$base" -c "DROP DATABASE IF EXISTS tq_calib WITH (FORCE)" -c "CREATE DATABASE tq_calib" >/dev/null 2>&1
export TIERQ_DATABASE_URL="$base dbname=tq_calib"
mkdir -p "$tmp/jobs"
cp "$root"/jobs/*.json "$tmp/jobs/"
"$simbin" --port 0 --port-file "$tmp/port" --models "$models" --answers "$tmp/demo.tsv" \
    --latency-ms 1 --seed "${CAL_SEED:-1}" >/dev/null 2>&1 &
sim=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
export TIERQ_BASE_URL="http://127.0.0.1:$(cat "$tmp/port")/v1"

# the halves: alternate rows of the demo file (each kind split evenly)
awk 'NR == 1 { print > "'"$tmp"'/a.tsv"; print > "'"$tmp"'/b.tsv"; next }
     { print > ((NR % 2) ? "'"$tmp"'/a.tsv" : "'"$tmp"'/b.tsv") }' "$tmp/demo.tsv"

load() { # file run
    psql -q -v ON_ERROR_STOP=1 "$TIERQ_DATABASE_URL" <<SQL
CREATE TEMP TABLE staging (kind text, prompt text, expected text);
\copy staging (kind, prompt, expected) FROM '$1' WITH (FORMAT text, HEADER true)
INSERT INTO tierq.jobs (kind, prompt, expected, run_name) SELECT kind, prompt, expected, '$2' FROM staging;
SQL
}
sql() { psql -tA "$TIERQ_DATABASE_URL" -c "$1"; }
run() { # run-name [args]: from $tmp, so kind files are named jobs/<kind>.json
    r=$1
    shift
    (cd "$tmp" && TIERQ_JOBS_DIR=jobs "$bin" --jobs jobs run --drain --quiet --run "$r" --max-in-flight 512 "$@") \
        >"$tmp/run.$r" 2>&1
}

"$bin" --jobs "$tmp/jobs" migrate >/dev/null
load "$tmp/a.tsv" shipped
run shipped || nok shipped_run "$(tail -3 "$tmp/run.shipped")"
load "$tmp/a.tsv" labelled
if run labelled --all-tiers; then ok all_tiers_run; else nok all_tiers_run "$(tail -3 "$tmp/run.labelled")"; fi
na=$(($(wc -l < "$tmp/a.tsv") - 1))
n=$(sql "SELECT count(*) FROM tierq.calls WHERE run_name = 'labelled' AND purpose = 'answer' AND answer IS NOT NULL")
[ "$n" -gt "$na" ] && ok every_tier_answered || nok every_tier_answered "only $n tier answers for $na jobs"

# every kind at once: the diff first (what --write would do), then the write
cp -r "$tmp/jobs" "$tmp/jobs.orig"
(cd "$tmp" && "$bin" --jobs jobs calibrate --run labelled --target "$target" --diff) >"$tmp/diff" 2>&1
if grep -q '^+++ jobs/classify.json' "$tmp/diff"; then ok calibrate_diff; else nok calibrate_diff "$(head -5 "$tmp/diff")"; fi
cp -r "$tmp/jobs" "$tmp/jobs.w"
if (cd "$tmp" && "$bin" --jobs jobs calibrate --run labelled --target "$target" --write jobs.w) >"$tmp/cal" 2>&1; then
    ok calibrate_all_kinds
else
    nok calibrate_all_kinds "$(tail -3 "$tmp/cal")"
fi
grep -E '^(  [a-z]+ +[0-9]+  |summary|wrote)' "$tmp/cal" | sed 's/^/# /'
# the diff, applied with patch, gives the files --write wrote
if (cd "$tmp" && patch -s -p0 < diff) && diff -r "$tmp/jobs" "$tmp/jobs.w" >/dev/null; then
    ok diff_applies_as_written
else
    nok diff_applies_as_written "$(diff -r "$tmp/jobs" "$tmp/jobs.w" | head -5)"
fi
# nothing but the tiers changed: the rest of each file byte for byte
changed=$(for f in "$tmp"/jobs.orig/*.json; do
    k=$(basename "$f")
    diff "$f" "$tmp/jobs.w/$k" | grep -E '^[<>]' | grep -vE '"(model|accept)"|"tiers"|^[<>] *\],?$' || true
done)
[ -z "$changed" ] && ok only_tiers_changed || nok only_tiers_changed "$changed"
if "$bin" --jobs "$tmp/jobs.w" config check >"$tmp/check" 2>&1; then ok calibrated_config_valid; else nok calibrated_config_valid "$(cat "$tmp/check")"; fi
# writing again changes nothing
(cd "$tmp" && "$bin" --jobs jobs.w calibrate --run labelled --target "$target" --diff) >"$tmp/diff2" 2>&1
[ ! -s "$tmp/diff2" ] && ok calibrate_idempotent || nok calibrate_idempotent "$(head -5 "$tmp/diff2")"

# the predictions, per kind: in-sample right/jobs of the recommended plan, held-out accuracy and its
# interval, held-out cost per job; and over all kinds (the summary's "all" line)
awk '/^tierq calibrate: kind / { k = $4; sub(",", "", k) }
     /^  recommended / { for (i = 1; i <= NF; i++) if ($i ~ /^\([0-9]+\/[0-9]+\)$/) { r = $i; gsub(/[()]/, "", r); sub("/", " ", r) } }
     /^  accuracy .* usd\/job/ { a = $2; sub("%", "", a); lo = $4; sub(/-.*/, "", lo); hi = $4; sub(/.*-/, "", hi);
                                 sub("%\\)", "", hi); for (i = 1; i <= NF; i++) if ($(i + 1) == "usd/job") c = $i;
                                 print k, a, lo, hi, c, r }' "$tmp/cal" > "$tmp/pred"
# "  all  N  A% / L%  C%  H% (lo-hi) = R x last; $c/job (clo-chi) = P%"
sed -n 's/^  all  *[0-9]* .*%  *\([0-9.]*\)% (\([0-9.]*\)-\([0-9.]*\)) = .* \$\([0-9.]*\)\/job (\([0-9.]*\)-\([0-9.]*\)).*/\1 \2 \3 \4 \5 \6/p' \
    "$tmp/cal" > "$tmp/pred.all"
[ -s "$tmp/pred" ] && [ -s "$tmp/pred.all" ] && ok held_out_predictions ||
    nok held_out_predictions "$(grep -A2 held-out "$tmp/cal" | head -5; grep '^  all' "$tmp/cal")"
rm -rf "$tmp/jobs" && mv "$tmp/jobs.w" "$tmp/jobs"

# the same jobs again with the written files: each kind lands exactly on calibrate's in-sample figure
# (the simulator is deterministic)
load "$tmp/a.tsv" again
run again || nok again_run "$(tail -3 "$tmp/run.again")"
while read -r k a lo hi c rc rn; do
    got=$(sql "SELECT count(*) FILTER (WHERE tierq.normalize_answer(result) = tierq.normalize_answer(expected)) || ' ' || count(*) FROM tierq.jobs WHERE run_name = 'again' AND kind = '$k' AND state = 'done'")
    [ "$got" = "$rc $rn" ] && ok "reproduced_$k: $got" || nok "reproduced_$k" "calibrate said $rc $rn right/jobs, the run got $got"
done < "$tmp/pred"
read -r pacc plo phi pcost pclo pchi < "$tmp/pred.all"
again=$(sql "SELECT round(100 * avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int), 2) FROM tierq.jobs WHERE run_name = 'again'")
echo "# the same jobs again: $again% (held-out prediction for new jobs: $pacc%)"

# half B: jobs calibrate never saw, with the written files, and on the baseline model alone
load "$tmp/b.tsv" fresh
run fresh || nok fresh_run "$(tail -3 "$tmp/run.fresh")"
load "$tmp/b.tsv" fresh_base
run fresh_base --model-map baseline || nok fresh_base_run "$(tail -3 "$tmp/run.fresh_base")"
# and with the shipped files, for comparison: what not calibrating gives on this catalog
mv "$tmp/jobs" "$tmp/jobs.cal" && cp -r "$tmp/jobs.orig" "$tmp/jobs"
load "$tmp/b.tsv" fresh_shipped
run fresh_shipped || nok fresh_shipped_run "$(tail -3 "$tmp/run.fresh_shipped")"
rm -rf "$tmp/jobs" && mv "$tmp/jobs.cal" "$tmp/jobs"
while read -r k a lo hi c rc rn; do
    got=$(sql "SELECT count(*) FILTER (WHERE tierq.normalize_answer(result) = tierq.normalize_answer(expected)) || ' ' || count(*) || ' ' || coalesce(sum(cost_usd), 0) FROM tierq.jobs WHERE run_name = 'fresh' AND kind = '$k' AND state = 'done'")
    set -- $got
    gc=$1 gn=$2 gcost=$3
    base=$(sql "SELECT coalesce(sum(cost_usd), 0) FROM tierq.jobs WHERE run_name = 'fresh_base' AND kind = '$k'")
    line="predicted $a% ($lo-$hi), reached $(awk -v a="$gc" -v b="$gn" 'BEGIN { printf "%.1f", 100 * a / b }')% of $gn"
    # shown, not asserted: four kinds against their 95% intervals miss one about 1 time in 5
    if awk -v a="$gc" -v b="$gn" -v lo="$lo" -v hi="$hi" 'BEGIN { x = 100 * a / b; exit !(b > 0 && x >= lo - 0.05 && x <= hi + 0.05) }'; then
        echo "# held-out $k: $line"
    else
        echo "# held-out $k: $line (outside its 95% interval)"
    fi
    if awk -v g="$gcost" -v b="$base" 'BEGIN { exit !(g <= b) }'; then ok "not_dearer_than_baseline_$k"; else
        nok "not_dearer_than_baseline_$k" "cost $gcost, baseline alone $base"; fi
done < "$tmp/pred"
# over all kinds: inside the predicted intervals for a new run as large
got=$(sql "SELECT avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int) || ' ' || sum(cost_usd) / count(*) || ' ' || count(*) FROM tierq.jobs WHERE run_name = 'fresh'")
set -- $got
acc=$1 cost=$2 nb=$3
bgot=$(sql "SELECT avg((tierq.normalize_answer(result) = tierq.normalize_answer(expected))::int) || ' ' || sum(cost_usd) / count(*) FROM tierq.jobs WHERE run_name = 'fresh_base'")
set -- $bgot
bacc=$1 bcost=$2
line=$(awk -v a="$acc" -v p="$pacc" -v c="$cost" -v pc="$pcost" -v b="$bcost" -v ba="$bacc" -v lo="$plo" -v hi="$phi" 'BEGIN {
    printf "held-out half: accuracy %.1f%% (predicted %.1f%%, %.1f-%.1f, off by %+.1f pt) = %.1f%% of baseline %.1f%%; cost $%.9f/job (predicted $%.9f, off by %+.1f%%) = %.1f%% of baseline",
        100 * a, p, lo, hi, 100 * a - p, 100 * a / ba, 100 * ba, c, pc, 100 * (c - pc) / pc, 100 * c / b }')
# the last tier's accuracy on half A, which the target was a share of: next to the baseline's on half B,
# it tells a plan that missed its prediction from a baseline that drew differently on the two halves
lasta=$(sql "SELECT round(100 * avg((tierq.normalize_answer(c.answer) = tierq.normalize_answer(j.expected))::int), 1)
    FROM tierq.calls c JOIN tierq.jobs j ON j.id = c.job_ids[1]
    WHERE c.run_name = 'labelled' AND c.purpose = 'answer' AND c.status = 'ok'
      AND c.tier = (SELECT max(x.tier) FROM tierq.calls x WHERE x.run_name = 'labelled' AND x.kind = c.kind AND x.purpose = 'answer')")
echo "# $line (catalog $(basename "$models"), target $target, seed ${CAL_SEED:-1}, $nb jobs; the last tier on half A: $lasta%)"
sql "SELECT '# the shipped files on the same half: accuracy ' || round(100 * avg((tierq.normalize_answer(s.result) = tierq.normalize_answer(s.expected))::int), 1) || '% = ' || round(100 * avg((tierq.normalize_answer(s.result) = tierq.normalize_answer(s.expected))::int) / $bacc, 1) || '% of baseline; cost ' || round(100 * sum(s.cost_usd) / (SELECT sum(cost_usd) FROM tierq.jobs WHERE run_name = 'fresh_base'), 1) || '% of baseline' FROM tierq.jobs s WHERE s.run_name = 'fresh_shipped'"
# The tool prints 95% intervals; one fixed run of this suite is checked at 3 sd (99.7%), so it fails
# for a prediction that is wrong, not for a half that drew 1 time in 20 (the bench runs several seeds).
if awk -v a="$acc" -v p="$pacc" -v lo="$plo" -v hi="$phi" 'BEGIN { sd = (hi - lo) / 3.92; x = 100 * a - p; if (x < 0) x = -x; exit !(x <= 3 * sd + 0.05) }'; then
    ok "held_out_accuracy_within_3sd"
else
    nok "held_out_accuracy_within_3sd" "$line"
fi
if awk -v c="$cost" -v p="$pcost" -v lo="$pclo" -v hi="$pchi" 'BEGIN { sd = (hi - lo) / 3.92; x = c - p; if (x < 0) x = -x; exit !(x <= 3 * sd + 5e-10) }'; then
    ok "held_out_cost_within_3sd"
else
    nok "held_out_cost_within_3sd" "$line ($pclo-$pchi)"
fi
