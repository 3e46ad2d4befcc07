#!/bin/sh
# tierq-fixture as a client sees it: every fixture of the manifest served verbatim with its status,
# headers and a computed Content-Length; keep-alive, Expect: 100-continue, HTTP/1.0; the record file
# (method, target with query, lower-case headers, body); the recording proxy in front of tierq-sim;
# clean exit on SIGTERM. Also checks the manifest against the fixture files. Needs curl.
# Prints "ok - name" / "not ok - name" lines and "N passed, N failed"; exits 1 on any failure.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${BUILD:-build}
fx="$root/$build/tierq-fixture"
sim="$root/$build/tierq-sim"
check="$root/$build/tierq-schema-check"
conf="$root/tests/conformance"
tmp=$(mktemp -d /tmp/tierq-fixture.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
nok() {
    echo "not ok - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /'
    failed=$((failed + 1))
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

for b in "$fx" "$sim" "$check"; do
    if [ ! -x "$b" ]; then
        nok built "$b is missing: run make"
        finish
    fi
done
command -v curl >/dev/null 2>&1 || { nok curl_available "curl is not installed"; finish; }

# start NAME ARGS...: run a server with --port 0 --port-file, wait for the port; sets $port, $pid.
start() {
    name=$1
    shift
    rm -f "$tmp/$name.port"
    "$@" --port 0 --port-file "$tmp/$name.port" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    pids="$pids $pid"
    i=0
    while [ ! -s "$tmp/$name.port" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            nok "start_$name" "$(cat "$tmp/$name.err")"
            finish
        fi
        sleep 0.1
    done
    port=$(cat "$tmp/$name.port")
}

# stop PID NAME: SIGTERM, and the exit status must be 0.
stop() {
    kill -TERM "$1"
    wait "$1"
    st=$?
    if [ $st = 0 ]; then ok "sigterm_exits_0_$2"; else nok "sigterm_exits_0_$2" "exit status $st"; fi
}

# chat_body TEXT: a valid chat completion request whose user message is TEXT.
chat_body() {
    printf '{"model":"conformance","messages":[{"role":"system","content":"Classify the ticket."},{"role":"user","content":"%s"}],"max_tokens":64,"temperature":0}' "$1"
}

# fixture_body NAME FILE: the body part of a fixture (everything after the first blank line).
fixture_body() { sed '1,/^$/d' "$conf/$1.http" >"$2"; }
fixture_status() { sed -n '1s/^status: //p' "$conf/$1.http"; }

# post URL BODY OUT: POST BODY; response body to OUT, headers to OUT.h; prints the status code.
post() {
    curl -s -o "$3" -D "$3.h" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "$1"
}
header_value() { tr -d '\r' <"$1" | sed -n "s/^$2: *//Ip" | tail -n 1; }

requests=0 # requests sent to the first server (its record must have exactly this many lines)

# ---- the manifest and the fixture files agree --------------------------------------------------------
cut -f1 "$conf/cases.tsv" | sed '1d; s/#.*//' | sort -u >"$tmp/manifest.names"
# tierq/ holds fixtures of tierq's own tests (not a server's documented shapes): not in the manifest
(cd "$conf" && find . -name '*.http' -not -path './tierq/*' | sed 's|^\./||; s|\.http$||' | sort) >"$tmp/file.names"
if cmp -s "$tmp/manifest.names" "$tmp/file.names"; then
    ok manifest_names_every_fixture_once
else
    nok manifest_names_every_fixture_once "$(diff "$tmp/manifest.names" "$tmp/file.names")"
fi
cols=$(awk -F'\t' 'NF != 9 { print NR": "NF" fields" }' "$conf/cases.tsv")
head=$(head -n 1 "$conf/cases.tsv")
want_head=$(printf 'fixture\tstate\treason\tresult\terror_contains\ttokens_in\ttokens_cached_in\ttokens_out\ttokens_reasoning')
if [ -z "$cols" ] && [ "$head" = "$want_head" ]; then ok manifest_has_nine_columns; else nok manifest_has_nine_columns "$cols $head"; fi
bad=$(awk -F'\t' 'NR > 1 && ($2 !~ /^(done|failed|queued)$/ || ($2 == "done") != ($4 != "") ||
      $6 !~ /^([0-9]+|est)$/ || $7 !~ /^([0-9]+|est)$/ || $8 !~ /^([0-9]+|est)$/ || $9 !~ /^([0-9]+|est)$/) { print NR": "$0 }' \
    "$conf/cases.tsv")
if [ -z "$bad" ]; then ok manifest_rows_well_formed; else nok manifest_rows_well_formed "$bad"; fi

# every fixture body is exactly one JSON document (any schema: {} accepts every value)
printf '{}\n' >"$tmp/any.schema.json"
bad=""
while read -r name; do
    fixture_body "$name" "$tmp/body.json"
    "$check" --schema "$tmp/any.schema.json" --whole-file "$tmp/body.json" >/dev/null 2>&1 || bad="$bad $name"
done <"$tmp/file.names"
if [ -z "$bad" ]; then ok every_fixture_body_is_one_json_document; else nok every_fixture_body_is_one_json_document "$bad"; fi

# ---- the fixture server -----------------------------------------------------------------------------
start fixture "$fx" --fixtures "$conf" --record "$tmp/record.jsonl"
fx_pid=$pid
base="http://127.0.0.1:$port"
first=$(head -n 1 "$tmp/fixture.out")
if [ "$first" = "listening on 127.0.0.1:$port" ]; then ok first_line_names_port; else nok first_line_names_port "$first"; fi

st=$(post "$base/v1/chat/completions" "$(chat_body 'I was charged twice [[fixture:vllm/ok]]')" "$tmp/r1")
requests=$((requests + 1))
fixture_body vllm/ok "$tmp/want1"
if [ "$st" = 200 ] && cmp -s "$tmp/r1" "$tmp/want1"; then ok fixture_served_verbatim; else nok fixture_served_verbatim "status $st"; fi
cl=$(header_value "$tmp/r1.h" content-length)
if [ "$cl" = "$(wc -c <"$tmp/want1" | tr -d ' ')" ]; then ok content_length_is_body_size; else nok content_length_is_body_size "content-length $cl"; fi
ct=$(header_value "$tmp/r1.h" content-type)
if [ "$ct" = "application/json" ]; then ok fixture_header_sent; else nok fixture_header_sent "content-type '$ct'"; fi

st=$(post "$base/v1/chat/completions" "$(chat_body '[[fixture:groq/error_429]]')" "$tmp/r2")
requests=$((requests + 1))
ra=$(header_value "$tmp/r2.h" retry-after)
rt=$(header_value "$tmp/r2.h" x-ratelimit-reset-tokens)
if [ "$st" = 429 ] && [ "$ra" = 7 ] && [ "$rt" = 6.7s ]; then
    ok error_fixture_status_and_rate_limit_headers
else
    nok error_fixture_status_and_rate_limit_headers "status $st retry-after '$ra' reset-tokens '$rt'"
fi

# every fixture named by the manifest, with its own status and body (the path may be any .../chat/completions)
bad=""
while read -r name; do
    st=$(post "$base/openai/v1/chat/completions" "$(chat_body "ticket [[fixture:$name]]")" "$tmp/r3")
    requests=$((requests + 1))
    fixture_body "$name" "$tmp/want3"
    { [ "$st" = "$(fixture_status "$name")" ] && cmp -s "$tmp/r3" "$tmp/want3"; } || bad="$bad $name($st)"
done <"$tmp/manifest.names"
if [ -z "$bad" ]; then ok every_manifest_fixture_served; else nok every_manifest_fixture_served "$bad"; fi

# the DeepSeek keep-alive blank lines before the JSON are part of the body
fixture_body deepseek/ok_keepalive "$tmp/want4"
st=$(post "$base/v1/chat/completions" "$(chat_body '[[fixture:deepseek/ok_keepalive]]')" "$tmp/r4")
requests=$((requests + 1))
if [ "$st" = 200 ] && [ "$(head -c 3 "$tmp/r4" | od -An -c | tr -d ' ')" = '\n\n\n' ] && cmp -s "$tmp/r4" "$tmp/want4"; then
    ok leading_blank_lines_kept
else
    nok leading_blank_lines_kept "status $st"
fi

# a JSON-escaped slash in the marker still names the fixture
st=$(post "$base/v1/chat/completions" '{"model":"m","messages":[{"role":"user","content":"[[fixture:qwen\/ok]]"}]}' "$tmp/r5")
requests=$((requests + 1))
fixture_body qwen/ok "$tmp/want5"
if [ "$st" = 200 ] && cmp -s "$tmp/r5" "$tmp/want5"; then ok escaped_slash_in_marker; else nok escaped_slash_in_marker "status $st"; fi

st=$(post "$base/v1/chat/completions" "$(chat_body '[[fixture:vllm/no_such_case]]')" "$tmp/r6")
requests=$((requests + 1))
if [ "$st" = 404 ] && grep -qF 'no fixture named vllm/no_such_case' "$tmp/r6"; then
    ok unknown_fixture_404
else
    nok unknown_fixture_404 "status $st: $(cat "$tmp/r6")"
fi

st=$(post "$base/v1/chat/completions" "$(chat_body '[[fixture:../../etc/passwd]]')" "$tmp/r7")
requests=$((requests + 1))
if [ "$st" = 400 ] && grep -qF '"code":"fixture_name_invalid"' "$tmp/r7"; then
    ok path_escape_refused
else
    nok path_escape_refused "status $st: $(cat "$tmp/r7")"
fi

st=$(post "$base/v1/chat/completions" "$(chat_body 'no marker here')" "$tmp/r8")
requests=$((requests + 1))
if [ "$st" = 404 ] && grep -qF '{"error":{"message":"no [[fixture:NAME]] marker' "$tmp/r8" &&
    grep -qF '"code":"fixture_not_found"' "$tmp/r8"; then
    ok no_marker_no_upstream_openai_404
else
    nok no_marker_no_upstream_openai_404 "status $st: $(cat "$tmp/r8")"
fi

# keep-alive: two requests in one curl run share one connection
out=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects}\n' -H 'Content-Type: application/json' \
    --data-binary "$(chat_body '[[fixture:ollama/ok]]')" "$base/v1/chat/completions" "$base/v1/chat/completions")
requests=$((requests + 2))
if [ "$(echo "$out" | tr '\n' ' ')" = "1 0 " ]; then ok keep_alive_reuses_connection; else nok keep_alive_reuses_connection "$out"; fi

# Expect: 100-continue is answered at once (curl would otherwise wait its 20 s timeout)
big=$(chat_body "[[fixture:azure/ok]] $(head -c 3000 /dev/zero | tr '\0' 'x')")
t0=$(date +%s)
st=$(curl -s -o "$tmp/r9" -w '%{http_code}' --expect100-timeout 20 -H 'Expect: 100-continue' \
    -H 'Content-Type: application/json' --data-binary "$big" "$base/v1/chat/completions")
t1=$(date +%s)
requests=$((requests + 1))
fixture_body azure/ok "$tmp/want9"
if [ "$st" = 200 ] && [ $((t1 - t0)) -lt 10 ] && cmp -s "$tmp/r9" "$tmp/want9"; then
    ok expect_100_continue
else
    nok expect_100_continue "status $st after $((t1 - t0)) s"
fi

# HTTP/1.0 without keep-alive: the answer says Connection: close
st=$(curl -s --http1.0 -o "$tmp/r10" -D "$tmp/r10.h" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "$(chat_body '[[fixture:tgi/finish_eos]]')" "$base/v1/chat/completions")
requests=$((requests + 1))
if [ "$st" = 200 ] && [ "$(header_value "$tmp/r10.h" connection)" = close ]; then
    ok http10_connection_close
else
    nok http10_connection_close "status $st"
fi

# a chunked upload is refused (Content-Length bodies only); it is not recorded
printf '%s' "$(chat_body '[[fixture:vllm/ok]]')" >"$tmp/chunked.json"
st=$(curl -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/json' \
    --data-binary @"$tmp/chunked.json" "$base/v1/chat/completions")
if [ "$st" = 501 ]; then ok chunked_upload_501; else nok chunked_upload_501 "status $st"; fi

# what the record keeps: method, target with the query, lower-case header names, the raw body
st=$(curl -s -o /dev/null -w '%{http_code}' -A 'tierq-conformance/1.0' -H 'Api-Key: test-key-123' \
    -H 'Content-Type: application/json' --data-binary "$(chat_body 'quote \" and [[fixture:azure/refusal]]')" \
    "$base/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21")
requests=$((requests + 1))
last=$(tail -n 1 "$tmp/record.jsonl")
probe_ok=1
for want in '"method":"POST"' '"target":"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"' \
    '"user-agent":"tierq-conformance/1.0"' '"api-key":"test-key-123"' '"content-type":"application/json"' \
    '"body":"{\"model\":\"conformance\",\"messages\":[{\"role\":\"system\"' 'quote \\\" and [[fixture:azure/refusal]]'; do
    printf '%s' "$last" | grep -qF -- "$want" || { probe_ok=0; echo "# missing: $want"; }
done
if [ "$st" = 200 ] && [ $probe_ok = 1 ]; then ok record_line_fields; else nok record_line_fields "status $st: $last"; fi

lines=$(wc -l <"$tmp/record.jsonl" | tr -d ' ')
if [ "$lines" = "$requests" ]; then ok one_record_line_per_request; else nok one_record_line_per_request "$lines lines for $requests requests"; fi

# the recorded bodies are what was sent: all valid chat requests under the schema
out=$("$check" --schema "$conf/chat_request.schema.json" --record-lines "$tmp/record.jsonl" 2>&1)
if [ "$out" = "ok $requests" ]; then
    ok recorded_bodies_pass_request_schema
else
    nok recorded_bodies_pass_request_schema "$(printf '%s\n' "$out" | head -n 20)"
fi

stop "$fx_pid" fixture

# ---- recording proxy in front of the simulator -------------------------------------------------------
start sim "$sim" --models "$root/tests/sim/models.json" --latency-ms 0
sim_pid=$pid
sim_port=$port
start proxy "$fx" --fixtures "$conf" --record "$tmp/proxy.jsonl" --upstream "http://127.0.0.1:$sim_port/v1"
proxy_pid=$pid
pbase="http://127.0.0.1:$port"

st=$(post "$pbase/v1/chat/completions" '{"model":"qwen3-8b","messages":[{"role":"user","content":"What is 2+2?"}],"max_tokens":16}' "$tmp/p1")
if [ "$st" = 200 ] && grep -qF '"object":"chat.completion"' "$tmp/p1" && grep -qF '"model":"qwen3-8b"' "$tmp/p1"; then
    ok proxy_forwards_chat
else
    nok proxy_forwards_chat "status $st: $(head -c 300 "$tmp/p1")"
fi
st=$(curl -s -o "$tmp/p2" -w '%{http_code}' "$pbase/v1/models")
if [ "$st" = 200 ] && grep -qF '"qwen3-8b"' "$tmp/p2"; then ok proxy_forwards_get_models; else nok proxy_forwards_get_models "status $st"; fi
st=$(post "$pbase/v1/chat/completions" '{"model":"qwen3-8b","messages":[{"role":"user","content":"hello [[sim:429]]"}]}' "$tmp/p3")
ra=$(header_value "$tmp/p3.h" retry-after)
if [ "$st" = 429 ] && [ "$ra" = 1 ] && grep -qF rate_limit_exceeded "$tmp/p3"; then
    ok proxy_passes_upstream_error_and_headers
else
    nok proxy_passes_upstream_error_and_headers "status $st retry-after '$ra'"
fi
st=$(post "$pbase/v1/chat/completions" "$(chat_body '[[fixture:qwen/ok]]')" "$tmp/p4")
fixture_body qwen/ok "$tmp/wantp4"
if [ "$st" = 200 ] && cmp -s "$tmp/p4" "$tmp/wantp4"; then ok proxy_fixture_marker_wins; else nok proxy_fixture_marker_wins "status $st"; fi
# the simulator saw the two forwarded chat requests, not the fixture one
reqs=$(curl -s "http://127.0.0.1:$sim_port/sim/stats" | grep -o '"requests": *[0-9]*' | head -n 1 | tr -dc '0-9')
if [ "$reqs" = 2 ]; then ok proxy_fixture_not_forwarded; else nok proxy_fixture_not_forwarded "simulator counted $reqs chat requests"; fi
plines=$(wc -l <"$tmp/proxy.jsonl" | tr -d ' ')
if [ "$plines" = 4 ] && grep -qF '"method":"GET","target":"/v1/models"' "$tmp/proxy.jsonl"; then
    ok proxy_records_every_request
else
    nok proxy_records_every_request "$plines lines"
fi
stop "$proxy_pid" proxy
kill "$sim_pid" 2>/dev/null
wait "$sim_pid" 2>/dev/null

# an upstream that does not answer gives a 502 with an OpenAI-style error naming it
start deadproxy "$fx" --upstream "http://127.0.0.1:$sim_port/v1" --upstream-timeout-ms 3000
dead_pid=$pid
st=$(post "http://127.0.0.1:$port/v1/chat/completions" "$(chat_body 'no marker')" "$tmp/d1")
if [ "$st" = 502 ] && grep -qF '"code":"upstream_failed"' "$tmp/d1"; then ok upstream_down_502; else nok upstream_down_502 "status $st: $(cat "$tmp/d1")"; fi
stop "$dead_pid" deadproxy

finish
