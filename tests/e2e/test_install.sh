#!/usr/bin/env bash
# mole is relocatable: `cmake --install BUILD --prefix P` gives a tree that runs with the source and build trees
# hidden (an empty folder mounted over each): the README's main command on the built-in default model, and
# `mole synth` (which copies the tokenizer files from P/share/mole) followed by a run of what it wrote. No path of
# either tree is compiled into the binary.
# Usage: bash tests/e2e/test_install.sh BUILD_DIR          (run by ctest as the `install` test)
set -uo pipefail
build=$(realpath "${1:?usage: test_install.sh BUILD_DIR}")
root=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

if cmake --install "$build" --prefix "$T/prefix" > "$T/install.log" 2>&1; then ok "cmake --install"; else
  bad "cmake --install: $(tail -3 "$T/install.log")"
fi
# The prefix moves once more after installing: nothing may depend on where it was installed either.
mv "$T/prefix" "$T/moved"
M=$T/moved/bin/mole
# No data path of either tree is compiled in (nvcc does leave the CUDA sources' names in the kernels' debug lines,
# which nothing reads at run time).
for dir in "$root/data" "$root/models" "$build/share" "$build/models"; do
  if grep -qF "$dir" "$M"; then bad "bin/mole contains the path $dir"; else ok "bin/mole names no path in $dir"; fi
done

hide() { (cd "$T" && "$root/tests/e2e/hide_trees.sh" "$root" "$build" -- "$@"); }
out=$(hide "$M" run -p "In the beginning God created" -n 48 2> "$T/err")
if [[ "$out" == "In the beginning God created"* ]] &&
  [ "$(echo "$out" | grep -oE '\b(the|and|of|unto|he|that|in|his)\b' | wc -l)" -ge 3 ]; then
  ok "the README's main command from the moved prefix: ${out//$'\n'/ }"
else
  bad "the README's main command from the moved prefix: $out $(cat "$T/err")"
fi
if hide bash -c "'$M' synth --preset tiny -o '$T/synth' -q && '$M' run -m '$T/synth' -p 'Hello' -n 4 -q" \
  > "$T/out" 2> "$T/err" && [ -f "$T/synth/tokenizer.json" ]; then
  ok "mole synth from the moved prefix, and a run of its checkpoint"
else
  bad "mole synth from the moved prefix: $(cat "$T/err")"
fi
# Without its share/mole, the binary says what it searched, and fails cleanly.
mv "$T/moved/share" "$T/share-away"
if hide "$M" synth --preset tiny -o "$T/synth2" -q > "$T/out" 2> "$T/err"; then
  bad "mole synth without share/mole succeeded"
elif grep -q "share/mole" "$T/err" && [ ! -e "$T/synth2" ] && [ ! -e "$T/synth2.partial" ]; then
  ok "without share/mole: $(head -1 "$T/err")"
else
  bad "without share/mole: $(cat "$T/err")"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
