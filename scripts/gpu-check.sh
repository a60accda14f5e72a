#!/usr/bin/env bash
# The GPU check, in one command on a machine with an NVIDIA GPU, from a bundle made by scripts/gpu-bundle.sh:
#   gpu-check.sh [--dry-run] [--budget SECONDS] OUTDIR
# First it checks that `mole devices` sees an NVIDIA GPU (else it stops with a one-line reason and exit 1). Then,
# in order of value, each step under its own time limit and all of them within the budget (default 450 s):
# the built-in model reparameterized on the GPU and its greedy tokens compared with PyTorch's, `mole parity` (every
# op case, and the built-in model's logits, against the CPU reference, validation on), the test suite's GPU cases
# (--require-device: a case that finds no device fails), a per-op profile, the benchmarks of the placements and of
# the ways to cut a decode step's launches, compute-sanitizer on CUDA, and the other benchmarks, on every GPU backend
# side by side. It writes at most 6 files into OUTDIR, the summary first:
#   1-summary.txt 2-devices.txt 3-tests.txt 4-run.txt 5-bench.txt 6-bench.json
# and prints the summary as its last lines. Exit 0 only when every step that ran passed; a step the budget cut short
# says CUT (its results missing, none wrong), not a failure. --budget defaults to 450 s (1,350 s, and three times each
# step's limit, in a dry run).
# --dry-run runs the same steps on a CPU Vulkan driver (lavapipe) with the `tiny` preset and short runs: CI runs it
# so that this script cannot rot between GPU loans. There parity and the test suite run a few cases each (the same
# CI run's `backends` test runs them all on that driver), the kernel variants 8 decode steps each.
# `gpu-check.sh --exec CMD [ARG...]` runs one command in the check's environment instead ($M is mole, $T
# mole_tests), to look into a failed step. Run from a checkout (scripts/gpu-check.sh), it runs the bundle in
# .gl/mole-gpu.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$here/bin/mole.gz" ] && [ ! -x "$here/bin/mole" ]; then
  bundle=$(realpath -m "$here/../.gl/mole-gpu")
  [ -x "$bundle/gpu-check.sh" ] && exec "$bundle/gpu-check.sh" "$@"
  echo "gpu-check.sh: no bundle at $bundle: make one with scripts/gpu-bundle.sh, then run BUNDLE/gpu-check.sh" >&2
  exit 1
fi
B=$here
# The binaries travel gzipped: unpacked beside the .gz (share/mole/ must stay where they find it).
for gz in "$B"/bin/*.gz; do
  [ -e "$gz" ] || continue
  if [ ! -x "${gz%.gz}" ] || [ "$gz" -nt "${gz%.gz}" ]; then
    gunzip -c "$gz" > "${gz%.gz}.tmp" && chmod +x "${gz%.gz}.tmp" && mv "${gz%.gz}.tmp" "${gz%.gz}" || exit 1
  fi
done
dry=0 budget="" out="" run=()
while [ $# -gt 0 ]; do
  case "$1" in
    --exec) shift; run=("$@"); [ ${#run[@]} -gt 0 ] || { echo "gpu-check.sh: --exec needs a command" >&2; exit 2; }
      break ;;
    --dry-run) dry=1; shift ;;
    --budget) budget=${2:?--budget needs seconds}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu-check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
[ -n "$out" ] || [ ${#run[@]} -gt 0 ] || { echo "usage: gpu-check.sh [--dry-run] [--budget SECONDS] OUTDIR" >&2; exit 2; }
# The dry run's CPU driver is slow (a 2-core CI machine runs it beside other tests): three times the limits.
scale=$([ "$dry" = 1 ] && echo 3 || echo 1)
budget=${budget:-$((450 * scale))}
case "$budget" in ''|*[!0-9]*) echo "gpu-check.sh: --budget $budget: not a number of seconds" >&2; exit 2 ;; esac
t_start=$(date +%s)
deadline=$((t_start + budget))

# Scratch: models, the unpacked validation layer, bench JSON before merging. Removed at exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/mole-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lib" "$work/layers" "$work/models"

# Libraries from the bundle that this machine lacks (never shadowing its own), and the bundle's validation layer.
ldcache=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null)
for lib in "$B"/lib/*.so.[0-9]; do
  lib=$(basename "$lib")
  if ! grep -q "$lib " <<< "$ldcache"; then ln -s "$B/lib/$lib" "$work/lib/$lib"; fi
done
gunzip -c "$B/lib/libVkLayer_khronos_validation.so.gz" > "$work/lib/libVkLayer_khronos_validation.so"
sed "s|\"library_path\": *\"[^\"]*\"|\"library_path\": \"$work/lib/libVkLayer_khronos_validation.so\"|" \
  "$B/lib/VkLayer_khronos_validation.json" > "$work/layers/VkLayer_khronos_validation.json"
export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VK_LAYER_PATH="$work/layers"
# NVIDIA's Vulkan driver and its EGL vendor file where a container mounts the driver (/usr/local/nvidia).
nvidia=/usr/local/nvidia/share
if [ "$dry" = 0 ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia/vulkan/icd.d/nvidia_icd.json" ]; then
  export VK_DRIVER_FILES="$nvidia/vulkan/icd.d/nvidia_icd.json"
fi
if [ "$dry" = 0 ] && [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$nvidia/glvnd/egl_vendor.d/10_nvidia.json" ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES="$nvidia/glvnd/egl_vendor.d/10_nvidia.json"
fi
export M="$B/bin/mole" T="$B/bin/mole_tests" B work
export XDG_CACHE_HOME="$work/cache"  # pipeline caches and read-mode records start empty and stay behind
if [ ${#run[@]} -gt 0 ]; then
  "${run[@]}"
  exit $?
fi
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
rm -f "$out"/[1-6]-*.txt "$out"/6-bench.json

# Sizes: the real check measures the published 160M shapes; the dry run the `tiny` preset, briefly.
if [ "$dry" = 1 ]; then
  export MOLE_PRESET=tiny DENSE_PRESET=tiny DENSE_FORM=dense PROMPT=32 DECODE=32 LONG_PROMPT=300 KERNEL_PROMPT=128 \
    KERNEL_DECODE=8 SHORT_PROMPT=16 SHORT_DECODE=32 PARITY_OPS="--op router_probs" \
    TEST_CASES='vk-runtime: instance with validation*,vulkan: step_argmax*'
else
  export MOLE_PRESET=mole-160m-4e DENSE_PRESET=dense-160m DENSE_FORM=auto PROMPT=256 DECODE=256 LONG_PROMPT=1900 \
    KERNEL_PROMPT=512 KERNEL_DECODE=64 SHORT_PROMPT=32 SHORT_DECODE=200 PARITY_OPS="" \
    TEST_CASES='vulkan*,vk-runtime*,backends*,cuda*'
fi

summary=$out/1-summary.txt
failed=0
{
  echo "mole GPU check$([ "$dry" = 1 ] && echo " (dry run: CPU Vulkan driver, tiny preset)")"
  echo "date    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit  $(cat "$B/COMMIT" 2>/dev/null || echo unknown)"
  if command -v nvidia-smi > /dev/null; then
    echo "gpu     $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
  fi
  echo "budget  ${budget} s"
} > "$summary"

# step NAME LIMIT FILE FUNCTION: runs FUNCTION (exported) under `timeout`, its output appended to FILE; one line
# in the summary. The limit shrinks to what is left of the budget; with under 10 s left the step is not started.
step() {
  local name=$1 limit=$2 file=$3 fn=$4
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt 10 ]; then
    printf '%-8s %-44s budget spent\n' SKIPPED "$name" >> "$summary"
    return 1
  fi
  limit=$((limit * scale))
  local cut=0
  [ "$limit" -gt "$left" ] && limit=$left cut=1
  echo "== $name (limit ${limit} s) ==" >> "$out/$file"
  echo "gpu-check: $name (limit ${limit} s)"
  local t0 rc status
  t0=$(date +%s)
  timeout -k 10 "$limit" bash -c "$fn" >> "$out/$file" 2>&1
  rc=$?
  case $rc in
    0) status=PASS ;;
    124|137)
      if [ "$cut" = 1 ]; then  # out of budget, not hung: its results are missing, none is wrong
        status=CUT
        echo "!! stopped after $limit s: the budget ran out" >> "$out/$file"
      else
        status=TIMEOUT
        echo "!! killed after $limit s" >> "$out/$file"
      fi ;;
    *) status="FAIL($rc)" ;;
  esac
  [ $rc -eq 0 ] || [ "$status" = CUT ] || failed=$((failed + 1))
  printf '%-8s %-44s %4d s\n' "$status" "$name" "$(($(date +%s) - t0))" >> "$summary"
  return $rc
}

# bench NAME ARGS...: one `mole bench`, its table into 5-bench.txt, its JSON kept for 6-bench.json.
bench() {
  local name=$1; shift
  echo "-- $name: mole bench $*"
  "$M" bench "$@" -o "$work/bench-$name.json"
}
# on_each_gpu FUNCTION: FUNCTION BACKEND for each GPU backend ($GPUS); fails if any did.
on_each_gpu() {
  local rc=0 b
  for b in $GPUS; do "$1" "$b" || rc=1; done
  return $rc
}
export -f bench on_each_gpu

devices() {
  command -v nvidia-smi > /dev/null && nvidia-smi
  "$M" devices
  # Without a Vulkan device, the loader's own account of the drivers it tried.
  if ! "$M" devices | grep -E '^vulkan +available' > /dev/null; then
    echo "-- Vulkan loader messages (VK_LOADER_DEBUG=error,warn,driver):"
    VK_LOADER_DEBUG=error,warn,driver "$M" devices 2>&1 | grep -v '^\(vulkan\|cuda\|cpu\) ' | head -40
    echo "-- environment: VK_DRIVER_FILES=${VK_DRIVER_FILES:-} LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  fi
}
reparameterize_builtin() {
  if [ ! -f "$B/models/kjv-mole-4l/config.json" ]; then echo "no training-form model in the bundle"; return 0; fi
  rm -rf "$B/share/mole/models/kjv-mole-4l"
  mkdir -p "$B/share/mole/models"
  local t0=$(date +%s.%N) first=${GPUS%% *}
  "$M" convert -m "$B/models/kjv-mole-4l" -o "$B/share/mole/models/kjv-mole-4l" --backend "$first" -q || return 1
  echo "convert --backend $first (kjv-mole-4l): $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }") s"
  bash "$B/tests/e2e/test_default_model.sh" "$M"
}
parity() {
  local rc=0 model=$B/share/mole/models/kjv-mole-4l b
  for b in $GPUS; do
    "$M" parity --backend "$b" --validate=sync --pipeline-cache off $PARITY_OPS > "$work/parity.txt" 2>&1 || rc=1
    grep -v ': OK$' "$work/parity.txt"  # the failures and the summary; every line is in the exit code
    if [ -f "$model/config.json" ]; then "$M" parity --backend "$b" --op argmax -m "$model" || rc=1; fi
  done
  # CUDA with ordinary launches (the default starts kernels early where the GPU can): the built-in model's logits,
  # router weights and greedy tokens.
  case " $GPUS " in *" cuda "*)
    if [ -f "$model/config.json" ]; then
      echo "-- mole parity --backend cuda --tune pdl=off"
      "$M" parity --backend cuda --tune pdl=off --op argmax -m "$model" || rc=1
      echo "-- mole parity --backend cuda --tune lut-copy=kernel"
      "$M" parity --backend cuda --tune lut-copy=kernel --op argmax -m "$model" || rc=1
    fi ;;
  esac
  return $rc
}
# The persistent decode kernel's case runs in a step of its own (persistent_kernel), and so does the Vulkan dispatch
# chain's (dispatch_chain): a kernel that never passed a GPU before may hang at a barrier or a wait, which must cost
# that step only.
tests() {
  "$T" --require-device="${GPUS// /,}" --test-case="$TEST_CASES" --test-case-exclude='*persistent=on*,*chain=on*'
}
# A tuning whose kernels had not run on a GPU before, in a step of its own: the test cases named after it (--tune
# KEY=VALUE in the name), then the built-in model's parity with it. tuned_cases BACKEND KEY=VALUE
tuned_cases() {
  local rc=0 model=$B/share/mole/models/kjv-mole-4l
  "$T" --require-device="$1" --test-case="*$2*" || rc=1
  if [ -f "$model/config.json" ]; then
    echo "-- mole parity --backend $1 --tune $2"
    "$M" parity --backend "$1" --tune "$2" --op argmax -m "$model" || rc=1
  fi
  return $rc
}
# CUDA: the persistent decode kernel (--tune persistent=on); then the built-in model's parity on 3 blocks
# (perturb=persistent-few-blocks), where each block runs several items of each phase, of different ops one after
# another, and argmax merges its 25 chunks of 2,048 logits.
persistent_kernel() {
  local rc=0 model=$B/share/mole/models/kjv-mole-4l
  tuned_cases cuda persistent=on || rc=1
  if [ -f "$model/config.json" ]; then
    echo "-- mole parity --backend cuda --tune persistent=on,perturb=persistent-few-blocks"
    "$M" parity --backend cuda --tune persistent=on,perturb=persistent-few-blocks --op argmax -m "$model" || rc=1
  fi
  return $rc
}
# Vulkan: the dispatch chain (--tune chain=on; its test cases run with validation on).
dispatch_chain() { tuned_cases vulkan chain=on; }
# CUDA only: compute-sanitizer's memcheck and racecheck on a short decode of the built-in model, memcheck on every op
# case of `mole parity` (those that took 13 s on an H200 first, then the matrix products), racecheck on attention's.
sanitize() {
  local cs rc=0 tool op job model=$B/share/mole/models/kjv-mole-4l
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  [ -x "$cs" ] || { echo "no compute-sanitizer here"; return 1; }
  [ -f "$model/config.json" ] || model=$B/models/kjv-mole-4l
  # The sanitizer reports on standard output, beside mole's: its lines are shown, mole's text is not.
  for tool in memcheck racecheck; do
    echo "-- $tool: mole run --backend cuda --lut host -n 8"
    "$cs" --tool "$tool" --error-exitcode 99 --print-limit 20 "$M" run -m "$model" --backend cuda --lut host \
      -p "In the beginning" -n 8 --temp 0 -q > "$work/sanitize.txt" || rc=1
    grep -E '^=========' "$work/sanitize.txt" | head -40
  done
  echo "-- memcheck: mole run --backend cuda --lut host --tune lut-copy=kernel -n 8"
  "$cs" --tool memcheck --error-exitcode 99 --print-limit 20 "$M" run -m "$model" --backend cuda --lut host \
    --tune lut-copy=kernel -p "In the beginning" -n 8 --temp 0 -q > "$work/sanitize.txt" || rc=1
  grep -E '^=========' "$work/sanitize.txt" | head -40
  # The persistent kernel: memcheck on the whole grid, racecheck on 3 blocks (perturb=persistent-few-blocks: several
  # items of a phase per block, shared memory reused between ops). No timeout of their own: one started here would
  # be out of reach of the step's.
  for tune in memcheck:persistent=on racecheck:persistent=on,perturb=persistent-few-blocks; do
    tool=${tune%%:*}
    echo "-- $tool: mole run --backend cuda --lut host --tune ${tune#*:} -n 8"
    "$cs" --tool "$tool" --error-exitcode 99 --print-limit 20 "$M" run -m "$model" --backend cuda --lut host \
      --tune "${tune#*:}" -p "In the beginning" -n 8 --ignore-eos --temp 0 -q --json > "$work/sanitize.txt" || rc=1
    grep -E '^=========' "$work/sanitize.txt" | head -40
    # A launch the sanitizer made impossible falls back to the graphs: then the kernel was not checked.
    grep -o '"execution":"[^"]*"' "$work/sanitize.txt" || echo "no execution in the output"
    grep -q '"execution":"persistent decode kernel (' "$work/sanitize.txt" || {
      echo "the persistent kernel did not run under $tool"
      rc=1
    }
  done
  for job in memcheck:gather memcheck:argmax memcheck:router_lut memcheck:embed memcheck:attention \
    memcheck:router_probs racecheck:attention memcheck:matmul memcheck:norm_matmul; do
    tool=${job%%:*} op=${job#*:}
    echo "-- $tool: mole parity --backend cuda --op $op"
    "$cs" --tool "$tool" --error-exitcode 99 --print-limit 20 "$M" parity --backend cuda --op "$op" \
      > "$work/sanitize.txt" 2>&1 || rc=1
    # The sanitizer's first reports (what went wrong first), then the failed cases and the summary.
    grep -E '^=========' "$work/sanitize.txt" | head -60
    grep -vE '^=========|: OK$' "$work/sanitize.txt" | tail -8
  done
  return $rc
}
synth_models() {
  "$M" synth --preset "$MOLE_PRESET" -o "$work/models/mole" -q &&
    "$M" synth --preset "$DENSE_PRESET" --form "$DENSE_FORM" -o "$work/models/dense" -q
}
profile_one() {
  echo "-- $1"
  "$M" run -m "$work/models/mole" --backend "$1" --lut host --prompt-ids 1,2,3,4,5,6,7,8 -n 128 --temp 0 \
    --ignore-eos --profile -q > /dev/null
}
bench_placements() {
  bench "$1-placements" -m "$work/models/mole" --backend "$1" --placements device,host,disk \
    --prompt-tokens "$PROMPT" -n "$DECODE"
}
# CUDA: ordinary launches, against bench_placements' kernels started early (programmatic dependent launch).
bench_pdl() {
  bench cuda-no-pdl -m "$work/models/mole" --backend cuda --tune pdl=off --placements device,host \
    --prompt-tokens "$PROMPT" -n "$DECODE"
}
# CUDA: the rows of --lut host copied by a kernel in the step's graph, against the device table beside it.
bench_lut_copy_kernel() {
  bench cuda-lut-copy-kernel -m "$work/models/mole" --backend cuda --tune lut-copy=kernel --placements device,host \
    --prompt-tokens "$PROMPT" -n "$DECODE"
}
# CUDA: decode steps as one persistent cooperative kernel (against bench_placements' graphs), without its L2
# prefetch, and the dense model.
bench_persistent() {
  bench cuda-persistent -m "$work/models/mole" --backend cuda --tune persistent=on --placements device,host \
    --prompt-tokens "$PROMPT" -n "$DECODE" &&
    bench cuda-persistent-no-prefetch -m "$work/models/mole" --backend cuda --tune persistent=no-prefetch \
      --placements device --prompt-tokens "$PROMPT" -n "$DECODE" &&
    bench cuda-persistent-dense -m "$work/models/dense" --backend cuda --tune persistent=on --placements device \
      --prompt-tokens "$PROMPT" -n "$DECODE"
}
# Vulkan: the dispatch chain (in-shader waits, no pipeline barriers), against bench_placements' barriers; and dense.
bench_chain() {
  bench vulkan-chain -m "$work/models/mole" --backend vulkan --tune chain=on --placements device,host \
    --prompt-tokens "$PROMPT" -n "$DECODE" &&
    bench vulkan-chain-dense -m "$work/models/dense" --backend vulkan --tune chain=on --placements device \
      --prompt-tokens "$PROMPT" -n "$DECODE"
}
# Vulkan: the host blocking in the driver for each step's ids, against bench_placements' polling (host-wait auto).
bench_host_wait() {
  bench vulkan-host-wait-block -m "$work/models/mole" --backend vulkan --tune host-wait=block \
    --placements device,host --prompt-tokens "$PROMPT" -n "$DECODE"
}
bench_dense() {
  bench "$1-dense" -m "$work/models/dense" --backend "$1" --placements device --prompt-tokens "$PROMPT" -n "$DECODE"
}
bench_host_copied() {
  [ "$1" = vulkan ] || return 0  # --tune lut-import is Vulkan's (CUDA registers the table in place or copies it)
  bench "$1-host-table-copied" -m "$work/models/mole" --backend "$1" --placements host --tune lut-import=off \
    --prompt-tokens "$PROMPT" -n "$DECODE"
}
bench_long_context() {
  local rc=0
  bench "$1-long-context-one-pass" -m "$work/models/mole" --backend "$1" --tune attention-splits=1 \
    --placements device --prompt-tokens "$LONG_PROMPT" -n "$DECODE" || rc=1
  bench "$1-long-context-split-k" -m "$work/models/mole" --backend "$1" --placements device \
    --prompt-tokens "$LONG_PROMPT" -n "$DECODE" || rc=1
  # Below 256 keys the automatic rule does not split (a decode step's attention is H blocks); forced 4 splits beside.
  bench "$1-short-auto" -m "$work/models/mole" --backend "$1" --placements device \
    --prompt-tokens "$SHORT_PROMPT" -n "$SHORT_DECODE" || rc=1
  bench "$1-short-4-splits" -m "$work/models/mole" --backend "$1" --tune attention-splits=4 \
    --placements device --prompt-tokens "$SHORT_PROMPT" -n "$SHORT_DECODE" || rc=1
  return $rc
}
bench_kernels() {
  local rc=0
  if [ "$1" = vulkan ]; then  # --tune subgroups is Vulkan's
    bench "$1-no-subgroups" -m "$work/models/mole" --backend "$1" --placements device \
      --tune subgroups=0 --prompt-tokens "$KERNEL_PROMPT" -n "$KERNEL_DECODE" || rc=1
  fi
  bench "$1-no-tiled-prefill" -m "$work/models/mole" --backend "$1" --placements device \
    --tune tiled-min-rows=1000000 --prompt-tokens "$KERNEL_PROMPT" -n "$KERNEL_DECODE" || rc=1
  bench "$1-default-kernels" -m "$work/models/mole" --backend "$1" --placements device \
    --prompt-tokens "$KERNEL_PROMPT" -n "$KERNEL_DECODE" || rc=1
  # Decode with attention's store pass in every step (one dispatch and barrier more a layer), against the default.
  bench "$1-attention-store-pass" -m "$work/models/mole" --backend "$1" --placements device \
    --tune attention-store=pass --prompt-tokens "$KERNEL_PROMPT" -n "$KERNEL_DECODE" || rc=1
  # The matrix-vector kernels with 1 or 8 weight loads in flight per lane, against the default 4 beside them.
  for loads in 1 8; do
    bench "$1-matvec-loads-$loads" -m "$work/models/mole" --backend "$1" --placements device \
      --tune matvec-loads=$loads --prompt-tokens "$KERNEL_PROMPT" -n "$KERNEL_DECODE" || rc=1
  done
  if [ "$1" = cuda ]; then  # the column kernel that stages x in shared memory, against the default beside it
    bench "$1-staged-matvec" -m "$work/models/mole" --backend "$1" --placements device \
      --tune matvec=staged --prompt-tokens "$KERNEL_PROMPT" -n "$KERNEL_DECODE" || rc=1
  fi
  return $rc
}
reparameterize_bench() {
  [ -d "$work/models/train" ] || "$M" synth --preset "$MOLE_PRESET" --form train -o "$work/models/train" -q || return 1
  local t0=$(date +%s.%N)
  "$M" convert -m "$work/models/train" -o "$work/models/train-infer" --backend "$1" -q || return 1
  echo "convert --backend $1 ($MOLE_PRESET): $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }") s wall," \
    "$(du -sh "$work/models/train-infer" | cut -f1) written"
  rm -rf "$work/models/train-infer"
}
disk_speed() {
  dd if=/dev/zero of="$work/models/ddtest" bs=64M count=16 oflag=direct 2>&1 | tail -1
  rm -f "$work/models/ddtest"
}
export -f devices reparameterize_builtin parity tests tuned_cases persistent_kernel dispatch_chain sanitize \
  synth_models profile_one bench_placements bench_pdl bench_lut_copy_kernel bench_persistent bench_chain \
  bench_host_wait bench_dense bench_host_copied bench_long_context bench_kernels reparameterize_bench disk_speed

finish() {
  if command -v python3 > /dev/null && ls "$work"/bench-*.json > /dev/null 2>&1; then
    python3 - "$work" "$out/6-bench.json" >> "$summary" << 'EOF'
import glob, json, os, sys
work, dest = sys.argv[1], sys.argv[2]
runs = {}
for f in sorted(glob.glob(os.path.join(work, "bench-*.json")), key=os.path.getmtime):
    runs[os.path.basename(f)[6:-5]] = json.load(open(f))
json.dump(runs, open(dest, "w"), indent=1)
print("decode tokens/s (batch 1):")
for name, r in runs.items():
    for p in r.get("placements", []):
        label = p["lut"] + ("/" + p["lut_read"] if "lut_read" in p else "")
        if "skipped" in p:
            print(f"  {name:28s} {label:12s} skipped: {p['skipped'][:90]}")
        else:
            print(f"  {name:28s} {label:12s} {p['decode_tokens_per_s']:9.1f}  (prefill {p['prefill_tokens_per_s']:.0f}, "
                  f"context {p['prefill_tokens'] + p['decode_steps']}, "
                  f"launch {1e3 * p.get('decode_launch_ms_per_token', 0):.0f} us/token)")
EOF
  fi
  echo "total   $(($(date +%s) - t_start)) s; $failed step(s) failed" >> "$summary"
  echo
  cat "$summary"
}

# 1. A GPU, or stop. GPUS: the GPU backends to check, those `mole devices` finds available (on an NVIDIA GPU; in a
# dry run, the CPU Vulkan driver).
step "mole devices" 60 2-devices.txt devices
if [ "$dry" = 1 ]; then
  seen=$(grep -E '^vulkan +available' "$out/2-devices.txt")
  why="mole devices sees no Vulkan device (install mesa-vulkan-drivers for lavapipe)"
else
  seen=$(grep -E '^(vulkan|cuda) +available' "$out/2-devices.txt" | grep -i nvidia)
  why="mole devices sees no NVIDIA GPU: $(grep -E '^(cuda|vulkan) ' "$out/2-devices.txt" | tr -s ' ' | paste -sd ';')"
fi
if [ -z "$seen" ]; then
  echo "STOPPED  $why" >> "$summary"
  failed=$((failed + 1))
  finish
  echo "gpu-check.sh: $why" >&2
  exit 1
fi
export GPUS
GPUS=$(awk '{print $1}' <<< "$seen" | paste -sd ' ')
while read -r line; do echo "device  $line" >> "$summary"; done <<< "$seen"
# A GPU backend this build has but cannot run here is a failure of the check (the tests require every one).
built=$(grep -E '^(vulkan|cuda) ' "$out/2-devices.txt" | grep -v 'this build has no' | awk '{print $1}' | paste -sd ' ')
for b in $built; do
  case " $GPUS " in *" $b "*) ;; *) [ "$dry" = 1 ] || GPUS="$GPUS $b" ;; esac
done

# 2. Parity, then the rest in order of value. Each benchmark runs on every GPU backend.
step "reparameterize kjv-mole-4l, greedy = PyTorch" 180 4-run.txt reparameterize_builtin
step "mole parity: ops, built-in model" 240 3-tests.txt parity
step "tests (validation on, --require-device)" 240 3-tests.txt tests
case " $GPUS " in *" cuda "*) step "persistent decode kernel: test, parity" 90 3-tests.txt persistent_kernel ;; esac
case " $GPUS " in *" vulkan "*) step "Vulkan dispatch chain: test, parity" 90 3-tests.txt dispatch_chain ;; esac
# The benches of the ways to cut a decode step's launches (persistent, chain, lut-copy=kernel) come before the
# sanitizer: they are what the check has not measured yet, and the sanitizer's runs are the slowest step.
if step "synthesize $MOLE_PRESET and $DENSE_PRESET" 90 4-run.txt synth_models; then
  synthesized=1
  step "profile (--lut host)" 60 4-run.txt "on_each_gpu profile_one"
  step "bench: placements" 150 5-bench.txt "on_each_gpu bench_placements"
  case " $GPUS " in *" cuda "*) step "bench: CUDA, --tune persistent=on" 90 5-bench.txt bench_persistent ;; esac
  case " $GPUS " in *" vulkan "*) step "bench: Vulkan, --tune chain=on" 90 5-bench.txt bench_chain ;; esac
  case " $GPUS " in *" cuda "*) step "bench: CUDA, --tune lut-copy=kernel" 90 5-bench.txt bench_lut_copy_kernel ;; esac
else
  synthesized=0
fi
case " $GPUS " in *" cuda "*) step "compute-sanitizer (memcheck, racecheck)" 240 3-tests.txt sanitize ;; esac
if [ "$synthesized" = 1 ]; then
  case " $GPUS " in *" cuda "*) step "bench: CUDA, --tune pdl=off" 90 5-bench.txt bench_pdl ;; esac
  case " $GPUS " in *" vulkan "*) step "bench: Vulkan, --tune host-wait=block" 90 5-bench.txt bench_host_wait ;; esac
  step "bench: dense baseline" 90 5-bench.txt "on_each_gpu bench_dense"
  step "bench: --lut host, table copied" 90 5-bench.txt "on_each_gpu bench_host_copied"
  step "bench: split-K, long and short context" 150 5-bench.txt "on_each_gpu bench_long_context"
  step "bench: reparameterization" 150 5-bench.txt "on_each_gpu reparameterize_bench"
  step "disk write speed" 30 5-bench.txt disk_speed
  step "bench: kernel variants" 150 5-bench.txt "on_each_gpu bench_kernels"
fi
finish
[ "$failed" -eq 0 ]
