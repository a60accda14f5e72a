#!/usr/bin/env bash
# The GPU check cannot rot between GPU loans: scripts/gpu-bundle.sh makes a bundle under 64 MiB; moved to another
# path, with the source and build trees hidden, its gpu-check.sh --dry-run runs every step on the CPU Vulkan driver
# (lavapipe) and passes, writing at most 6 files with the summary first; and without an NVIDIA GPU the real check
# stops at once with a one-line reason and a non-zero exit.
# Usage: bash tests/e2e/test_gpu_check.sh BUILD_DIR        (run by ctest as the `gpu_check_dry_run` test)
set -uo pipefail
build=$(realpath "${1:?usage: test_gpu_check.sh BUILD_DIR}")
root=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

if ! "$root/scripts/gpu-bundle.sh" -o "$T/made/mole-gpu" --build "$build" > "$T/bundle.log" 2>&1; then
  bad "gpu-bundle.sh: $(cat "$T/bundle.log")"
  echo "$passed passed, $failed failed"
  exit 1
fi
size=$(du -sb "$T/made/mole-gpu" | cut -f1)
if [ "$size" -lt $((64 * 1024 * 1024)) ]; then ok "bundle: $((size / 1024 / 1024)) MiB, under 64 MiB"; else
  bad "bundle: $size bytes, over 64 MiB"
fi
mkdir -p "$T/elsewhere"
mv "$T/made/mole-gpu" "$T/elsewhere/bundle"
G=$T/elsewhere/bundle/gpu-check.sh
hide() { (cd "$T" && "$root/tests/e2e/hide_trees.sh" "$root" "$build" -- "$@"); }

# The real check on a machine without an NVIDIA GPU: a one-line reason, non-zero, within seconds.
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  echo "note: this machine has an NVIDIA GPU: the refusal without one is not tried"
else
  start=$(date +%s)
  hide "$G" "$T/out-real" > "$T/real.log" 2> "$T/real.err"
  rc=$?
  if [ $rc -ne 0 ] && [ "$(wc -l < "$T/real.err")" -eq 1 ] && grep -q "no NVIDIA GPU" "$T/real.err" &&
    [ $(($(date +%s) - start)) -lt 60 ] && grep -q "^STOPPED" "$T/out-real/1-summary.txt"; then
    ok "without an NVIDIA GPU: exit $rc, $(cat "$T/real.err")"
  else
    bad "without an NVIDIA GPU: exit $rc, stderr: $(cat "$T/real.err")"
  fi
fi

start=$(date +%s)
hide "$G" --dry-run "$T/out" > "$T/dry.log" 2>&1
rc=$?
took=$(($(date +%s) - start))
sed 's/^/    | /' "$T/dry.log" | tail -25
files=$(ls "$T/out" | wc -l)
if [ $rc -eq 0 ]; then ok "dry run passed in $took s"; else bad "dry run: exit $rc after $took s"; fi
if [ "$files" -le 6 ] && [ "$(ls "$T/out" | head -1)" = 1-summary.txt ]; then ok "$files files, the summary first"; else
  bad "files written: $(ls "$T/out" | tr '\n' ' ')"
fi
steps=$(grep -cE '^PASS ' "$T/out/1-summary.txt")
if [ "$steps" -ge 10 ] && ! grep -qE '^(FAIL|TIMEOUT|SKIPPED|STOPPED)' "$T/out/1-summary.txt"; then
  ok "$steps steps passed"
else
  bad "summary: $(cat "$T/out/1-summary.txt")"
fi
if grep -q "test cases: .* 0 failed" "$T/out/3-tests.txt" && ! grep -q "skipped: no usable Vulkan device" "$T/out/3-tests.txt"; then
  ok "the Vulkan tests ran on a device: $(grep 'test cases:' "$T/out/3-tests.txt")"
else
  bad "the Vulkan tests: $(tail -3 "$T/out/3-tests.txt")"
fi
if tail -1 "$T/dry.log" | grep -q "step(s) failed"; then ok "the summary is the output's last lines"; else
  bad "last line: $(tail -1 "$T/dry.log")"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
