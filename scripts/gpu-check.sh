#!/usr/bin/env bash
# One call on a GPU machine (the device tool): Vulkan loader from carried .debs, parity tests against the CPU
# reference with validation, then side-by-side benchmarks and a per-op profile. Build here first (scripts/setup.sh),
# then run it there with `carry: [build, .gl]`; results land in $OUT (or the folder given).
#   Carried packages, fetched once here into the ignored .gl/ (see ../.library/device/README.md):
#   libvulkan1 vulkan-validationlayers (and their libegl/libgl deps as that README lists).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/mole-gpu}}"
mkdir -p "$out"
if ls .gl/*.deb > /dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then export VK_DRIVER_FILES="$nvidia_icd"; fi

{ date -u; git rev-parse --short HEAD 2>/dev/null; nvidia-smi --query-gpu=name,driver_version --format=csv 2>/dev/null
  build/mole devices; } 2>&1 | tee "$out/devices.txt"

echo "== Vulkan parity tests (validation on) =="
build/mole_tests --test-case='vulkan*,vk-runtime*' 2>&1 | tee "$out/tests.txt" | tail -4

echo "== benchmarks =="
models=/tmp/mole-gpu-models
mkdir -p "$models"
[ -d "$models/m160" ] || build/mole synth --preset mole-160m-4e -o "$models/m160" -q
[ -d "$models/d160" ] || build/mole synth --preset dense-160m -o "$models/d160" -q
build/mole bench -m "$models/m160" --backend vulkan --placements device,host,disk --prompt-tokens 128 -n 256 \
  2>&1 | tee "$out/bench-mole-160m-4e.txt"
MOLE_VK_LUT_IMPORT=off build/mole bench -m "$models/m160" --backend vulkan --placements host --prompt-tokens 128 \
  -n 256 2>&1 | tee "$out/bench-mole-160m-4e-host-copied-table.txt"
build/mole bench -m "$models/d160" --backend vulkan --placements device --prompt-tokens 128 -n 256 \
  2>&1 | tee "$out/bench-dense-160m.txt"
build/mole run -m "$models/m160" --backend vulkan --lut host --prompt-ids 1,2,3,4,5,6,7,8 -n 128 --temp 0 \
  --ignore-eos --profile -q 2>&1 | tail -20 | tee "$out/profile-mole-160m-4e.txt"

echo "== matmul kernels side by side: without subgroup reductions, without the tiled prefill kernel =="
MOLE_VK_SUBGROUPS=0 build/mole bench -m "$models/m160" --backend vulkan --placements device --prompt-tokens 512 \
  -n 128 2>&1 | tee "$out/bench-no-subgroups.txt"
MOLE_VK_TILED_MIN_ROWS=1000000 build/mole bench -m "$models/m160" --backend vulkan --placements device \
  --prompt-tokens 512 -n 128 2>&1 | tee "$out/bench-no-tiled.txt"
build/mole bench -m "$models/m160" --backend vulkan --placements device --prompt-tokens 512 -n 128 \
  2>&1 | tee "$out/bench-default-kernels.txt"

echo "== long context: split-K attention (automatic) against the single pass (MOLE_VK_ATTN_SPLITS=1) =="
for splits in 1 0; do
  MOLE_VK_ATTN_SPLITS=$splits build/mole bench -m "$models/m160" --backend vulkan --placements device \
    --prompt-tokens 1900 -n 128 2>&1 | tee "$out/bench-long-context-splits-$splits.txt"
done

echo "== reparameterization on the GPU (mole-160m-4e, 11 TFLOP; the goal: limited by the disk write) =="
[ -d "$models/t160" ] || build/mole synth --preset mole-160m-4e --form train -o "$models/t160" -q
rm -rf "$models/t160-infer"
TIMEFORMAT='convert --backend vulkan: %R s wall'
{ time build/mole convert -m "$models/t160" -o "$models/t160-infer" --backend vulkan -q; } 2>&1 |
  tail -3 | tee "$out/convert-vulkan.txt"
du -sh "$models/t160-infer" | tee -a "$out/convert-vulkan.txt"
dd if=/dev/zero of="$models/ddtest" bs=64M count=32 oflag=direct 2>&1 | tail -1 | tee -a "$out/convert-vulkan.txt"
rm -rf "$models/t160-infer" "$models/ddtest"
