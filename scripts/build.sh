#!/usr/bin/env bash
# build.sh [DIR [MESON_ARGS...]] - configure (once) and build rmig with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
	meson setup "$dir" -Dwerror=true "$@" >/dev/null
fi
# quiet when it builds; the compiler output when it does not
log=$(ninja -C "$dir" 2>&1) || { echo "$log" >&2; exit 1; }
