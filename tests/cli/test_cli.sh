#!/usr/bin/env bash
# End-to-end checks of the mole CLI, above all of its behaviour on bad input: every bad case must exit non-zero
# with a clear message naming what is wrong, without crashing, hanging or leaving a complete-looking output dir.
# Usage: bash tests/cli/test_cli.sh /path/to/mole        (run by ctest as the `cli` test)
set -u
M=$(realpath "${1:?usage: test_cli.sh /path/to/mole}")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NEOX="$ROOT/data/gpt-neox-tokenizer/tokenizer.json"
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
PASSED=0 FAILED=0

# ---- harness ---------------------------------------------------------------------------------------------------
pass() { echo "ok $1"; PASSED=$((PASSED + 1)); }
fail() {
  echo "FAIL $1: $2"
  [ -s "$T/err" ] && head -n 20 "$T/err" | sed 's/^/    | /'
  FAILED=$((FAILED + 1))
}
# Runs CMD under `timeout 120`, stdout to $T/out, stderr to $T/err; sets RC and WHY (empty unless it crashed/hung).
run_cmd() {
  timeout 120 "$@" >"$T/out" 2>"$T/err"
  RC=$? WHY=
  if [ $RC -eq 124 ]; then WHY="hung (killed by timeout after 120 s)"
  elif [ $RC -ge 128 ]; then WHY="crashed (exit $RC, killed by a signal)"
  elif grep -qE 'terminate called|Segmentation|AddressSanitizer|runtime error:' "$T/err"; then WHY="crash report on stderr"
  fi
}
# expect_ok NAME CMD...: CMD must succeed.
expect_ok() {
  local name=$1; shift
  run_cmd "$@"
  if [ -n "$WHY" ]; then fail "$name" "$WHY"
  elif [ $RC -ne 0 ]; then fail "$name" "exit $RC, expected success"
  else pass "$name"; fi
}
# expect_fail NAME PATTERN CMD...: CMD must fail cleanly, its stderr matching the extended regex PATTERN
# (case-insensitive). With OUTDIR=DIR set, neither DIR nor DIR.partial may exist afterwards; with NOSTDOUT=1,
# nothing may have been printed on stdout; with RC_IS=N, the exit code must be N; with WITHIN=S, it must have
# taken at most S seconds.
expect_fail() {
  local name=$1 pat=$2; shift 2
  local t0=$SECONDS
  run_cmd "$@"
  if [ -n "$WHY" ]; then fail "$name" "$WHY"
  elif [ $RC -eq 0 ]; then fail "$name" "exit 0, expected an error"
  elif [ -n "${RC_IS:-}" ] && [ "$RC" -ne "$RC_IS" ]; then fail "$name" "exit $RC, expected $RC_IS"
  elif [ -n "${WITHIN:-}" ] && [ $((SECONDS - t0)) -gt "$WITHIN" ]; then
    fail "$name" "took $((SECONDS - t0)) s, more than $WITHIN s"
  elif ! grep -qiE -- "$pat" "$T/err"; then fail "$name" "stderr does not match /$pat/"
  elif [ -n "${OUTDIR:-}" ] && { [ -e "$OUTDIR" ] || [ -e "$OUTDIR.partial" ]; }; then
    fail "$name" "left $OUTDIR or $OUTDIR.partial behind"
  elif [ -n "${NOSTDOUT:-}" ] && [ -s "$T/out" ]; then fail "$name" "printed on stdout before failing: $(head -c 200 "$T/out")"
  else pass "$name"; fi
}
# check NAME CMD...: CMD (a test on saved output) must exit 0.
check() {
  local name=$1; shift
  : >"$T/err"
  if "$@" 2>"$T/err"; then pass "$name"; else fail "$name" "check failed: $*"; fi
}
# pyjson FILE EXPR: the JSON in FILE, bound to j, makes the Python expression EXPR true.
pyjson() { $PY -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"; }
save() { cp "$T/out" "$1"; }
save_err() { cp "$T/err" "$1"; }  # check() rewrites $T/err: a check on a command's stderr reads this copy
snapshot() { (cd "$1" && find . -printf '%p %s %m\n' | sort && find . -type f -exec md5sum {} + | sort); }

# Helpers that craft malformed checkpoints from a good inference-form one (infer/).
# mkcfg DIR STMT: copy infer/ to DIR and run the Python statement STMT on config.json's dict `c`.
mkcfg() {
  rm -rf "$1" && cp -r infer "$1"
  $PY - "$1/config.json" "$2" <<'EOF'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); exec(sys.argv[2]); json.dump(c, open(p, 'w'), indent=1)
EOF
}
# mkst DIR OP ARGS...: copy infer/ to DIR and damage DIR/model.safetensors with st.py OP ARGS.
mkst() { local d=$1; shift; rm -rf "$d" && cp -r infer "$d" && $PY "$T/st.py" "$1" "$d/model.safetensors" "${@:2}"; }
cat >"$T/st.py" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
def save(p, h, data):
    hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
    open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
def repack(p, ts):  # write {name: (meta, bytes)} with fresh contiguous offsets
    h, out = {'__metadata__': {'format': 'pt'}}, b''
    for k, (m, raw) in ts.items():
        h[k] = dict(m, data_offsets=[len(out), len(out) + len(raw)]); out += raw
    save(p, h, out)
op, p, args = sys.argv[1], sys.argv[2], sys.argv[3:]
h, data = load(p)
ts = {k: (v, data[v['data_offsets'][0]:v['data_offsets'][1]]) for k, v in h.items() if k != '__metadata__'}
size = len(open(p, 'rb').read())
if op == 'cut': open(p, 'r+b').truncate(int(args[0]))              # cut the file to N bytes
elif op == 'cut-data': open(p, 'r+b').truncate(size - 1000)        # cut inside the tensor data
elif op == 'hlen':                                                  # header length past the end of the file
    b = open(p, 'rb').read(); open(p, 'wb').write(struct.pack('<Q', 4 * size) + b[8:])
elif op == 'dtype': h[args[0]]['dtype'] = args[1]; save(p, h, data)
elif op == 'overlap':                                               # args[0] reuses lm_head.weight's bytes
    h[args[0]]['data_offsets'] = h['lm_head.weight']['data_offsets']; save(p, h, data)
elif op == 'drop': del ts[args[0]]; repack(p, ts)
elif op == 'extra': ts[args[0]] = ({'dtype': 'F32', 'shape': [4]}, bytes(16)); repack(p, ts)
elif op == 'nanrow':                                                # row args[1] of args[0] all ones bits: NaN
    m, raw = ts[args[0]]; n = len(raw) // m['shape'][0]; r = int(args[1])
    ts[args[0]] = (m, raw[:r * n] + b'\xff' * n + raw[(r + 1) * n:]); repack(p, ts)
elif op == 'deep':                                                  # a header of 100,000 nested objects
    hb = b'{"a":' * 100000 + b'1' + b'}' * 100000; open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb)
elif op == 'moe':                                                   # the MoE baseline: no mlp.*, no expert_layernorm
    repack(p, {k: v for k, v in ts.items() if '.mlp.' not in k and 'expert_layernorm' not in k})
elif op == 'many':                                                  # 100,000 more valid F32 tensors of 1 value
    for i in range(100000): ts['extra.%d' % i] = ({'dtype': 'F32', 'shape': [1]}, bytes(4))
    repack(p, ts)
EOF

SMALL='{"vocab_size": 384}'
V=384

# ---- positive cases --------------------------------------------------------------------------------------------
expect_ok "synth tiny train form" "$M" synth --preset tiny -o train --form train --set "$SMALL" -q
expect_ok "synth tiny infer form (f16)" "$M" synth --preset tiny -o infer --form infer --dtype f16 --set "$SMALL" -q
expect_ok "synth tiny dense form (f32)" "$M" synth --preset tiny -o dense --form dense --dtype f32 --set "$SMALL" -q
declare -A FORM=([train]=training [infer]=inference [dense]=dense)
for d in train infer dense; do
  expect_ok "info $d (text)" "$M" info -m $d
  check "info $d text says ${FORM[$d]} form" grep -qE "^form +${FORM[$d]}" "$T/out"
  expect_ok "info $d --json" "$M" info -m $d --json
  save info_$d.json
  check "info $d --json parses, vocab_size $V" pyjson info_$d.json "j['vocab_size'] == $V"
done

expect_ok "logits --ids 1,2,3 --json" "$M" logits -m infer --ids 1,2,3 --json -q
save logits.json
check "logits: 3 rows of $V floats" pyjson logits.json \
  "len(j['logits']) == 3 and all(len(r) == $V and all(isinstance(x, float) for x in r) for r in j['logits'])"
expect_ok "logits --profile" "$M" logits -m infer --ids 1,2,3 --profile
save logits_profiled.json
cp "$T/err" logits_profiled.err
check "logits --profile: the per-op table on stderr, the same JSON on stdout" bash -c \
  "grep -q '^profile (cpu, ' logits_profiled.err && cmp -s logits_profiled.json logits.json"
expect_fail "bench --profile is refused (bench times whole steps)" 'profile' "$M" bench -m infer --profile

GREEDY=(run -m infer --prompt-ids 1,2,3 -n 5 --temp 0 --json -q)
expect_ok "run greedy --json" "$M" "${GREEDY[@]}"; save greedy1.json
check "run greedy: 5 ids or stopped on eos" pyjson greedy1.json \
  "len(j['ids']) == 5 or (j['stop_reason'] == 'eos' and len(j['ids']) <= 5)"
expect_ok "run greedy again" "$M" "${GREEDY[@]}"; save greedy2.json
check "run greedy is deterministic" pyjson greedy2.json "j['ids'] == json.load(open('greedy1.json'))['ids']"
SAMPLED=(run -m infer --prompt-ids 1,2,3 -n 5 --seed 42 --temp 0.8 --json -q)
expect_ok "run --seed 42 --temp 0.8" "$M" "${SAMPLED[@]}"; save seed1.json
expect_ok "run --seed 42 --temp 0.8 again" "$M" "${SAMPLED[@]}"; save seed2.json
check "run with a seed is reproducible" pyjson seed2.json "j['ids'] == json.load(open('seed1.json'))['ids']"
for lut in host device disk; do
  expect_ok "run --lut $lut" "$M" run -m infer --prompt-ids 1,2,3 -n 5 --temp 0 --json -q --lut $lut; save lut_$lut.json
  check "run --lut $lut gives the same greedy ids" pyjson lut_$lut.json "j['ids'] == json.load(open('greedy1.json'))['ids']"
done

# --stop: pick a printable 2-character piece of the greedy text as the stop string; the output must end before it.
expect_ok "run greedy -n 12 for --stop" "$M" run -m infer --prompt-ids 1,2,3 -n 12 --temp 0 --json -q; save long.json
$PY - long.json <<'EOF' >stop.txt
import json, sys
t = json.load(open(sys.argv[1]))['text']
for i in range(1, len(t) - 1):
    s = t[i:i + 2]
    if s.isprintable() and s.strip() == s and t.find(s) == i: print(s); break
EOF
STOP=$(cat stop.txt)
expect_ok "run --stop '$STOP'" "$M" run -m infer --prompt-ids 1,2,3 -n 12 --temp 0 -q --no-display-prompt --stop "$STOP"
save stop_out.txt
check "--stop text is not printed" $PY -c "
import json, sys
t = json.load(open('long.json'))['text']; out = open('stop_out.txt', encoding='utf-8', errors='replace').read()
sys.exit(0 if sys.argv[1] and out.rstrip('\n') == t[:t.find(sys.argv[1])] else 1)" "$STOP"

# --router-trace: one JSON line per generated token, L x E weights each summing to 1 per layer; stdout unchanged.
expect_ok "run --router-trace" "$M" run -m infer --prompt-ids 1,2,3 -n 12 --temp 0 --json -q --router-trace trace.jsonl
save traced.json
check "--router-trace leaves the ids as they were" pyjson traced.json "j['ids'] == json.load(open('long.json'))['ids']"
check "--router-trace: a line per token, L x E weights summing to 1" $PY -c "
import json, sys
ids = json.load(open('traced.json'))['ids']; cfg = json.load(open('infer/config.json'))
lines = [json.loads(l) for l in open('trace.jsonl')]
ok = len(lines) == len(ids) and all(l['index'] == i and l['id'] == ids[i] for i, l in enumerate(lines))
ok = ok and [l['input_id'] for l in lines] == [3] + ids[:-1] and [l['position'] for l in lines] == list(range(2, 2 + len(ids)))
ok = ok and all(len(l['router']) == cfg['num_hidden_layers'] and all(len(r) == cfg['num_experts'] and
                abs(sum(r) - 1) < 1e-5 for r in l['router']) for l in lines)
sys.exit(0 if ok else 1)"
expect_fail "run --router-trace into a missing folder" 'router-trace nope/t\.jsonl: its folder nope does not exist' \
  "$M" run -m infer --prompt-ids 1,2,3 -n 2 -q --router-trace nope/t.jsonl
expect_fail "run --router-trace on a dense model" 'router-trace.*dense' \
  "$M" run -m dense --prompt-ids 1,2,3 -n 2 -q --router-trace t.jsonl

expect_ok "run default model -p 'Hello world'" "$M" run -p "Hello world" -n 8 --temp 0 -q
check "default model output starts with the prompt" grep -q '^Hello world' "$T/out"
# The default model's vocab (50304) is padded past the tokenizer's (50277): ids in the padding are valid model ids.
expect_ok "run default model, prompt id in the vocab padding" "$M" run --prompt-ids 50290 -n 3 --temp 0 -q
expect_ok "run default model, sampling may pick a padding id" \
  "$M" run --prompt-ids 1 -n 500 --ignore-eos --temp 100 --top-k 0 --top-p 1 --min-p 0 --seed 6 -q --json
expect_ok "tokenize 'Hello world' (GPT-NeoX)" "$M" tokenize --text "Hello world" --tokenizer "$NEOX"
check "tokenize prints 12092,1533" [ "$(cat "$T/out")" = "12092,1533" ]
expect_ok "detokenize 12092,1533" "$M" detokenize --ids 12092,1533 --tokenizer "$NEOX"
check "detokenize prints 'Hello world'" [ "$(cat "$T/out")" = "Hello world" ]
expect_ok "devices" "$M" devices
check "devices lists cpu as available" grep -qE '^cpu +available' "$T/out"
# --backend auto on a machine where no GPU backend runs (CI): one line says why, and that it used the CPU; -q, none.
if ! "$M" run -m infer --prompt-ids 1 -n 1 --temp 0 2>&1 >/dev/null | grep -q '^mole: --backend auto: .*; using [a-z]*$'; then
  expect_ok "run --backend auto" "$M" run -m infer --prompt-ids 1 -n 1 --temp 0; save_err auto.err
  check "auto without a GPU: one notice naming each GPU backend and the CPU" grep -qE \
    '^mole: --backend auto: no GPU backend runs here \(.*\); using the CPU reference$' auto.err
  check "auto: the notice once" [ "$(grep -c 'backend auto' auto.err)" = 1 ]
  expect_ok "run --backend auto -q" "$M" run -m infer --prompt-ids 1 -n 1 --temp 0 -q; save_err auto_q.err
  check "auto -q: no notice" [ ! -s auto_q.err ]
fi

expect_ok "convert train -> inference" "$M" convert -m train -o conv -q
check "convert leaves no .partial" [ ! -e conv.partial ]
expect_ok "info on the converted dir" "$M" info -m conv --json; save info_conv.json
check "converted dir is inference form" pyjson info_conv.json "j['form'].startswith('inference')"
expect_ok "logits of the converted dir" "$M" logits -m conv --ids 1,2,3,4,5 -q; save conv_logits.json
expect_ok "logits of train form --lut-dtype f16" "$M" logits -m train --ids 1,2,3,4,5 --lut-dtype f16 -q
save train_logits.json
check "converted logits equal train-form logits (1e-6 rel)" $PY -c "
import json, numpy as np
a = np.array(json.load(open('conv_logits.json'))['logits']); b = np.array(json.load(open('train_logits.json'))['logits'])
assert a.shape == b.shape == (5, $V) and np.allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())"

# ---- bad input: command line -----------------------------------------------------------------------------------
RC_IS=2 expect_fail "unknown subcommand" 'bogus' "$M" bogus
RC_IS=2 NOSTDOUT=1 expect_fail "mole alone lists the subcommands on stderr" 'Subcommands:.*' "$M"
SUBS='run|logits|tokenize|detokenize|convert|info|synth|devices|bench|parity'
check "mole alone: every subcommand is listed" bash -c "'$M' 2>&1 | grep -c -E '^  ($SUBS) ' | grep -qx 10"
RC_IS=2 expect_fail "unknown flag" '--bogus' "$M" run --bogus
RC_IS=2 expect_fail "-n abc" '(-n|n-predict).*abc' "$M" run -m infer --prompt-ids 1 -n abc -q
expect_fail "--lut bogus" 'lut.*bogus|bogus.*lut' "$M" run -m infer --prompt-ids 1 --lut bogus -q
expect_fail "--backend bogus" 'backend.*bogus.*unknown|unknown backend' "$M" run -m infer --prompt-ids 1 --backend bogus -q
# --backend vulkan: the CPU's greedy tokens with every table placement where a Vulkan device exists (lavapipe in CI),
# else a reason. Its failure paths are checked everywhere: no loader, and a device too small for --lut device.
greedy_ids() { "$M" run -m infer --prompt-ids 1,2,3 -n 6 --temp 0 --json -q "$@" | $PY -c 'import json,sys; print(json.load(sys.stdin)["ids"])'; }
if "$M" devices | grep -E '^vulkan +available' > /dev/null; then
  cpu_ids=$(greedy_ids --backend cpu)
  for lut in device host disk; do
    check "--backend vulkan --lut $lut gives the CPU's greedy tokens" \
      test "$(greedy_ids --backend vulkan --lut $lut 2>/dev/null)" = "$cpu_ids"
  done
  # (Plain barriers, which every Vulkan device runs; the chain needs device addresses: tests/test_vulkan.cpp.)
  expect_ok "run --backend vulkan --json" "$M" run -m infer --prompt-ids 1,2,3 -n 2 --temp 0 --json -q --backend vulkan
  save run_vk.json
  check "run --json: says how the backend ran its steps" pyjson run_vk.json 'j["execution"] == "pipeline barriers"'
  # mole bench: --lut host both ways (rows copied, rows read in place), the table imported from the file.
  XDG_CACHE_HOME="$T/cache" expect_ok "bench --backend vulkan" \
    "$M" bench -m infer --backend vulkan --placements host,disk --prompt-tokens 4 -n 4 --json
  cp "$T/out" bench_vk.json
  check "bench --backend vulkan: host/copy, host/direct and disk rows with speeds and setup times" pyjson bench_vk.json \
    '[(r["lut"], r["lut_read"]) for r in j["placements"]] == [("host", "copy"), ("host", "direct"), ("disk", "copy")]
     and all(r["decode_tokens_per_s"] > 0 and r["prefill_tokens_per_s"] > 0 and r["setup_s"] > 0 for r in j["placements"])'
  check "bench --backend vulkan: the results name the driver's version" pyjson bench_vk.json 'j["driver"].strip() != ""'
  check "bench --backend vulkan: --lut host says whether the table was imported" pyjson bench_vk.json \
    'all(r["lut_table"].startswith(("imported", "copied")) for r in j["placements"][:2]) and "lut_table" not in j["placements"][2]'
  check "bench without --record changes nothing for later runs (no read-mode record in the cache)" \
    bash -c "! ls '$T/cache/mole'/lut-read-* > /dev/null 2>&1"
  XDG_CACHE_HOME="$T/cache" expect_ok "bench --backend vulkan --record -o FILE" \
    "$M" bench -m infer --backend vulkan --placements host --prompt-tokens 4 -n 4 --record -o bench_rec.json -q
  check "bench -o FILE writes the results (and no FILE.partial)" bash -c \
    "test ! -e bench_rec.json.partial && $PY -c 'import json; j=json.load(open(\"bench_rec.json\")); assert len(j[\"placements\"]) == 2'"
  check "bench --record: a confirmed read mode is in the cache file it names" pyjson bench_rec.json \
    '"lut_read_faster" not in j or open(j["lut_read_faster"]["file"]).read().strip() == j["lut_read_faster"]["mode"]'
  # A placement that does not fit is a row that says why; the others are still measured.
  expect_ok "bench with --lut device too big for the device" \
    "$M" bench -m infer --backend vulkan --placements device,host -c 16 --ubatch-size 4 --prompt-tokens 4 -n 4 --json \
    --memory-limit 0.5
  check "bench: the device row says it does not fit, the host rows are measured" pyjson "$T/out" \
    '"not enough GPU memory" in j["placements"][0]["skipped"] and all(r["decode_tokens_per_s"] > 0 for r in j["placements"][1:])'
  expect_ok "convert --backend vulkan" "$M" convert -m train -o conv_vk --backend vulkan -q
  check "convert --backend vulkan writes the inference form" bash -c "\"$M\" info -m conv_vk | grep -q inference"
  expect_fail "--tune attention-splits=x" 'attention-splits=x.*must be a whole number' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune attention-splits=x
  MOLE_TUNE=attention-splits=33 expect_fail "MOLE_TUNE=attention-splits=33 (the default of --tune)" \
    'attention-splits=33.*from 0 \(automatic\) to 32' "$M" run -m infer --prompt-ids 1 --backend vulkan -q
  expect_fail "--tune with an unknown key" "unknown key 'fast'" \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune fast=1
  expect_fail "--tune matvec=fast" 'matvec=fast.*one of auto, warp, staged' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune matvec=fast
  expect_fail "--tune matvec-loads=2" 'matvec-loads=2.*one of 1, 4, 8' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune matvec-loads=2
  expect_fail "--tune pdl=yes" 'pdl=yes.*one of off, on' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune pdl=yes
  expect_fail "--tune persistent=yes" 'persistent=yes.*one of off, on' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune persistent=yes
  expect_fail "--tune lut-copy=blit" 'lut-copy=blit.*one of auto, dma, kernel' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune lut-copy=blit
  expect_fail "--tune chain=yes" 'chain=yes.*one of off, on' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune chain=yes
  check "--tune chain=on: the same greedy text as pipeline barriers (the built-in model)" bash -c \
    "a=\$('$M' run --backend vulkan -p 'In the beginning' -n 12 --temp 0 2>/dev/null) &&
     b=\$('$M' run --backend vulkan -p 'In the beginning' -n 12 --temp 0 --tune chain=on 2>/dev/null) &&
     [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
  expect_fail "--tune attention-store=fused" 'attention-store=fused.*one of auto, pass' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune attention-store=fused
  expect_fail "--lut-read bogus" 'lut-read.*bogus|bogus.*lut-read|not in' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --lut-read bogus
  check "--tune and --lut-read choose the kernels and the read mode (--profile says which)" bash -c \
    "'$M' run -m infer --prompt-ids 1,2 -n 2 --backend vulkan --lut host --lut-read copy --profile \
       --tune subgroups=0,tiled-min-rows=1,attention-splits=4,lut-import=off 2>&1 >/dev/null |
     grep -q 'lut read     copy' && '$M' run -m infer --prompt-ids 1,2 -n 2 --backend vulkan --lut host --profile \
       --tune lut-import=off 2>&1 >/dev/null | grep -q 'copied (import turned off)'"
  check "--tune host-wait: a CPU driver blocks unless told to spin (--profile says which)" bash -c \
    "'$M' run -m infer --prompt-ids 1,2 -n 2 --backend vulkan --profile 2>&1 >/dev/null |
       grep -q '^host wait    block ' && '$M' run -m infer --prompt-ids 1,2 -n 2 --backend vulkan --profile \
       --tune host-wait=spin 2>&1 >/dev/null | grep -q '^host wait    spin up to 10 ms, then block '"
  expect_fail "--tune host-wait=poll" 'host-wait=poll.*one of auto, spin, block' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan -q --tune host-wait=poll
  # mole parity: ops of the CPU Vulkan driver against the reference, and the built-in model's logits; the
  # cpu-perturbed backend (router_lut 0.1% off on purpose) fails exactly that op's cases, with a non-zero exit.
  expect_ok "parity --backend vulkan --op embed -m infer" "$M" parity --backend vulkan --op embed -m infer
  check "parity prints OK lines and N/N passed" bash -c \
    "grep -q '^embed(D=37, F16): OK' '$T/out' && grep -q '^model(.*lut disk): OK' '$T/out' && grep -qE '^vulkan: ([0-9]+)/\\1 passed' '$T/out'"
  # 0.25 MiB holds this model's activations (tiny with -c 16 --ubatch-size 4) but not its 384 KiB table.
  expect_fail "--lut device on a device too small" 'lookup table.*MiB.*--lut host' \
    "$M" run -m infer --prompt-ids 1 --backend vulkan --lut device -c 16 --ubatch-size 4 -q --memory-limit 0.25
  MOLE_MEMORY_LIMIT_MB=0.25 expect_fail "MOLE_MEMORY_LIMIT_MB (the default of --memory-limit)" \
    'lookup table.*MiB.*--lut host' "$M" run -m infer --prompt-ids 1 --backend vulkan --lut device -c 16 \
    --ubatch-size 4 -q
else
  expect_fail "--backend vulkan (unavailable)" 'vulkan.*(not built|no Vulkan|unavailable|no .*device)' "$M" run -m infer --prompt-ids 1 --backend vulkan -q
fi
expect_ok "bench --backend cpu" "$M" bench -m infer --backend cpu --placements disk,host --prompt-tokens 4 -n 4 --json
check "bench --backend cpu: disk and host rows with speeds" pyjson "$T/out" \
  '[r["lut"] for r in j["placements"]] == ["disk", "host"] and all(r["decode_tokens_per_s"] > 0 for r in j["placements"])
   and j["tokenizer_mb_per_s"] > 0 and "driver" not in j'
# The host's launch time is part of each decode step's time (on the CPU backend launching is computing: most of it).
check "bench: the launch time per decode token is measured and within the step's time" pyjson "$T/out" \
  'all(0 < r["decode_launch_ms_per_token"] <= r["decode_ms_per_token"] for r in j["placements"])'
"$M" --version > "$T/version" 2>/dev/null
check "bench: the results name the commit mole was built from, as --version does" pyjson "$T/out" \
  '"mole, built from commit " + j["build"] == open("'"$T"'/version").read().strip()'
expect_fail "bench --placements bogus" 'placements.*bogus' "$M" bench -m infer --backend cpu --placements bogus -q
expect_fail "parity with a wrong op (cpu-perturbed, router_lut 0.1% off) fails" \
  'comparison\(s\) failed' "$M" parity --backend cpu-perturbed --tune perturb=router_lut --op router_lut
check "parity prints FAIL lines with the NMSE for the perturbed op" bash -c \
  "grep -q '^router_lut(E=3 layer=0, table F32 host, router BF16): FAIL NMSE=' '$T/out' && grep -q '^cpu-perturbed: 0/' '$T/out'"
expect_ok "parity of an unperturbed op on cpu-perturbed passes" "$M" parity --backend cpu-perturbed --tune perturb=router_lut --op matmul
expect_fail "parity --op bogus" 'op bogus.*no such op' "$M" parity --backend cpu-perturbed --op bogus
expect_fail "parity --backend bogus" 'unknown backend' "$M" parity --backend bogus --op argmax
expect_fail "parity --op ''" 'op.*is empty' "$M" parity --backend cpu-perturbed --op ''
expect_fail "--tune persistent=on,lut-copy=dma" 'persistent copies the table.s rows by kernel, so lut-copy=dma' \
  "$M" run -m infer --prompt-ids 1 -q --tune persistent=on,lut-copy=dma
NOSTDOUT=1 expect_fail "bench with nothing it can measure says why on stderr" \
  '^  disk: a training-form checkpoint has no table on disk' \
  "$M" bench -m train --backend cpu --placements disk --prompt-tokens 4 -n 4 -q
MOLE_VK_LOADER=/nonexistent/libvulkan.so.1 expect_fail "--backend vulkan without a Vulkan loader" \
  'vulkan.*(loader|not built)' "$M" run -m infer --prompt-ids 1 --backend vulkan -q
MOLE_VK_LOADER=/nonexistent/libvulkan.so.1 expect_ok "without a Vulkan loader, auto falls back to the CPU" \
  "$M" run -m infer --prompt-ids 1 -n 2 --temp 0; save_err noloader.err
check "auto: the notice says Vulkan has no loader" \
  grep -qE '^mole: --backend auto: .*vulkan: no Vulkan loader .*CPU reference$' noloader.err
expect_fail "--lut disk on a training-form checkpoint" 'train.*(convert|no table)' \
  "$M" run -m train --prompt-ids 1 --lut disk -q
expect_fail "logits --ids non-number" "'x'.*not a token id" "$M" logits -m infer --ids 1,x,3 -q
expect_fail "logits --ids >= vocab_size" "$V.*(vocab|range)" "$M" logits -m infer --ids 1,$V -q
NOSTDOUT=1 expect_fail "run --prompt-ids >= vocab_size (nothing printed)" "400.*(vocab|range)" \
  "$M" run -m infer --prompt-ids 1,400 -n 2 --temp 0 -q
expect_fail "run --prompt-ids past the tokenizer names the model vocab" "99999.*$V" \
  "$M" run -m infer --prompt-ids 1,99999 -n 2 --temp 0 -q
expect_ok "synth with max_position_embeddings 8" \
  "$M" synth --preset tiny -o short --form infer --set '{"vocab_size": 384, "max_position_embeddings": 8}' -q
NOSTDOUT=1 expect_fail "prompt longer than the context" '20 tokens.*8' \
  "$M" run -m short --prompt-ids "$(seq -s, 1 20)" -n 2 -q
# bench sizes its context to the prompt and -n, within the model's: what it cannot give is said, not done silently.
expect_ok "bench past the model's context" "$M" bench -m short --backend cpu --placements host --prompt-tokens 6 -n 5 \
  --json
save_err bench_short.err
check "bench past the model's context: says how many decode steps it timed" \
  grep -q 'more than the context of 8 positions.*2 decode steps are timed, not 5' bench_short.err
check "bench past the model's context: its row has those steps" pyjson "$T/out" 'j["placements"][0]["decode_steps"] == 2'
expect_ok "bench -c below the prompt and -n" "$M" bench -m short --backend cpu --placements host --prompt-tokens 3 -n 2 \
  -c 2 -q
save_err bench_c.err
check "bench -c below the prompt and -n: says the context it used" \
  grep -q -- '-c 2 is less than --prompt-tokens plus -n; the context is 5' bench_c.err
printf '\xff\xfe' >bad_utf8.txt
expect_fail "invalid UTF-8 prompt (-f FILE)" 'bad_utf8\.txt.*UTF-8|UTF-8.*bad_utf8\.txt' \
  "$M" run -m infer -f bad_utf8.txt -n 2 -q

# ---- bad input: model directory and config.json ---------------------------------------------------------------
expect_fail "missing -m directory" 'nodir.*(not a directory|does not exist|no such)' "$M" run -m nodir --prompt-ids 1 -q
expect_fail "run -m pointing at a file" 'infer/config\.json.*not a directory' \
  "$M" run -m infer/config.json --prompt-ids 1 -q
expect_fail "info -m pointing at a file" 'infer/config\.json: .*not a directory' "$M" info -m infer/config.json
mkdir -p empty
expect_fail "directory without config.json" 'empty/config\.json.*(cannot open|missing|no such)' \
  "$M" run -m empty --prompt-ids 1 -q
rm -rf badjson && cp -r infer badjson && echo '{"hidden_size": 64,' >badjson/config.json
expect_fail "config.json invalid JSON" 'badjson/config\.json.*not valid JSON' "$M" info -m badjson
mkcfg nohidden "del c['hidden_size']"
expect_fail "config.json missing hidden_size" 'config\.json.*missing.*hidden_size' "$M" run -m nohidden --prompt-ids 1 -q
mkcfg heads "c['hidden_size'] = 66"
expect_fail "hidden_size not divisible by heads" 'hidden_size.*divisible.*num_attention_heads' \
  "$M" run -m heads --prompt-ids 1 -q
mkcfg kvheads "c['num_key_value_heads'] = 3"
expect_fail "heads not a multiple of kv heads" 'num_attention_heads.*multiple.*num_key_value_heads' \
  "$M" run -m kvheads --prompt-ids 1 -q
mkcfg rope "c['rope_scaling'] = {'type': 'bogus', 'factor': 2.0}"
expect_fail "unknown rope_scaling type" 'rope_scaling.*bogus' "$M" run -m rope --prompt-ids 1 -q
mkcfg negvocab "c['vocab_size'] = -5"
expect_fail "negative vocab_size" 'vocab_size.*-5' "$M" run -m negvocab --prompt-ids 1 -q
mkcfg ffn "c['intermediate_size'] = 256"
expect_fail "tensor shape contradicts config.json" "tensor '[^']+'.*shape" "$M" run -m ffn --prompt-ids 1 -q

# ---- bad input: model.safetensors -----------------------------------------------------------------------------
mkst cuthead cut 100
expect_fail "safetensors cut in the header" 'cuthead/model\.safetensors.*(truncated|past the end)' \
  "$M" run -m cuthead --prompt-ids 1 -q
mkst cutdata cut-data
expect_fail "safetensors cut in the data" 'cutdata/model\.safetensors.*truncated' "$M" run -m cutdata --prompt-ids 1 -q
mkst hlen hlen
expect_fail "header length larger than the file" 'hlen/model\.safetensors.*header length.*past the end' \
  "$M" run -m hlen --prompt-ids 1 -q
mkst i8 dtype model.norm.weight I8
expect_fail "unknown dtype I8 in the header" "model\.norm\.weight.*I8" "$M" run -m i8 --prompt-ids 1 -q
mkst overlap overlap model.embed_tokens.weight
expect_fail "overlapping data_offsets" "(embed_tokens|lm_head).*overlap" "$M" run -m overlap --prompt-ids 1 -q
mkst missing drop lm_head.weight
expect_fail "missing tensor lm_head.weight" "missing tensor 'lm_head\.weight'" "$M" run -m missing --prompt-ids 1 -q
mkst extra extra model.bogus.weight
expect_fail "extra unexpected tensor" "unexpected tensor 'model\.bogus\.weight'" "$M" run -m extra --prompt-ids 1 -q
# A NaN in the weights (token 7's embedding row): a sequence that holds token 7 has NaN logits from there on, so
# there is no next token to pick or draw: an error naming the position, on the CPU and on Vulkan (greedy on the
# device: its Argmax gives -1); mole logits still prints them, as Python's json module writes NaN.
mkst nanemb nanrow model.embed_tokens.weight 7
RC_IS=1 expect_fail "NaN logits: greedy is an error naming the position" 'NaN logits at position 1' \
  "$M" run -m nanemb --backend cpu --prompt-ids 7,1 -n 4 --temp 0 -q
RC_IS=1 expect_fail "NaN logits: sampling is an error naming the position" 'NaN logits at position 2' \
  "$M" run -m nanemb --backend cpu --prompt-ids 1,2,7 -n 4 --temp 0.8 --seed 1 -q
expect_ok "NaN logits: mole logits prints them" "$M" logits -m nanemb --backend cpu --ids 1,7 -q
save nan_logits.json
check "NaN logits: the clean row numbers, the NaN row NaN (Python's json reads it)" pyjson nan_logits.json \
  "all(x == x for x in j['logits'][0]) and all(x != x for x in j['logits'][1])"
if "$M" devices | grep -E '^vulkan +available' > /dev/null; then
  RC_IS=1 expect_fail "NaN logits: greedy on Vulkan (the device's argmax) is the same error" \
    'NaN logits at position 1' "$M" run -m nanemb --backend vulkan --prompt-ids 7,1 -n 4 --temp 0 -q
fi
rm -rf badtok && cp -r infer badtok && head -c 5000 infer/tokenizer.json >badtok/tokenizer.json
expect_fail "corrupt tokenizer.json with -p" 'badtok/tokenizer\.json.*not valid JSON' \
  "$M" run -m badtok -p "Hello" -n 2 -q

# ---- hostile input (issue 13): each class must fail cleanly, quickly, naming the flag or file -----------------
# Malformed flags: exit code 2, the flag named, nothing on stdout.
for args in "-t 100000|--threads.*100000" "-n -5|n-predict.*-5.*until end of sequence" "-n 1e12|n-predict.*1e12" \
  "-n 99999999999|n-predict.*99999999999" "--temp nan|--temp.*nan.*finite" "--temp -1|--temp.*-1" \
  "--temp inf|--temp.*inf" "--top-p nan|--top-p.*nan" "--min-p 1.5|--min-p.*1.5" \
  "--repeat-penalty nan|--repeat-penalty.*nan" "--repeat-penalty 0|--repeat-penalty.*0" \
  "--repeat-last-n -2|--repeat-last-n.*-2" "--top-k -1|--top-k.*-1" "--top-k 1.5|top-k.*1.5" \
  "--seed -2|--seed.*-2" "-c 99999999|--ctx-size.*99999999" "-c nan|--ctx-size.*nan" \
  "--ubatch-size 0|--ubatch-size.*0" "--ubatch-size 1e9|--ubatch-size.*1e9" \
  "--ubatch-size 65537|--ubatch-size.*65537.*65536" "--device -2|--device.*-2"; do
  RC_IS=2 NOSTDOUT=1 expect_fail "run ${args%%|*}" "${args#*|}" "$M" run -m infer --prompt-ids 1 -q ${args%%|*}
done
RC_IS=2 expect_fail "convert -t -1" '--threads.*-1' "$M" convert -m train -o c_threads -t -1 -q
RC_IS=2 expect_fail "bench --prompt-tokens 0" '--prompt-tokens.*0' "$M" bench -m infer --prompt-tokens 0 -q
RC_IS=2 expect_fail "synth --seed -5" 'seed.*-5' "$M" synth -o s_seed --seed -5 -q
expect_ok "--help exits 0" "$M" run --help
# The commit mole was built from: a short hash (with -dirty for uncommitted changes), or unknown outside a checkout.
expect_ok "--version exits 0" "$M" --version
check "--version names the commit mole was built from" grep -qE '^mole, built from commit ([0-9a-f]{12}(-dirty)?|unknown)$' "$T/out"
# Too many threads for the system: an error, not an uncaught std::system_error (under a 2 GB address-space limit,
# which the sanitizers' shadow memory cannot start in).
if ldd "$M" | grep -q libasan; then
  echo "skipped -t 1024 under ulimit -v: a sanitizer build cannot start with its address space limited"
else
  expect_fail "-t 1024 beyond the system's threads" 'cannot start 1024 threads' \
    bash -c "ulimit -v 2000000 && exec \"$M\" run -m infer --prompt-ids 1 -n 1 -q -t 1024"
fi

# Prompts that cannot run are refused before anything is printed.
$PY -c "open('big_prompt.txt', 'w').write('word ' * 2000000)"
NOSTDOUT=1 WITHIN=60 expect_fail "10 MB prompt with -c 64: nothing printed" '200000[01] tokens.*context holds 64' \
  "$M" run -f big_prompt.txt -c 64 -n 2 -q
NOSTDOUT=1 expect_fail "prompt the model's vocabulary lacks: nothing printed" \
  "-p: the tokenizer gives token id [0-9]+, outside the model's vocabulary \[0, $V\)" \
  "$M" run -m infer -p "Hello world" -n 2 -q
$PY -c "open('marks.txt', 'w', encoding='utf-8').write('a' + '\u0301\u0316' * 80000)"
expect_ok "160,000 alternating combining marks tokenize within 20 s (105 s before)" \
  timeout 20 "$M" tokenize --tokenizer "$NEOX" --file marks.txt
mkdir -p prompt_dir
expect_fail "-f DIR says it is a directory" 'prompt_dir: is a directory' "$M" run -m infer -f prompt_dir -n 2 -q
expect_fail "tokenize --file DIR says it is a directory" 'prompt_dir: is a directory' \
  "$M" tokenize --tokenizer "$NEOX" --file prompt_dir
expect_fail "bench --text-file DIR says it is a directory" 'prompt_dir: is a directory' \
  "$M" bench -m infer --text-file prompt_dir -q

# Deeply nested JSON in every JSON file mole reads.
deep() { $PY -c "print('{\"$1\": ' + '[' * 100000 + ']' * 100000 + '}')"; }
rm -rf deepcfg && cp -r infer deepcfg && $PY - deepcfg/config.json <<'PYEOF'
import sys
p = sys.argv[1]; t = open(p).read().rstrip()
open(p, 'w').write(t[:-1] + ', "task_specific_params": ' + '[' * 100000 + ']' * 100000 + '}')
PYEOF
expect_fail "config.json nested 100,000 deep" 'deepcfg/config\.json.*128 levels' "$M" info -m deepcfg
rm -rf ptbin && mkdir ptbin && cp infer/config.json ptbin/ && printf 'not read' > ptbin/pytorch_model.bin
expect_fail "a checkpoint in PyTorch's pickle format only: says mole reads safetensors and how to get them" \
  "ptbin: no safetensors checkpoint found, only PyTorch's pytorch_model.bin.*safe_serialization=True" \
  "$M" info -m ptbin
rm -rf moe && cp -r train moe && $PY "$T/st.py" moe moe/model.safetensors
expect_fail "a Mixture-of-Experts checkpoint (the authors' MoE baseline) is named as such" \
  'moe: a Mixture-of-Experts checkpoint .*mole runs MoLE and dense checkpoints only' "$M" info -m moe
mkst deepst deep
expect_fail "safetensors header nested 100,000 deep" 'deepst/model\.safetensors.*128 levels' "$M" info -m deepst
rm -rf deepidx && cp -r infer deepidx && mv deepidx/model.safetensors deepidx/model-1.safetensors && deep weight_map \
  >deepidx/model.safetensors.index.json
expect_fail "model.safetensors.index.json nested 100,000 deep" 'deepidx/model\.safetensors\.index\.json.*128 levels' \
  "$M" info -m deepidx
rm -rf deeptok && cp -r infer deeptok && deep model >deeptok/tokenizer.json
expect_fail "tokenizer.json nested 100,000 deep" 'deeptok/tokenizer\.json.*128 levels' "$M" run -m deeptok -p hi -q
deep eos_token >deeptok/tokenizer_config.json && cp infer/tokenizer.json deeptok/
expect_fail "tokenizer_config.json nested 100,000 deep" 'deeptok/tokenizer_config\.json.*128 levels' \
  "$M" run -m deeptok -p hi -q
RC_IS=1 expect_fail "synth --set nested 60,000 deep (near the 128 KiB argument limit)" '--set.*128 levels' \
  "$M" synth -o s_deep --set "$($PY -c "print('{\"a\": ' + '[' * 60000 + ']' * 60000 + '}')")" -q

# A header of 100,000 more tensors is read in linear time (it took a minute): the extra tensors are then refused.
mkst many many
WITHIN=30 expect_fail "100,000 extra tensors, refused in seconds" "unexpected tensor 'extra\.[0-9]+'" "$M" info -m many

# Symbolic-link loops where model files should be: errors naming the path, not std::filesystem aborts.
loop() { rm -rf "$1" && ln -s "$(basename "$1")" "$1"; }
loop selfloop
expect_fail "-m is a symbolic-link loop" 'selfloop.*symbolic links' "$M" run -m selfloop --prompt-ids 1 -q
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  rm -rf "loop_$f" && cp -r infer "loop_$f" && loop "loop_$f/$f"
  expect_fail "$f is a symbolic-link loop" "loop_$f/$f.*symbolic links" "$M" run -m "loop_$f" -p Hello -n 2 -q
done
loop loop_prompt.txt
expect_fail "-f is a symbolic-link loop" 'loop_prompt\.txt.*symbolic links' "$M" run -m infer -f loop_prompt.txt -q
expect_fail "--tokenizer is a symbolic-link loop" 'loop_prompt\.txt.*symbolic links' \
  "$M" tokenize --tokenizer loop_prompt.txt --text hi

# Shard names that leave the model directory: refused, naming the index and the entry, though the file exists.
rm -rf escape && mkdir escape && cp infer/config.json escape/ && cp infer/model.safetensors outside.safetensors
$PY - escape/model.safetensors.index.json outside.safetensors <<'PYEOF'
import json, struct, sys
b = open(sys.argv[2], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
names = [k for k in json.loads(b[8:8 + n]) if k != '__metadata__']
json.dump({'weight_map': {k: '../outside.safetensors' for k in names}}, open(sys.argv[1], 'w'))
PYEOF
expect_fail "shard ../outside.safetensors" "escape/model\.safetensors\.index\.json: weight_map entry for tensor '.*'\.\./outside\.safetensors'.*inside the checkpoint directory" \
  "$M" info -m escape
sed -i "s#\.\./outside#$T/outside#g" escape/model.safetensors.index.json
expect_fail "shard by absolute path" "index\.json: weight_map entry .*absolute path" "$M" info -m escape

# Sizes from config.json: out of range is named as the field, never an out-of-memory.
mkcfg ropebig "c['rope_scaling'] = {'type': 'linear', 'factor': 1e300}"
expect_fail "rope_scaling.factor 1e300" 'rope_scaling\.factor 1e\+300 is out of range' "$M" run -m ropebig --prompt-ids 1 -q
mkcfg ropeint "c['max_position_embeddings'] = 16777216; c['rope_scaling'] = {'type': 'dynamic', 'factor': 200.0}"
expect_fail "max_position_embeddings x factor past int" 'rope_scaling\.factor 200.* out of range' \
  "$M" run -m ropeint --prompt-ids 1 -q
mkcfg maxpos "c['max_position_embeddings'] = 2147483647"
expect_fail "max_position_embeddings 2^31-1" 'max_position_embeddings \(2147483647\) is more than' \
  "$M" run -m maxpos --prompt-ids 1 -q

# tokenizer.json with impossible ids.
mktok() {  # mktok DIR STMT: copy infer/ to DIR and run STMT on tokenizer.json's dict `t`
  rm -rf "$1" && cp -r infer "$1"
  $PY - "$1/tokenizer.json" "$2" <<'PYEOF'
import json, sys
p = sys.argv[1]; t = json.load(open(p)); exec(sys.argv[2]); json.dump(t, open(p, 'w'))
PYEOF
}
mktok dupid "t['model']['vocab']['!'] = t['model']['vocab']['\"']"
expect_fail "tokenizer.json: duplicate id" "dupid/tokenizer\.json: model\.vocab token .* already the id of token" \
  "$M" run -m dupid -p hi -q
mktok bigid "t['model']['vocab']['!'] = 2**32"
expect_fail "tokenizer.json: id 2^32" 'bigid/tokenizer\.json: model\.vocab token .* outside \[0, 2\^31\)' \
  "$M" run -m bigid -p hi -q
mktok addedid "t['added_tokens'].append({'id': 60000, 'content': '<x>'})"
expect_fail "tokenizer.json: added token past the vocabulary" 'addedid/tokenizer\.json: added token "<x>" has id 60000, outside the vocabulary' \
  "$M" run -m addedid -p hi -q

# ---- bad input: convert and synth (no complete-looking output may be left behind) -----------------------------
mkdir -p full && echo keep >full/keep.txt && snapshot full >full.before
expect_fail "convert into an existing non-empty dir" 'full.*not empty' "$M" convert -m train -o full -q
check "convert left the existing dir untouched" cmp -s full.before <(snapshot full)
check "convert into an existing dir left no .partial" [ ! -e full.partial ]
OUTDIR=c_infer expect_fail "convert of an inference-form dir" 'infer.*already in inference form' \
  "$M" convert -m infer -o c_infer -q
# A disk too small for the output (a tmpfs mounted in a user namespace): convert fails at once, before it computes
# the table, says what it needs and what is free, and leaves nothing on the disk. At 64 KiB the tokenizer's copy
# fails (written first); with room for the small files but half the weights' file, the weights' reservation does.
mkdir -p small_disk
if unshare -rm sh -c 'mount -t tmpfs -o size=64k tmpfs small_disk' 2>/dev/null; then
  # small_convert.sh KIB: convert train onto a KIB KiB tmpfs; exit 4 if anything is left on it
  cat > small_convert.sh <<'EOF'
unshare -rm sh -c 'mount -t tmpfs -o size=${3}k tmpfs "$1" || exit 3; "$2" convert -m train -o "$1/out" -q; rc=$?
  [ -z "$(ls -A "$1")" ] || { echo "left behind: $(ls -A "$1")" >&2; exit 4; }; exit $rc' sh small_disk "$M" "$1"
EOF
  RC_IS=1 WITHIN=20 expect_fail "convert onto a 64 KiB disk: the first copy fails at once, with the sizes" \
    'out\.partial/tokenizer\.json: cannot copy .*the disk has .* free, the file is .*MiB; free space or write' \
    env M="$M" bash small_convert.sh 64
  small_kib=$(( ($(du -sk --exclude=model.safetensors conv | cut -f1) + $(du -k conv/model.safetensors | cut -f1) / 2) ))
  RC_IS=1 WITHIN=20 expect_fail "convert onto a disk too small for the weights: fails before the table, with sizes" \
    'out\.partial/model\.safetensors\.tmp: cannot reserve .* free\): free space or write to another disk' \
    env M="$M" bash small_convert.sh "$small_kib"
else
  echo "skip convert onto a disk too small (no tmpfs can be mounted in a user namespace here)"
fi
OUTDIR=c_dense expect_fail "convert of a dense dir" 'dense.*no experts' "$M" convert -m dense -o c_dense -q
OUTDIR=c_cut expect_fail "convert of a truncated checkpoint" 'truncated' "$M" convert -m cutdata -o c_cut -q
OUTDIR=s_bogus expect_fail "synth --preset bogus" 'preset.*bogus' "$M" synth --preset bogus -o s_bogus -q
OUTDIR=s_json expect_fail "synth --set 'not json'" '--set.*not json' "$M" synth --preset tiny -o s_json --set 'not json' -q
OUTDIR=s_heads expect_fail "synth --set with an invalid config" 'hidden_size.*divisible' \
  "$M" synth --preset tiny -o s_heads --set '{"hidden_size": 66}' -q

# ---- interruption: Ctrl-C (SIGINT) or SIGTERM ends a long job within a step, cleanly -----------------------------
# expect_interrupted NAME SIGNAL READY CMD...: starts CMD, waits until READY (a shell test) holds (at most 60 s) or
# 2 s, sends SIGNAL, and expects CMD to end within 30 s (with WITHIN=S set, S s) with exit 128 + the signal's number
# (as a shell reports a process its signal ended) and "interrupted" in its output, its own message, not the
# signal's default action.
expect_interrupted() {
  local name=$1 sig=$2 ready=$3 i; shift 3
  "$@" >"$T/out" 2>"$T/err" &
  local pid=$!
  for ((i = 0; i < 600; i++)); do eval "$ready" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  kill -s "$sig" $pid 2>/dev/null
  local t0=$SECONDS
  for ((i = 0; i < 300; i++)); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pid 2>/dev/null; then
    kill -KILL $pid; wait $pid; fail "$name" "still running 30 s after SIG$sig"; return
  fi
  wait $pid
  RC=$?
  local want=$((128 + $(kill -l "$sig")))
  if [ -n "${WITHIN:-}" ] && [ $((SECONDS - t0)) -gt "$WITHIN" ]; then
    fail "$name" "ended $((SECONDS - t0)) s after SIG$sig, more than $WITHIN s"
  elif [ $RC -ne $want ]; then fail "$name" "exit $RC, expected $want"
  elif ! grep -q 'interrupted' "$T/err" "$T/out"; then
    fail "$name" "no 'interrupted' in its output (the signal's default action?)"
  else pass "$name"; fi
}
# ---- outputs that cannot be written, files that are not files, values from the environment ------------------------
if [ -w /dev/full ]; then
  expect_fail "stdout on a full disk is an error, not exit 0 with cut-off output" 'writing to standard output failed' \
    bash -c "'$M' logits -m infer --ids 1,2,3 > /dev/full"
fi
# -o through a symbolic link writes where it leads (the link stays); into a FIFO, written to, not replaced.
ln -s bench_real.json bench_link.json
expect_ok "bench -o a symbolic link" "$M" bench -m infer --backend cpu --placements host --prompt-tokens 4 -n 2 -q \
  -o bench_link.json
check "bench -o a link: the link stays a link, its target holds the results" bash -c \
  "test -L bench_link.json && $PY -c 'import json; json.load(open(\"bench_real.json\"))'"
mkfifo bench_fifo
(timeout 60 cat bench_fifo > bench_fifo.got) &
expect_ok "bench -o a FIFO" "$M" bench -m infer --backend cpu --placements host --prompt-tokens 4 -n 2 -q -o bench_fifo
wait
check "bench -o a FIFO: still a FIFO, and its reader got the results" bash -c \
  "test -p bench_fifo && $PY -c 'import json; json.load(open(\"bench_fifo.got\"))'"
# A model's files must be regular files: a FIFO would block mole until a writer came.
rm -rf fifo_cfg && cp -r infer fifo_cfg && rm fifo_cfg/config.json && mkfifo fifo_cfg/config.json
WITHIN=20 expect_fail "config.json that is a FIFO: an error at once, not a hang" 'config.json: is a FIFO, not a regular file' \
  "$M" info -m fifo_cfg
rm -rf fifo_tok && cp -r infer fifo_tok && rm fifo_tok/tokenizer.json && mkfifo fifo_tok/tokenizer.json
WITHIN=20 expect_fail "tokenizer.json that is a FIFO" 'tokenizer.json: is a FIFO' "$M" run -m fifo_tok -p hello -n 1
rm -rf dir_st && cp -r infer dir_st && rm dir_st/model.safetensors && mkdir dir_st/model.safetensors
expect_fail "model.safetensors that is a directory is named as such" 'model.safetensors: is a directory, not a file' \
  "$M" info -m dir_st
rm -rf link_st && cp -r infer link_st && rm link_st/model.safetensors && ln -s blob-gone link_st/model.safetensors
expect_fail "model.safetensors that is a dangling link is named as such" \
  'model.safetensors: is a symbolic link to blob-gone, which does not exist' "$M" info -m link_st
# --router-trace: a run that fails leaves an existing file as it was; a folder that does not exist fails at once.
echo precious > trace_keep.jsonl
expect_fail "run --router-trace on a dense model (again)" 'dense' "$M" run -m dense --prompt-ids 1 -q \
  --router-trace trace_keep.jsonl
check "a failed run leaves the --router-trace file as it was" grep -qx precious trace_keep.jsonl
expect_fail "run --router-trace ''" 'router-trace.*is empty' "$M" run -m infer --prompt-ids 1 -q --router-trace ''
expect_fail "run -p ''" 'prompt.*is empty' "$M" run -m infer -p '' -q
expect_ok "tokenize --text '' (no ids)" "$M" tokenize --tokenizer "$NEOX" --text ''
check "tokenize --text '' prints an empty list" bash -c "[ \"\$(cat '$T/out')\" = '' ]"
expect_fail "tokenize of invalid UTF-8 names the flag" '^mole: error: --text: .*invalid UTF-8' \
  "$M" tokenize --tokenizer "$NEOX" --text $'\xff'
expect_ok "detokenize with an id past the tokenizer's vocabulary" "$M" detokenize -m infer --ids 1,99999999,2
save_err detok.err
check "detokenize says which ids decoded to nothing" grep -q 'ids 99999999: not in the tokenizer.s vocabulary' detok.err
# A bad value from the environment: the message names the variable.
MOLE_DEVICE=abc expect_fail "MOLE_DEVICE=abc names the variable" 'MOLE_DEVICE=abc in the environment gives --device' \
  "$M" run -m infer --prompt-ids 1 -q
MOLE_DEVICE=abc expect_fail "MOLE_DEVICE=abc overridden by --device: no note on the variable" 'device' \
  "$M" run -m infer --prompt-ids 1 -q --device=xyz
save_err env_typed.err
check "the note names the variable only where no flag was typed" bash -c "! grep -q MOLE_DEVICE env_typed.err"
MOLE_MEMORY_LIMIT_MB=nan expect_fail "MOLE_MEMORY_LIMIT_MB=nan is not a number of MiB" "'nan' is not a finite number" \
  "$M" run -m infer --prompt-ids 1 -q
expect_fail "--memory-limit nan" "memory-limit.*'nan' is not a finite number" "$M" run -m infer --prompt-ids 1 -q \
  --memory-limit nan
# A damaged added_tokens entry is named by its index.
$PY - "$NEOX" bad_added.json <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1])); j["added_tokens"] = [{"id": 5}]; json.dump(j, open(sys.argv[2], "w"))
PYEOF
expect_fail "added_tokens entry without content" 'added_tokens\[0\] is not an object with a "content" string' \
  "$M" tokenize --tokenizer bad_added.json --text hi
# convert: a folder OUT.partial that mole did not leave is the user's: an error, and it stays; -o a symbolic link to an
# empty folder fills the folder and keeps the link.
mkdir -p mine.partial && echo mine > mine.partial/mine.txt
expect_fail "convert into OUT whose OUT.partial is not mole's" 'mine.partial: exists and was not left by mole' \
  "$M" convert -m train -o mine -q
check "the user's OUT.partial is kept" grep -qx mine mine.partial/mine.txt
mkdir conv_target && ln -s conv_target conv_link
expect_ok "convert -o a symbolic link to an empty folder" "$M" convert -m train -o conv_link -q
check "convert -o a link: the link stays, the folder holds the checkpoint (without mole's marker)" bash -c \
  "test -L conv_link && test -f conv_target/config.json && test ! -e conv_target/.mole-partial"
# parity: a backend named outright that is not available here compared nothing, which is not a pass.
if ! "$M" devices | grep -E '^cuda +available' > /dev/null; then
  expect_fail "parity --backend cuda without a CUDA device" 'cuda (is not available here|: unknown backend)' \
    "$M" parity --backend cuda --op argmax
fi
if "$M" devices | grep -E '^vulkan +available' > /dev/null; then
  mkfifo cache_fifo
  expect_ok "--pipeline-cache a FIFO: neither read nor replaced" "$M" run -m infer --prompt-ids 1 -n 1 -q \
    --backend vulkan --pipeline-cache cache_fifo
  check "--pipeline-cache a FIFO: still a FIFO" test -p cache_fifo
  expect_fail "--tune lut-chunk-bytes=1 names the flag, not the device" \
    'lut-chunk-bytes=1: the table.s buffers need at least [0-9]+ bytes' \
    "$M" run -m infer --prompt-ids 1 -q --backend vulkan --lut host --tune lut-chunk-bytes=1
  expect_fail "convert --backend vulkan out of memory: the hint fits convert" 'convert on the CPU \(--backend cpu\)' \
    "$M" convert -m train -o conv_oom --backend vulkan --memory-limit 0.01 -q
fi

expect_ok "synth tiny with a 100,000-token context" \
  "$M" synth --preset tiny -o longctx --form infer --set '{"vocab_size": 384, "max_position_embeddings": 100000}' -q
# Ready once generated text is on stdout (more words than the prompt's): the check below must not race the first token.
expect_interrupted "run: SIGINT stops the generation" INT '[ "$(wc -w < "$T/out")" -gt 8 ]' \
  "$M" run -m longctx --backend cpu --prompt-ids 1,2,3 -n 100000 -c 100000 --ignore-eos --temp 0
cp "$T/out" run_int.out && cp "$T/err" run_int.err
check "run: SIGINT keeps what was generated" [ "$(wc -w < run_int.out)" -gt 8 ]
check "run: SIGINT's summary says why it stopped" grep -q 'stop: interrupted' run_int.err
# A long prompt in one step (32,768 tokens: about half a minute of attention on 2 cores) stops within an op, not at
# the step's end.
$PY -c "open('long_prompt.txt', 'w').write(' a' * 32768)"
WITHIN=5 expect_interrupted "run: SIGINT during a long prompt's step ends it within seconds" INT 'sleep 2' \
  "$M" run -m longctx --backend cpu -f long_prompt.txt --ubatch-size 32768 -c 40000 -n 4
save_err long_int.err
check "run: a prompt cut short says so in the summary" grep -q 'prompt 32768 tokens, stopped after .*stop: interrupted' \
  long_int.err
expect_interrupted "run --json: SIGTERM still writes the JSON" TERM 'sleep 2' \
  "$M" run -m longctx --backend cpu --prompt-ids 1,2,3 -n 100000 -c 100000 --ignore-eos --temp 0 --json
save run_int.json
check "run --json: the interrupted run's JSON is whole" pyjson run_int.json "j['stop_reason'] == 'interrupted'"
expect_interrupted "run: SIGHUP (a closed terminal) stops the generation too" HUP 'sleep 2' \
  "$M" run -m longctx --backend cpu --prompt-ids 1,2,3 -n 100000 -c 100000 --ignore-eos --temp 0
# -f - is standard input, as in most tools.
expect_ok "run -f - reads the prompt from standard input" \
  bash -c "printf 'a b' | '$M' run -m infer --backend cpu -f - -n 2 --temp 0 --json -q"
check "run -f -: the prompt is what came in" pyjson "$T/out" 'j["prompt_ids"] == [66, 270]'
# -f a FIFO nobody writes to: mole waits for a writer, and one SIGTERM ends the wait (a blocking open or read would
# restart after the signal and wait on).
mkfifo prompt_fifo
expect_interrupted "run -f a FIFO with no writer: one SIGTERM ends the wait" TERM 'sleep 1' \
  "$M" run -m infer --backend cpu -f prompt_fifo -n 2
save_err fifo_int.err
check "run -f a FIFO: the message names the flag and the file" grep -q -- '-f prompt_fifo: interrupted while waiting' \
  fifo_int.err
(sleep 1; printf 'a b' > prompt_fifo) &  # ids within the test model's 384
expect_ok "run -f a FIFO: reads what its writer sends" "$M" run -m infer --backend cpu -f prompt_fifo -n 2 -q
expect_interrupted "bench: SIGINT ends it, writing no -o file" INT 'sleep 2' \
  "$M" bench -m longctx --backend cpu --prompt-tokens 16 -n 100000 -c 100000 --placements host -o bench_int.json
check "bench: no JSON after SIGINT" [ ! -e bench_int.json ]
# The CPU backend's parity ends within 2 s; the CPU Vulkan driver's takes minutes.
if "$M" devices | grep -E '^vulkan +available' > /dev/null; then
  expect_interrupted "parity: SIGINT ends it between cases" INT '[ -s "$T/out" ]' "$M" parity --backend vulkan
else
  echo "skip parity: SIGINT ends it between cases (no Vulkan device to run a long parity on)"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
