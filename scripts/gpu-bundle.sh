#!/usr/bin/env bash
# Makes the folder that travels to a GPU machine for scripts/gpu-check.sh: the installed mole and mole_tests (their
# libraries linked statically, checked with ldd; gzipped), the Vulkan loader and the Khronos validation layer (gzipped; the
# check unpacks it), mole's data, the built-in model in training form (reparameterized there, on the GPU), its
# PyTorch reference and the end-to-end script that compares them, and gpu-check.sh itself. Prints the bundle's size.
#
# Usage: scripts/gpu-bundle.sh [-o DIR] [--build DIR] [--link-model]
#   -o DIR        where to make it (default .gl/mole-gpu, ignored by git); replaced if it exists
#   --build DIR   the build tree to install from (default build/; built here first if needed)
#   --link-model  link the training-form checkpoint to the repository's models/ instead of copying it (31 MB), for a
#                 bundle that travels inside this checkout, which carries models/ anyway (the device tool does)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.gl/mole-gpu" build="$root/build" link_model=0
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$(realpath -m "${2:?-o needs a directory}"); shift 2 ;;
    --build) build=$(realpath -m "${2:?--build needs a directory}"); shift 2 ;;
    --link-model) link_model=1; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-bundle.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$build/CMakeCache.txt" ] || { echo "gpu-bundle.sh: $build is not a build tree: run scripts/setup.sh first" >&2; exit 1; }
cmake --build "$build" --target mole mole_tests mole_data -j "$(nproc)" > /dev/null

rm -rf "$out" "$out.partial"
tmp="$out.partial"
mkdir -p "$tmp/lib" "$tmp/models" "$tmp/tests/e2e"
for component in runtime tests; do
  cmake --install "$build" --prefix "$tmp" --component "$component" > /dev/null
done

# Only system libraries may remain dynamic: a GPU machine has the NVIDIA driver and CUDA, none of mole's Debian
# dependencies. The Vulkan loader is opened at run time (dlopen), from lib/ when the machine has none; so is the
# NVIDIA driver (the CUDA runtime is linked in statically). The binaries travel gzipped (their CUDA kernels for
# four GPU generations compress 3x); gpu-check.sh unpacks them beside the .gz.
allowed='^(linux-vdso|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so'
for bin in "$tmp"/bin/*; do
  extra=$(ldd "$bin" | awk '{print $1}' | sed 's|.*/||' | grep -vE "$allowed" || true)
  if [ -n "$extra" ]; then
    echo "gpu-bundle.sh: $(basename "$bin") needs libraries a GPU machine may lack: $extra" >&2
    exit 1
  fi
  gzip -6 "$bin"
done

# The Vulkan loader, libglvnd (NVIDIA's Vulkan driver starts through EGL when there is no display, and a GPU
# machine's base image may have no libglvnd) and the validation layer, from this machine's Debian packages
# (libvulkan1, libglvnd0, libegl1, libglx0, libopengl0, libgl1, libgles2, vulkan-validationlayers).
libdir=$(dirname "$(realpath "$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')")")
[ -f "$libdir/libvulkan.so.1" ] || { echo "gpu-bundle.sh: no libvulkan.so.1 here (install libvulkan1)" >&2; exit 1; }
for lib in libvulkan.so.1 libGLdispatch.so.0 libEGL.so.1 libGLX.so.0 libOpenGL.so.0 libGL.so.1 libGLESv2.so.2; do
  if [ -f "$libdir/$lib" ]; then cp -L "$libdir/$lib" "$tmp/lib/"; fi
done
layer=$libdir/libVkLayer_khronos_validation.so
manifest=/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json
if [ -f "$layer" ] && [ -f "$manifest" ]; then
  gzip -9 -c "$layer" > "$tmp/lib/libVkLayer_khronos_validation.so.gz"
  cp "$manifest" "$tmp/lib/VkLayer_khronos_validation.json"
else
  echo "gpu-bundle.sh: no validation layer here (install vulkan-validationlayers); the check needs it" >&2
  exit 1
fi

# The built-in model in training form, its PyTorch reference and the script that compares them, in the
# repository's layout (tests/e2e/test_default_model.sh finds models/ two folders up).
model=$root/models/kjv-mole-4l
if [ -f "$model/config.json" ]; then
  if [ "$link_model" = 1 ]; then
    ln -s "$(realpath --relative-to="$tmp/models" "$model")" "$tmp/models/kjv-mole-4l"
  else
    cp -r "$model" "$tmp/models/"
  fi
  cp "$root/models/kjv-mole-4l.reference.json" "$tmp/models/"
fi
cp "$root/tests/e2e/test_default_model.sh" "$tmp/tests/e2e/"
cp "$root/scripts/gpu-check.sh" "$tmp/"
git -C "$root" rev-parse --short HEAD > "$tmp/COMMIT" 2>/dev/null || echo unknown > "$tmp/COMMIT"
git -C "$root" diff --quiet HEAD 2>/dev/null || sed -i 's/$/ (with uncommitted changes)/' "$tmp/COMMIT"
mv "$tmp" "$out"

size=$(du -sb "$out" | cut -f1)
echo "gpu-bundle.sh: $out: $((size / 1024 / 1024)) MiB ($size bytes)$([ "$link_model" = 1 ] && echo ", the model linked to models/ in this checkout")"
echo "gpu-bundle.sh: run it with $out/gpu-check.sh OUTDIR (--dry-run for a CPU Vulkan driver such as lavapipe)"
