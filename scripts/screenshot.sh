#!/usr/bin/env bash
# Regenerates the README's picture of mole-studio, docs/mole-studio.png: the built-in model generating in a real
# window under Xvfb (Mesa's software OpenGL), then compared with the Vulkan backend (lavapipe here; the CPU
# reference's other placement where Vulkan cannot run). Never edit the PNG by hand: run this.
# Usage: scripts/screenshot.sh [BUILD_DIR]        (default build/, as scripts/setup.sh makes it)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
studio=$build/mole-studio
[ -x "$studio" ] || { echo "screenshot: $studio is missing: build it (scripts/setup.sh)" >&2; exit 1; }
command -v xvfb-run > /dev/null || { echo "screenshot: xvfb-run is missing: apt-get install xvfb xauth" >&2; exit 1; }
other=cpu,host
if "$build/mole" devices 2>/dev/null | grep -qE '^vulkan +available'; then other=vulkan,host; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
xvfb-run -a -s "-screen 0 1280x800x24" "$studio" --size 1280x800 --prompt "In the beginning God created" \
  --steps 64 --temp 0.7 --seed 3 --compare "$other" --screenshot "$tmp/mole-studio.png"
mkdir -p docs
cp "$tmp/mole-studio.png" docs/mole-studio.png
echo "wrote docs/mole-studio.png ($(stat -c %s docs/mole-studio.png) bytes; compared with $other)"
