#!/usr/bin/env bash
# run-live-bench.sh [BUILD_DIR [RAM_MiB]] - boot the soft-RoCE VM and run live-bench.sh in it over rdma.
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
shares=(--share "$PWD")
case $build/ in "$PWD"/*) ;; *) shares+=(--share "$build") ;; esac
exec tests/vm/vm-run --timeout 1500 --mem 3G "${shares[@]}" -- \
	tests/bench/live-bench.sh "$build" rdma "${SOFTROCE_IP:-10.0.0.1}" "${2:-128}" "0 8M 32M 128M"
