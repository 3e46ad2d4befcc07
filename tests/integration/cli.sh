#!/bin/sh
# The tierq command line as a user meets it: help, version, exit codes, config check errors.
set -u
bin=${TIERQ_BIN:?}
root=${TIERQ_ROOT:?}
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }

out=$("$bin" --help); st=$?
if [ $st = 0 ] && echo "$out" | grep -q "exit status" && echo "$out" | grep -q "config check"; then ok help; else nok help "$out"; fi
out=$("$bin" --version); st=$?
if [ $st = 0 ] && [ "$out" = "tierq $(cat "$root/VERSION")" ]; then ok version; else nok version "$out"; fi
"$bin" frobnicate >/dev/null 2>&1; st=$?
if [ $st = 2 ]; then ok unknown_command_exit_2; else nok unknown_command_exit_2 "status $st"; fi

out=$("$bin" --jobs "$root/jobs" config check 2>/dev/null); st=$?
if [ $st = 0 ] && echo "$out" | grep -q "8 kinds"; then ok config_check_ok; else nok config_check_ok "$out"; fi
# every setting of the shipped files is in effect (rpm and tpm since the rate limiter): no warning
out=$("$bin" --jobs "$root/jobs" config check 2>&1 >/dev/null)
if ! echo "$out" | grep -q "not yet in effect"; then
    ok config_check_no_setting_left_unused
else
    nok config_check_no_setting_left_unused "$out"
fi

d=$(mktemp -d)
cp "$root"/jobs/*.json "$d"/
sed 's/"model": "deepseek-v4-flash"/"model": "foo"/' "$root/jobs/summarize.json" > "$d/summarize.json"
out=$("$bin" --jobs "$d" config check 2>&1); st=$?
want="$d/summarize.json: tiers[1].model \"foo\" is not defined in $d/models.json"
if [ $st = 3 ] && echo "$out" | grep -qF "$want"; then ok config_check_names_file_and_key; else nok config_check_names_file_and_key "status $st: $out"; fi
rm -rf "$d"

# a database that cannot be reached is a runtime error (1) with a readable reason
out=$(TIERQ_DATABASE_URL="host=/nonexistent-socket-dir user=x dbname=y" "$bin" status 2>&1); st=$?
if [ $st = 1 ] && echo "$out" | grep -q "cannot connect to the database"; then ok unreachable_database_exit_1; else nok unreachable_database_exit_1 "status $st: $out"; fi

# a malformed connection string is quoted back by libpq: its password never is
out=$(TIERQ_DATABASE_URL='postgresql://u:hunter2%zzsecret@localhost:5/db' "$bin" status 2>&1); st=$?
if [ $st = 1 ] && echo "$out" | grep -q "cannot connect" && ! echo "$out" | grep -q hunter2; then
    ok malformed_url_password_not_echoed
else
    nok malformed_url_password_not_echoed "status $st: $out"
fi
out=$(TIERQ_DATABASE_URL="host=/nonexistent-socket-dir password=hunter3secret port=x" "$bin" status 2>&1); st=$?
if [ $st = 1 ] && ! echo "$out" | grep -q hunter3; then ok malformed_conninfo_password_not_echoed; else nok malformed_conninfo_password_not_echoed "status $st: $out"; fi

# every subcommand answers --help and -h with its own usage line and exit 0 (even without a database)
for cmd in "" migrate "config" "config check" status run report calibrate cache "cache stats" "cache purge" "help" "help run" "help cache"; do
    for h in --help -h; do
        # shellcheck disable=SC2086
        out=$(TIERQ_DATABASE_URL="host=/nonexistent" "$bin" $cmd $h 2>&1); st=$?
        first=$(echo "$out" | head -n 1)
        name="help_${cmd:-tierq}_$h"
        name=$(echo "$name" | tr ' -' '__')
        want="usage: tierq"
        case "$cmd" in "") ;; help*) ;; *) want="tierq.* ${cmd%% *}" ;; esac
        if [ $st = 0 ] && echo "$first" | grep -q "^usage: " && echo "$first" | grep -q "$want"; then ok "$name"; else nok "$name" "status $st: $first"; fi
    done
done

# an unknown option names itself and points to the subcommand's --help, exit 2
for cmd in migrate status run report calibrate "cache stats" "cache purge"; do
    out=$("$bin" $cmd --no-such-option 2>&1); st=$?
    if [ $st = 2 ] && echo "$out" | grep -qF -- "unknown option --no-such-option (see tierq $cmd --help)"; then
        ok "unknown_option_$(echo "$cmd" | tr ' ' _)"
    else
        nok "unknown_option_$(echo "$cmd" | tr ' ' _)" "status $st: $out"
    fi
done
out=$("$bin" run --run 2>&1); st=$?
if [ $st = 2 ] && echo "$out" | grep -qF -- "--run needs a value"; then ok option_without_value; else nok option_without_value "status $st: $out"; fi

# tierq help lists the cache command; without a subcommand it is a usage error that names both
out=$("$bin" help); st=$?
if [ $st = 0 ] && echo "$out" | grep -q "^  cache stats|purge"; then ok help_mentions_cache; else nok help_mentions_cache "$out"; fi
out=$("$bin" cache 2>&1); st=$?
if [ $st = 2 ] && echo "$out" | grep -qF "missing subcommand: stats or purge"; then ok cache_without_subcommand_exit_2; else nok cache_without_subcommand_exit_2 "status $st: $out"; fi
# a purge with a bad duration is refused before the database is touched
out=$(TIERQ_DATABASE_URL="host=/nonexistent" "$bin" cache purge --older-than 2 2>&1); st=$?
if [ $st = 2 ] && echo "$out" | grep -qF "bad --older-than duration"; then ok cache_purge_bad_duration_exit_2; else nok cache_purge_bad_duration_exit_2 "status $st: $out"; fi
# a purge without a filter is refused before the database is touched (a typo must not empty the cache)
out=$(TIERQ_DATABASE_URL="host=/nonexistent" "$bin" cache purge 2>&1); st=$?
if [ $st = 2 ] && echo "$out" | grep -qF "no filter given, nothing deleted"; then ok cache_purge_without_filter_exit_2; else nok cache_purge_without_filter_exit_2 "status $st: $out"; fi
# two --kind would silently purge only the last: refused
out=$(TIERQ_DATABASE_URL="host=/nonexistent" "$bin" cache purge --kind chat --kind classify 2>&1); st=$?
if [ $st = 2 ] && echo "$out" | grep -qF -- "--kind is given twice"; then ok cache_purge_kind_twice_exit_2; else nok cache_purge_kind_twice_exit_2 "status $st: $out"; fi
