#!/usr/bin/env bash
# setup.sh - install what building, testing and the soft-RoCE VM need (Debian 12).
# Idempotent: installs only what is missing.
set -euo pipefail
pkgs=(
	gcc libc6-dev pkg-config meson ninja-build python3 strace
	libcmocka-dev libxxhash-dev libssl-dev libibverbs-dev librdmacm-dev libjansson-dev libhwloc-dev
	# fuzzing (libFuzzer) and the valgrind test setup
	clang libclang-rt-14-dev valgrind
	# soft-RoCE VM: the host's own kernel and root under QEMU
	qemu-system-x86 linux-image-amd64 busybox-static kmod cpio xz-utils iproute2
	rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
