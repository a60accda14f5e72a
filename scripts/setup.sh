#!/usr/bin/env bash
# Installs every build and test dependency of mole from Debian 12 packages, then configures and builds.
# Usage: scripts/setup.sh            (install + build into ./build)
#        MOLE_SKIP_APT=1 scripts/setup.sh   (build only)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config git
  libvulkan-dev vulkan-validationlayers glslang-tools mesa-vulkan-drivers spirv-tools
  doctest-dev libstb-dev nlohmann-json3-dev libutf8proc-dev libcli11-dev
  libglfw3-dev libimgui-dev libgl1-mesa-dri xvfb xauth
  python3 python3-numpy
  clang-14 libclang-rt-14-dev
)

if [ -z "${MOLE_SKIP_APT:-}" ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

build_type="${MOLE_BUILD_TYPE:-Release}"
cmake -S . -B build -DCMAKE_BUILD_TYPE="$build_type" ${MOLE_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
