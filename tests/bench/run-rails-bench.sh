#!/usr/bin/env bash
# run-rails-bench.sh [BUILD_DIR [MiB [RUNS]]] - boot the soft-RoCE VM (rxe0 and
# rxe1) and run rails-bench.sh in it: one rail against two, side by side.
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
shares=(--share "$PWD")
case $build/ in "$PWD"/*) ;; *) shares+=(--share "$build") ;; esac
exec tests/vm/vm-run --timeout 900 --mem 3G --cpus 2 "${shares[@]}" -- \
	tests/bench/rails-bench.sh "$build" "${2:-256}" "${3:-5}"
