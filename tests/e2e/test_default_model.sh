#!/usr/bin/env bash
# End to end on the shipped trained model: mole's greedy continuation of a fixed prompt equals the one recorded by
# the independent PyTorch implementation (tools/train/train_mole.py) in models/kjv-mole-4l.reference.json, on every
# backend this machine has; and the built-in default model answers the README's command with English text.
set -uo pipefail
M=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
ref=$root/models/kjv-mole-4l.reference.json
PY=$(command -v python3 || echo /usr/bin/python3)
passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

if [ ! -f "$ref" ]; then
  echo "skipped: this checkout ships no trained model (models/kjv-mole-4l.reference.json)"
  echo "0 passed, 0 failed"
  exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# A float32 table, so that mole and PyTorch see the same numbers (the default model's table is fp16).
"$M" convert -m "$root/models/kjv-mole-4l" -o "$T/f32" --dtype f32 -q || bad "convert the shipped model"
prompt_ids=$($PY -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_ids"])))' "$ref")
want=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["greedy_ids"])' "$ref")
n=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["greedy_ids"]))' "$ref")

# Every backend `mole devices` finds available (awk reads the whole listing: with pipefail, grep -q leaving early
# would fail the pipeline by SIGPIPE).
backends=$("$M" devices | awk '$2 == "available" {print $1}' | paste -sd ' ')
for b in $backends; do
  got=$("$M" run -m "$T/f32" --prompt-ids "$prompt_ids" -n "$n" --temp 0 --ignore-eos --json -q --backend "$b" |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["ids"])')
  if [ "$got" = "$want" ]; then ok "greedy ids on $b equal PyTorch's"; else bad "greedy ids on $b: $got, PyTorch: $want"; fi
done

# The README's main command on the built-in default model: the prompt, then English words.
out=$("$M" run -p "In the beginning God created" -n 24 --temp 0 -q 2> "$T/err")
if [[ "$out" == "In the beginning God created"* ]] &&
  [ "$(echo "$out" | grep -oE '\b(the|and|of|unto|he|that|in|his)\b' | wc -l)" -ge 3 ]; then
  ok "default model continues the prompt in English: ${out//$'\n'/ }"
else
  bad "default model output: $out $(cat "$T/err")"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
