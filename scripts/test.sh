#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test: the Release build's full CTest suite, then the unit tests,
# CLI bad-input tests and mole-studio's window test again under AddressSanitizer + UndefinedBehaviorSanitizer (file
# parsers on malformed input, the app's worker thread), then each libFuzzer harness of tests/fuzz/ for a few seconds
# on its seed corpus (clang, with the sanitizers).
# Tests that need a GPU skip with a message when none is present.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
jobs="$(nproc)"

echo "== tests (Release build) =="
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOLE_SANITIZE=ON \
  -DMOLE_DEFAULT_MODEL_DIR="$(build/mole info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"])')" \
  > /dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -R '^(unit|backends|cli|studio)$'

echo "== fuzz harnesses (libFuzzer, with the sanitizers), 5 s each on their seed corpora =="
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOLE_FUZZ=ON \
  -DMOLE_SANITIZE=ON -DMOLE_CUDA=OFF > /dev/null
cmake --build build-fuzz -j "$jobs" --target fuzzers
ctest --test-dir build-fuzz --output-on-failure -R '^fuzz_'
