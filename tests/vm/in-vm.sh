#!/usr/bin/env bash
# in-vm.sh BUILD_DIR - runs inside the soft-RoCE VM (rxe0 on dummy0, 10.0.0.1;
# rxe1 on dummy1, 10.0.1.1: a second rail).
set -uo pipefail
build=$1
cd "$(dirname "$0")/../.."
RM=$build/tools/rdma-migrate
IP=${SOFTROCE_IP:-10.0.0.1}
IP2=${SOFTROCE_IP2:-10.0.1.1}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
# each part's seconds, said at the end
times=""
part_t=$SECONDS
part() { times="$times $1 $((SECONDS - part_t)) s;"; part_t=$SECONDS; }

# info tells the truth: the device, its GID, usable
"$RM" info >/tmp/info.txt 2>&1
if grep -q "device rxe0" /tmp/info.txt && grep -q "gid 1: ::ffff:10.0.0.1" /tmp/info.txt &&
	grep -q "rdma usable: yes" /tmp/info.txt; then
	ok "info: rxe0, its GID, usable"
else
	bad "info: $(cat /tmp/info.txt)"
fi
part info

echo 48 >/proc/sys/vm/nr_hugepages 2>/dev/null || true # the hugetlb cases

# the in-process integration suites over RDMA (live rounds with a dirtying writer, and
# postcopy: userfaultfd placement from the staging slots, included)
for t in test_inproc test_live test_resume test_failover test_auth test_postcopy; do
	if RMIG_TEST_TRANSPORT=rdma RMIG_TEST_ADDR=$IP RMIG_TEST_ADDR2=$IP2 \
		"$build/tests/integration/$t" >/tmp/$t.txt 2>&1; then
		ok "$t over rdma: $(grep -c '\[       OK' /tmp/$t.txt) cases"
		grep '^# ' /tmp/$t.txt
	else
		bad "$t over rdma"
		cat /tmp/$t.txt
	fi
	part "$t"
done

# hostile rdma sources: bad CM private data, malformed SENDs, a WRITE past the block
if RMIG_TEST_ADDR=$IP "$build/tests/integration/hostile_rdma" >/tmp/hr.txt 2>&1; then
	ok "hostile rdma sources: $(grep -c '\[       OK' /tmp/hr.txt) cases"
	grep '^# ' /tmp/hr.txt
else
	bad "hostile rdma sources"
	cat /tmp/hr.txt
fi

part hostile_rdma

# the rdma backend's unit test (the mocked shim) on this kernel too; the
# other unit tests need no RDMA and run on the host
for t in "$build"/tests/test_rdma_mock; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	if "$t" >/tmp/unit.txt 2>&1; then ok "unit $(basename "$t")"; else bad "unit $(basename "$t")"; cat /tmp/unit.txt; fi
done

# the CLI suite, transport rdma
RMIG_CLI_BIG=${RMIG_CLI_BIG:-256} tests/integration/cli.sh "$build" rdma "$IP" "$IP2" >/tmp/cli.txt 2>&1
cat /tmp/cli.txt
p=$(tail -1 /tmp/cli.txt | awk '/passed/ {print $1}')
f=$(tail -1 /tmp/cli.txt | awk '/passed/ {print $3}')
pass=$((pass + ${p:-0}))
fail=$((fail + ${f:-1}))
part cli

# --transport auto picks rdma here and says why
head -c 8M /dev/urandom >/tmp/a.img
rm -f /tmp/a.port
"$RM" recv --listen "$IP:0" --port-file /tmp/a.port --ram ram=/tmp/a.dst --quiet &
rp=$!
for _ in $(seq 100); do [ -s /tmp/a.port ] && break; sleep 0.05; done
if "$RM" send --to "$IP:$(cat /tmp/a.port)" --ram ram=/tmp/a.img --transport auto --verbose --json \
	>/tmp/a.json 2>/tmp/a.err && wait $rp && cmp -s /tmp/a.img /tmp/a.dst &&
	grep -q '"transport":"rdma"' /tmp/a.json && grep -q "transport: rdma (device rxe0" /tmp/a.err; then
	ok "auto: chose rdma ($(grep -o 'transport: rdma.*' /tmp/a.err))"
else
	bad "auto: $(cat /tmp/a.err /tmp/a.json)"
fi

# memlock too low for an unprivileged user: a clear error naming the fix
chmod 644 /tmp/a.img
rm -f /tmp/m.port
"$RM" recv --listen "$IP:0" --port-file /tmp/m.port --ram ram=/tmp/m.dst --timeout 5 --quiet 2>/tmp/m.rerr &
rp=$!
for _ in $(seq 100); do [ -s /tmp/m.port ] && break; sleep 0.05; done
setpriv --reuid=65534 --regid=65534 --clear-groups bash -c \
	"ulimit -l 64; '$RM' send --to '$IP:$(cat /tmp/m.port)' --ram ram=/tmp/a.img --transport rdma --timeout 5 --quiet" 2>/tmp/m.err
rc=$?
wait $rp
if [ $rc = 1 ] && grep -q "memlock limit is 64 KiB" /tmp/m.err && grep -q "raise it by at least" /tmp/m.err; then
	ok "low memlock: exit 1, $(grep -o 'raise it by at least [0-9]* KiB' /tmp/m.err)"
else
	bad "low memlock: rc $rc: $(cat /tmp/m.err)"
fi

part auto+memlock

# a QEMU VM migrated by vm-send / vm-recv, nested under TCG in this VM: one hop over
# rdma, one over tcp; the guest verifies every page. This kernel has soft-dirty bits
# (info says so) and the guests' RAM is tmpfs without swap: each hop must track by
# them, and the negative control (the last round skipped) must be caught
"$RM" info | grep "soft-dirty"
VMIG_HOPS=2 VMIG_QUICK=1 VMIG_NEG=1 VMIG_TRACKING=soft-dirty VMIG_TRANSPORTS="rdma tcp" \
	VMIG_BOOT_S=400 VMIG_TMO=200 tests/vmig/vm-migrate.sh "$build" rdma "$IP" >/tmp/vmig.txt 2>&1
cat /tmp/vmig.txt
p=$(tail -1 /tmp/vmig.txt | awk '/passed/ {print $2}')
f=$(tail -1 /tmp/vmig.txt | awk '/passed/ {print $4}')
pass=$((pass + ${p:-0}))
fail=$((fail + ${f:-1}))
[ "${p:-0}" -ge 3 ] || fail=$((fail + 1))
part vmig

# the fault matrix over rdma, last: its link drop takes dummy0 down and up
# (the ASan build when there is one, so leaks fail)
fb=$build
[ -x build-asan/tools/rdma-migrate ] && [ -x build-asan/tests/integration/hostile ] && fb=$PWD/build-asan
tests/fault/fault-matrix.sh "$fb" rdma "$IP" >/tmp/fault.txt 2>&1
cat /tmp/fault.txt
p=$(tail -1 /tmp/fault.txt | awk '/passed/ {print $1}')
f=$(tail -1 /tmp/fault.txt | awk '/passed/ {print $3}')
pass=$((pass + ${p:-0}))
fail=$((fail + ${f:-1}))

part fault
echo "rdma times:$times"
echo "rdma: $pass passed, $fail failed"
[ "$fail" = 0 ]
