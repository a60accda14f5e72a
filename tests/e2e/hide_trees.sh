#!/usr/bin/env bash
# hide_trees.sh DIR... -- CMD [ARG...]: runs CMD with each DIR replaced by an empty folder, in a private mount
# namespace (unshare), so that CMD proves it needs nothing in them. Where this machine does not allow unprivileged
# namespaces, CMD runs with the folders in place, after a line on stderr that says so.
set -uo pipefail
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do dirs+=("$(realpath "$1")"); shift; done
[ "${1:-}" = "--" ] || { echo "usage: hide_trees.sh DIR... -- CMD [ARG...]" >&2; exit 2; }
shift
if unshare -rm true 2> /dev/null; then
  # A folder inside one already hidden is gone with it.
  exec unshare -rm bash -c 'n=$1; shift; for d in "${@:1:$n}"; do [ ! -d "$d" ] || mount -t tmpfs none "$d" || exit 1; done
                            shift "$n"; exec "$@"' _ "${#dirs[@]}" "${dirs[@]}" "$@"
fi
echo "note: unshare is not permitted here: ${dirs[*]} stay visible" >&2
exec "$@"
