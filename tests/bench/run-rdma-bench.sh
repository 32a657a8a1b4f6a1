#!/usr/bin/env bash
# run-rdma-bench.sh [BUILD_DIR [MiB]] - boot the soft-RoCE VM and run rdma-bench.sh in it.
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
shares=(--share "$PWD")
case $build/ in "$PWD"/*) ;; *) shares+=(--share "$build") ;; esac
exec tests/vm/vm-run --timeout 900 --mem 3G "${shares[@]}" -- tests/bench/rdma-bench.sh "$build" "${2:-256}"
