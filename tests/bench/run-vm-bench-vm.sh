#!/usr/bin/env bash
# run-vm-bench-vm.sh [BUILD_DIR [RUNS]] - boot the soft-RoCE VM and run
# vm-bench.sh in it (defaults: build, 3), one boot: a QEMU guest nested under
# TCG, live-migrated by vm-send (soft-dirty tracking: this kernel has the
# bits) against QEMU's rdma: with pin-all, over RDMA; then vm-send with
# soft-dirty and with shadow tracking against QEMU multifd, over TCP.
cd "$(dirname "$0")/../.." || exit 2
build=$(cd "${1:-build}" && pwd)
runs=${2:-3}
shares=(--share "$PWD")
case $build/ in "$PWD"/*) ;; *) shares+=(--share "$build") ;; esac
# shellcheck disable=SC2016 # expanded inside the VM
exec tests/vm/vm-run --timeout 3000 --mem 4G "${shares[@]}" -- bash -c '
	cd "$1" || exit 2
	"$2/tools/rdma-migrate" info | grep -E "soft-dirty|vm-send"
	VM_BENCH_TRANSPORT=rdma VM_BENCH_ADDR=10.0.0.1 VM_BENCH_WHO="rmig qemu" VM_BENCH_RATES=2000 \
		VM_BENCH_BOOT_S=400 tests/bench/vm-bench.sh "$2" "$3" || exit 1
	VM_BENCH_TRANSPORT=tcp VM_BENCH_ADDR=10.0.0.1 VM_BENCH_WHO="rmig rmig-shadow qemu" \
		VM_BENCH_RATES=2000 VM_BENCH_BOOT_S=400 tests/bench/vm-bench.sh "$2" "$3"' \
	run-vm-bench "$PWD" "$build" "$runs"
