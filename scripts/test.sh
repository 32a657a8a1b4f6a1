#!/usr/bin/env bash
# test.sh - set up, build, and run every test: unit and integration suites
# (TCP); the same suites under AddressSanitizer and UBSan, and under valgrind
# (meson test setups); a smoke run of every libFuzzer target; and the RDMA
# suites on soft-RoCE inside a QEMU VM. Ends with "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
pass=0
fail=0
times=""
stage_t=$SECONDS
stage_n=""
stage() { # NAME [TEXT]: start a stage, saying "== NAME TEXT"; the one before is timed
	[ -z "$stage_n" ] || times="$times $stage_n $((SECONDS - stage_t)) s;"
	stage_n=$1
	stage_t=$SECONDS
	[ -z "$1" ] || echo "== $*"
}

count() { # LOG: add meson's Ok/Fail counts
	local ok bad
	ok=$(awk '/^Ok:/ {print $2}' "$1" | tail -1)
	bad=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {s += $NF} END {print s + 0}' "$1")
	pass=$((pass + ${ok:-0}))
	fail=$((fail + bad))
	[ -n "$ok" ] || fail=$((fail + 1))
}

run() { # NAME DIR [MESON_TEST_ARGS...]: meson test in DIR
	local name=$1 dir=$2
	shift 2
	stage "$name"
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" 2>&1 | tee "/tmp/rmig-$name.log" |
		grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Timeout):'
	count "/tmp/rmig-$name.log"
}

# 2 MiB huge pages for the hugetlb cases, which may run at once (postcopy under
# userfaultfd: 16; recv into hugetlbfs: 12): reserve 48 when root and fewer
# are. Without them those cases skip, saying so.
if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 48)" -lt 48 ]; then
	echo 48 >/proc/sys/vm/nr_hugepages 2>/dev/null || true
fi

stage build
./scripts/build.sh build || { echo "tests: 0 passed, 1 failed"; exit 1; }
# the long suites (the CLI's and the hostile peers', mostly waiting out
# timeouts by design) run once, under the sanitizers below
run tcp build --no-suite long

stage build-asan
./scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false ||
	{ echo "tests: $pass passed, $((fail + 1)) failed"; exit 1; }
run asan build-asan --setup asan
# memcheck, leaks included, over the unit and integration suites (the long ones stay out)
run valgrind build --setup valgrind

stage fault "matrix (tcp; kill, stall and cut off each end; ASan build, so leaks fail)"
tests/fault/fault-matrix.sh build-asan tcp 2>&1 | tee /tmp/rmig-fault.log
p=$(grep -E '^[0-9]+ passed, [0-9]+ failed' /tmp/rmig-fault.log | tail -1)
if [ -n "$p" ]; then
	pass=$((pass + $(echo "$p" | awk '{print $1}')))
	fail=$((fail + $(echo "$p" | awk '{print $3}')))
else
	fail=$((fail + 1))
fi

stage fuzz "(libFuzzer, clang + ASan + UBSan, a smoke run of every target)"
./scripts/fuzz.sh "${RMIG_FUZZ_SECS:-15}" 2>&1 | tee /tmp/rmig-fuzz.log
p=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed' /tmp/rmig-fuzz.log | tail -1)
if [ -n "$p" ]; then
	pass=$((pass + $(echo "$p" | awk '{print $2}')))
	fail=$((fail + $(echo "$p" | awk '{print $4}')))
else
	fail=$((fail + 1))
fi

stage vm-migrate "(vm-send / vm-recv; the guest verifies its memory)"
tests/vmig/vm-migrate.sh build 2>&1 | tee /tmp/rmig-vmig.log
p=$(grep -E '^vm-migrate: [0-9]+ passed, [0-9]+ failed' /tmp/rmig-vmig.log | tail -1)
if [ -n "$p" ]; then
	pass=$((pass + $(echo "$p" | awk '{print $2}')))
	fail=$((fail + $(echo "$p" | awk '{print $4}')))
else
	fail=$((fail + 1))
fi

if [ -x tests/vm/run-rdma-tests.sh ]; then
	stage rdma "(soft-RoCE VM)"
	tests/vm/run-rdma-tests.sh build 2>&1 | tee /tmp/rmig-rdma.log
	rc=${PIPESTATUS[0]}
	p=$(grep -E '^rdma: [0-9]+ passed, [0-9]+ failed' /tmp/rmig-rdma.log | tail -1)
	if [ -n "$p" ]; then
		pass=$((pass + $(echo "$p" | awk '{print $2}')))
		fail=$((fail + $(echo "$p" | awk '{print $4}')))
	fi
	[ "$rc" = 0 ] || [ -n "$p" ] || fail=$((fail + 1))
fi

stage ""
echo "times:$times"
echo "tests: $pass passed, $fail failed"
[ "$fail" = 0 ]
