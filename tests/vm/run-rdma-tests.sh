#!/usr/bin/env bash
# run-rdma-tests.sh BUILD_DIR - the RDMA suites, for real, on soft-RoCE inside
# a QEMU VM (this host's kernel has no RDMA). Never skipped: a VM that cannot
# boot is a failure. Ends with "rdma: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
if [ ! -x "$build/rdma/librmig_rdma.a" ] && [ ! -f "$build/rdma/librmig_rdma.a" ]; then
	echo "rdma: the build at $build has no rdma backend (libibverbs-dev/librdmacm-dev missing?)"
	echo "rdma: 0 passed, 1 failed"
	exit 1
fi
# The guest sees the host's root, but has its own /tmp, /run and /dev/shm:
# share the tree and the build so that they are there wherever they live.
shares=(--share "$PWD")
case $build/ in "$PWD"/*) ;; *) shares+=(--share "$build") ;; esac
tests/vm/vm-run --timeout 1500 --mem 3G "${shares[@]}" -- tests/vm/in-vm.sh "$build"
rc=$?
if [ $rc = 124 ] || [ $rc = 125 ]; then
	echo "rdma: the VM did not finish (status $rc)"
	echo "rdma: 0 passed, 1 failed"
fi
exit $rc
