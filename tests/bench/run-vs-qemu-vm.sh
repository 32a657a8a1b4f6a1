#!/usr/bin/env bash
# run-vs-qemu-vm.sh [BUILD_DIR [SIZE [RUNS]]] - boot the soft-RoCE VM and run
# vs-qemu-vm.sh in it (defaults: build, 256M, 5): QEMU's rdma: (default and
# pin-all) and multifd against rdma-migrate over RDMA and TCP, and
# ib_write_bw, all in one boot.
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
shares=(--share "$PWD")
case $build/ in "$PWD"/*) ;; *) shares+=(--share "$build") ;; esac
exec tests/vm/vm-run --timeout 1500 --mem 3G "${shares[@]}" -- tests/bench/vs-qemu-vm.sh "$build" "${2:-256M}" "${3:-5}"
