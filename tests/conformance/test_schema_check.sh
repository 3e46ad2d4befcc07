#!/bin/sh
# tierq-schema-check against tests/conformance/chat_request.schema.json: bodies tierq sends pass,
# bodies that break the OpenAI spec (or our stated narrowings) fail with the JSON path named, and a
# schema using a keyword the checker does not implement is refused. Prints "ok - name" /
# "not ok - name" lines and "N passed, N failed"; exits 1 on any failure.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${BUILD:-build}
bin="$root/$build/tierq-schema-check"
schema="$root/tests/conformance/chat_request.schema.json"
tmp=$(mktemp -d /tmp/tierq-schema.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
nok() {
    echo "not ok - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /'
    failed=$((failed + 1))
}

if [ ! -x "$bin" ]; then
    nok built "$bin is missing: run make"
    echo "$passed passed, $failed failed"
    exit 1
fi

# check NAME WANT_STATUS WANT_SUBSTRING [checker options...] < body
# The body comes on stdin; WANT_SUBSTRING must occur in stdout ("" = no requirement).
check() {
    name=$1 want=$2 sub=$3
    shift 3
    out=$("$bin" --schema "$schema" "$@" 2>"$tmp/err")
    st=$?
    if [ "$st" = "$want" ] && { [ -z "$sub" ] || printf '%s' "$out" | grep -qF -- "$sub"; }; then
        ok "$name"
    else
        nok "$name" "status $st (want $want), output: $out $(cat "$tmp/err")"
    fi
}

# ---- valid bodies: what tierq's oai_build_request and batch_build_body produce ----
check valid_minimal 0 "ok 1" <<'EOF'
{"model":"qwen3-8b","messages":[{"role":"user","content":"hello"}]}
EOF
check valid_every_field_tierq_sends 0 "ok 1" <<'EOF'
{"model":"gpt-4o","messages":[{"role":"system","content":"Classify the ticket."},{"role":"user","content":"I was charged twice"}],"max_completion_tokens":64,"temperature":0,"seed":42,"logprobs":true,"top_logprobs":5,"response_format":{"type":"json_object"}}
EOF
check valid_max_tokens_and_developer_role 0 "ok 1" <<'EOF'
{"model":"deepseek-chat","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"x"},{"role":"assistant","content":null,"refusal":"no"}],"max_tokens":512,"temperature":1.5,"n":3,"stop":["\n\n"]}
EOF
check valid_json_schema_and_nulls 0 "ok 1" <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object","properties":{"a":{"type":"string"}}},"strict":true}},"stop":null,"seed":-9223372036854775808,"temperature":null,"reasoning_effort":"low"}
EOF
printf '%s\n' '{"model":"a","messages":[{"role":"user","content":"1"}]}' '' \
    '{"model":"b","messages":[{"role":"user","content":"2"}],"seed":1}' >"$tmp/three.jsonl"
check one_document_per_line_blank_lines_skipped 0 "ok 2" "$tmp/three.jsonl" </dev/null

# ---- invalid bodies: each names the path that is wrong ----
check missing_messages 1 '$: missing required property "messages"' <<'EOF'
{"model":"m"}
EOF
check empty_messages 1 '$.messages: array has 0 items, at least 1 required' <<'EOF'
{"model":"m","messages":[]}
EOF
check temperature_above_2 1 '$.temperature: 2.5 is above the maximum 2' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":2.5}
EOF
check top_logprobs_above_20 1 '$.top_logprobs: 21 is above the maximum 20' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}
EOF
check n_below_1 1 '$.n: 0 is below the minimum 1' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}
EOF
check max_tokens_as_string 1 '$.max_tokens: expected "integer" or "null", got string' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"64"}
EOF
check max_tokens_fraction 1 '$.max_tokens: expected "integer" or "null", got number' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":64.5}
EOF
check unknown_role 1 '$.messages[0]: matches none of the 4 alternatives of oneOf' <<'EOF'
{"model":"m","messages":[{"role":"robot","content":"x"}]}
EOF
check user_content_not_a_string 1 '$.messages[1].content: expected "string", got integer' <<'EOF'
{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":7}]}
EOF
check typo_in_message_key 1 '$.messages[0].contents: property is not allowed here' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x","contents":"y"}]}
EOF
check unknown_response_format 1 '$.response_format: matches none of the 3 alternatives of oneOf' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}
EOF
check json_schema_without_name 1 'missing required property "name"' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}
EOF
check five_stop_sequences 1 '$.stop: matches none of the 2 alternatives of oneOf; closest: $.stop: array has 5 items, at most 4 allowed' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}
EOF
check reasoning_effort_enum 1 '$.reasoning_effort: "extreme" is not one of' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"}
EOF
check duplicate_key 1 '$.temperature: duplicate property' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0,"temperature":1}
EOF
check not_json 1 '$: not json' <<'EOF'
{"model":"m","messages":[
EOF
check two_values_on_a_line 1 '$: not json' <<'EOF'
{"model":"m","messages":[{"role":"user","content":"x"}]} {}
EOF

# ---- --allow-extra: provider-specific top-level keys configured per model ----
extra='{"model":"m","messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"enable_thinking":false}}'
printf '%s\n' "$extra" | check extra_key_refused_by_default 1 '$.chat_template_kwargs: property is not allowed here'
printf '%s\n' "$extra" | check extra_key_allowed_with_option 0 "ok 1" --allow-extra chat_template_kwargs
# only at the top level: the same key inside a message is still refused
printf '%s\n' '{"model":"m","messages":[{"role":"user","content":"x","chat_template_kwargs":1}]}' |
    check extra_key_only_top_level 1 '$.messages[0].chat_template_kwargs: property is not allowed here' \
        --allow-extra chat_template_kwargs

# ---- --record-lines: the body field of tierq-fixture record lines ----
cat >"$tmp/record.jsonl" <<'EOF'
{"method":"POST","target":"/v1/chat/completions","headers":{"content-type":"application/json"},"body":"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"}
{"method":"POST","target":"/v1/chat/completions?api-version=2024-10-21","headers":{},"body":"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"y\"}],\"top_p\":0.5}"}
EOF
check record_lines_valid 0 "ok 2" --record-lines "$tmp/record.jsonl" </dev/null
printf '%s\n' '{"method":"POST","target":"/v1/chat/completions","headers":{},"body":"{\"model\":\"m\",\"messages\":[],\"top_p\":2}"}' >"$tmp/bad.jsonl"
check record_lines_invalid_body 1 '$.top_p: 2 is above the maximum 1' --record-lines "$tmp/bad.jsonl" </dev/null
printf '%s\n' '{"method":"GET","target":"/v1/models","headers":{}}' >"$tmp/nobody.jsonl"
check record_line_without_body 1 'record has no "body" string' --record-lines "$tmp/nobody.jsonl" </dev/null

# ---- --whole-file: one document spanning lines ----
printf '\n\n{\n  "model": "m",\n  "messages": [{"role": "user", "content": "x"}]\n}\n' >"$tmp/pretty.json"
check whole_file_pretty_printed 0 "ok 1" --whole-file "$tmp/pretty.json" </dev/null

# ---- the schema itself: keywords the checker does not implement are refused (exit 2) ----
printf '%s\n' '{"type":"object","properties":{"a":{"type":"string","pattern":"^x"}}}' >"$tmp/pattern.schema.json"
out=$(printf '%s\n' '{"a":"y"}' | "$bin" --schema "$tmp/pattern.schema.json" 2>&1)
st=$?
if [ $st = 2 ] && printf '%s' "$out" | grep -qF 'keyword "pattern" is not implemented'; then
    ok unimplemented_keyword_refused
else
    nok unimplemented_keyword_refused "status $st: $out"
fi
printf '%s\n' '{"$ref":"#/$defs/missing"}' >"$tmp/ref.schema.json"
out=$(printf '%s\n' '{}' | "$bin" --schema "$tmp/ref.schema.json" 2>&1)
st=$?
if [ $st = 2 ] && printf '%s' "$out" | grep -qF 'does not resolve'; then
    ok unresolvable_ref_refused
else
    nok unresolvable_ref_refused "status $st: $out"
fi
out=$("$bin" --no-such-option 2>&1 </dev/null)
st=$?
if [ $st = 2 ]; then ok unknown_option_exit_2; else nok unknown_option_exit_2 "status $st: $out"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
