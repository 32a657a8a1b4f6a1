#!/usr/bin/env bash
# vm-migrate.sh BUILD_DIR [TRANSPORT [ADDR]] - live-migrate a real QEMU VM
# with `rdma-migrate vm-send` / `vm-recv`, RAM moved by rmig, QEMU unmodified.
#
# The guest (guest.sh, workload.c) rewrites its pages all the time and can
# check every one of them on request (VERIFY OK / VERIFY FAIL) and report a
# counter that must never go back.
#   1. five migrations in a row, each to a fresh destination QEMU: every
#      destination verifies and its counter is past the source's; the last
#      round of each carried pages (the guest wrote while it ran);
#      (VMIG_TRACKING: each hop must have tracked so: soft-dirty or shadow-compare)
#   2. negative control: the last round skipped (RMIG_VM_TEST_SKIP_FINAL):
#      the destination must report VERIFY FAIL or its guest must die;
#   3. the source QEMU killed mid-round: vm-send and vm-recv exit 1 naming it;
#   4. the destination QEMU killed mid-round: vm-send exits 1 and the source
#      VM still runs and verifies;
#   5. a QMP socket that answers garbage: exit 1, the cause named;
#   6. RAM that is not shared file memory: refused, the fix named;
#   7. --track soft-dirty on a kernel without the bits: refused, the VM runs on;
#   8. a destination QEMU started on the source's own RAM file (one host, one
#      mem-path): refused before a page moves, the source VM runs and verifies;
#      vm-recv's --port-file naming that RAM file: a usage error;
#   9. a destination RAM file that is new (no zero page sent to it) or holds
#      old data (every zero page sent): the source's RAM byte for byte after;
#      negative control: old data taken for zeros must differ;
#  10. a destination RAM file on a file system without room: vm-recv exit 1,
#      naming it, before a page moves; the source VM runs on.
# Ends with "vm-migrate: N passed, M failed".
# shellcheck disable=SC2154 # ${NAME}_qmp etc. are set by guest_start
set -u
BUILD=$(cd "${1:?build dir}" && pwd)
TRANSPORT=${2:-tcp}
ADDR=${3:-127.0.0.1}
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/vmig/guest.sh
. tests/vmig/guest.sh
RM="$BUILD/tools/rdma-migrate"
MIB=128
pass=0
failed=0
t_start=$EPOCHREALTIME

ok() { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; failed=$((failed + 1)); }

# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	trap - EXIT
	((failed)) && guest_print_logs 20
	kill "$(jobs -p)" 2>/dev/null
	guest_stop_all
	umount "$GUEST_DIR/small" 2>/dev/null
	echo "vm-migrate: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t_start" "$EPOCHREALTIME") s"
	echo "vm-migrate: $pass passed, $failed failed"
	((failed == 0))
	exit
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

jfield() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null; }

# vm_recv DST: starts vm-recv for guest DST in the background; sets RPID, RPORT
vm_recv() {
	local dst=$1 q
	shift
	q=$(_guest_var "$dst" qmp)
	rm -f "$GUEST_DIR/$dst.port"
	"$RM" vm-recv --qmp "$q" --listen "$ADDR:0" --port-file "$GUEST_DIR/$dst.port" \
		--timeout "${VMIG_TMO:-20}" "$@" >"$GUEST_DIR/$dst.recv.out" 2>"$GUEST_DIR/$dst.recv.err" &
	RPID=$!
	for _ in $(seq 200); do
		[ -s "$GUEST_DIR/$dst.port" ] && break
		kill -0 "$RPID" 2>/dev/null || break
		sleep 0.05
	done
	RPORT=$(cat "$GUEST_DIR/$dst.port" 2>/dev/null)
}

# hop SRC DST [vm-send args]: one migration over $HOP_TRANSPORT (default TRANSPORT);
# vm-send's JSON goes into $GUEST_DIR/DST.json
hop() {
	local src=$1 dst=$2 q rc rrc tp=${HOP_TRANSPORT:-$TRANSPORT}
	shift 2
	q=$(_guest_var "$src" qmp)
	guest_start_incoming "$dst" "$GUEST_SHM/$dst.ram" $MIB -S || return 1
	vm_recv "$dst"
	"$RM" vm-send --qmp "$q" --to "$ADDR:$RPORT" --transport "$tp" --timeout "${VMIG_TMO:-20}" --json "$@" \
		>"$GUEST_DIR/$dst.json" 2>"$GUEST_DIR/$dst.send.err"
	rc=$?
	wait "$RPID"
	rrc=$?
	if [ $rc != 0 ] || [ $rrc != 0 ]; then
		echo "     vm-send $rc: $(tail -2 "$GUEST_DIR/$dst.send.err")"
		echo "     vm-recv $rrc: $(tail -2 "$GUEST_DIR/$dst.recv.err")"
		return 1
	fi
}

echo "# vm-send / vm-recv of a ${MIB} MiB QEMU guest over $TRANSPORT on $ADDR"
guest_start g0 "$GUEST_SHM/g0.ram" $MIB || exit 1
guest_wait_progress g0 "${VMIG_BOOT_S:-90}" >/dev/null || exit 1
prev=$(guest_counter g0)

# -- 1. five migrations in a row (VMIG_HOPS: fewer, as inside the soft-RoCE VM) --
for i in $(seq "${VMIG_HOPS:-5}"); do
	src=g$((i - 1))
	dst=g$i
	# VMIG_TRANSPORTS="rdma tcp": the transport of each hop in turn
	read -r -a tps <<<"${VMIG_TRANSPORTS:-$TRANSPORT}"
	HOP_TRANSPORT=${tps[$(((i - 1) % ${#tps[@]}))]}
	if ! hop "$src" "$dst" ${VMIG_SEND_ARGS:-}; then
		bad "migration $i ($src -> $dst) failed"
		exit 1
	fi
	j=$(cat "$GUEST_DIR/$dst.json")
	v=$(guest_verify "$dst" "${VMIG_TMO:-60}")
	vrc=$?
	c=$(guest_counter "$dst")
	state=$(guest_runstate "$dst")
	if [ $vrc = 0 ] && [ "$state" = running ] && [ -n "$c" ] && [ "$c" -ge "$prev" ] &&
		[ "$(jfield "$j" final_pages)" -gt 0 ] &&
		{ [ -z "${VMIG_TRACKING:-}" ] || [ "$(jfield "$j" tracking)" = "$VMIG_TRACKING" ]; }; then
		ok "migration $i over $(jfield "$j" transport), tracking by $(jfield "$j" tracking): $v, counter $prev -> $c, $(jfield "$j" rounds) rounds, downtime $(jfield "$j" downtime_ms) ms, last round $(jfield "$j" final_pages) pages, device state $(jfield "$j" device_state_bytes) bytes${VMIG_TRACKING:+, QEMU stopped $(jfield "$j" freezes) times for at most $(jfield "$j" freeze_ms_max) ms}"
	else
		bad "migration $i: verify '$v' ($vrc), state '$state', counter $prev -> '$c', json $j"
	fi
	prev=${c:-$prev}
	# the source, migrated, is 'postmigrate': a second vm-send of it is refused at
	# once (before: all of RAM moved, then QEMU refused), with --json saying why
	if [ "$i" = 1 ]; then
		"$RM" vm-send --qmp "$(_guest_var "$src" qmp)" --to "$ADDR:9" --timeout 3 --json \
			>"$GUEST_DIR/pm.json" 2>"$GUEST_DIR/pm.err"
		rc=$?
		if [ $rc = 1 ] && grep -q "the source QEMU is 'postmigrate'" "$GUEST_DIR/pm.err" &&
			[ "$(jfield "$(cat "$GUEST_DIR/pm.json")" ok)" = False ]; then
			ok "vm-send of a source already migrated: refused before connecting, --json says why"
		else
			bad "vm-send of a postmigrate source: rc $rc: $(cat "$GUEST_DIR/pm.err" "$GUEST_DIR/pm.json")"
		fi
	fi
	guest_stop "$src"
done
last=g${VMIG_HOPS:-5}
# VMIG_QUICK=1: the migrations only (nested under TCG, the rest would take too long),
# and with VMIG_NEG=1 the negative control too
if [ "${VMIG_QUICK:-0}" = 1 ] && [ "${VMIG_NEG:-0}" != 1 ]; then
	exit 0
fi

# -- 2. negative control: without the last round the destination is stale --
export RMIG_VM_TEST_SKIP_FINAL=1
if hop "$last" n1; then
	unset RMIG_VM_TEST_SKIP_FINAL
	v=$(guest_verify n1 30)
	vrc=$?
	j=$(cat "$GUEST_DIR/n1.json")
	# Stale pages land anywhere, the guest kernel's own included: the guest
	# may report VERIFY FAIL, its QEMU may die, or its kernel may hang or
	# panic and stop answering on the serial console. Each is the stale
	# destination seen; only an answer of VERIFY OK is the control failing.
	how=$v
	if [ $vrc != 0 ] && [ -z "$how" ]; then
		if ! kill -0 "$(_guest_var n1 pid)" 2>/dev/null; then
			how="the guest's QEMU died"
		elif ! guest_counter n1 10 >/dev/null 2>&1; then
			how="the guest stopped answering ($(grep -a -m1 -o 'Kernel panic.*\|BUG:.*\|Oops.*' "$(_guest_var n1 log)" | head -c 120 || true))"
		fi
	fi
	if [ $vrc != 0 ] && { [[ $how == VERIFY\ FAIL* ]] || [[ $how == "the guest"* ]]; }; then
		ok "negative control (last round skipped, $(jfield "$j" skipped_pages) pages left behind): $how"
	else
		bad "negative control: '${how:-$v}' ($vrc): skipping the last round went unnoticed"
	fi
else
	unset RMIG_VM_TEST_SKIP_FINAL
	bad "negative control: the migration itself failed"
fi
guest_stop n1
if [ "${VMIG_QUICK:-0}" = 1 ]; then
	exit 0
fi
# the source of the skipped run is stopped (postmigrate); a fresh guest for the rest
guest_stop "$last"
guest_start h0 "$GUEST_SHM/h0.ram" $MIB || exit 1
guest_wait_progress h0 90 >/dev/null || exit 1

# -- 3. the destination QEMU dies mid-round: the source VM keeps running --
guest_start_incoming k1 "$GUEST_SHM/k1.ram" $MIB -S
vm_recv k1
"$RM" vm-send --qmp "$h0_qmp" --to "$ADDR:$RPORT" --transport "$TRANSPORT" --timeout 5 \
	--max-bandwidth 16M >/dev/null 2>"$GUEST_DIR/k1.send.err" &
spid=$!
sleep 2
kill -9 "$k1_pid"
wait "$spid"
rc=$?
wait "$RPID"
rrc=$?
v=$(guest_verify h0 60)
vrc=$?
state=$(guest_runstate h0)
if [ $rc = 1 ] && [ $rrc = 1 ] && [ $vrc = 0 ] && [ "$state" = running ] &&
	grep -q "the VM is still running on the source" "$GUEST_DIR/k1.send.err" &&
	grep -q "the destination QEMU (pid [0-9]*) exited" "$GUEST_DIR/k1.recv.err"; then
	ok "destination QEMU killed mid-round: vm-send exit 1 ($(grep -m1 -o 'migration failed: .*' "$GUEST_DIR/k1.send.err" | cut -c1-90)), vm-recv exit 1 ($(grep -m1 -o 'migration failed: .*' "$GUEST_DIR/k1.recv.err" | cut -c1-70)), the source VM runs: $v"
else
	bad "destination QEMU killed: send $rc recv $rrc, source '$state', '$v': $(cat "$GUEST_DIR/k1.send.err" "$GUEST_DIR/k1.recv.err")"
fi

# -- 4. the source QEMU dies mid-round --
guest_start_incoming k2 "$GUEST_SHM/k2.ram" $MIB -S
vm_recv k2
"$RM" vm-send --qmp "$h0_qmp" --to "$ADDR:$RPORT" --transport "$TRANSPORT" --timeout 5 \
	--max-bandwidth 16M >/dev/null 2>"$GUEST_DIR/k2.send.err" &
spid=$!
sleep 2
kill -9 "$h0_pid"
wait "$spid"
rc=$?
wait "$RPID"
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "the source QEMU (pid [0-9]*) exited" "$GUEST_DIR/k2.send.err" &&
	grep -q "left paused" "$GUEST_DIR/k2.recv.err"; then
	ok "source QEMU killed mid-round: vm-send exit 1 ($(grep -m1 -o 'migration failed: .*' "$GUEST_DIR/k2.send.err" | cut -c1-80)); vm-recv exit 1, destination left paused"
else
	bad "source QEMU killed: send $rc recv $rrc: $(cat "$GUEST_DIR/k2.send.err" "$GUEST_DIR/k2.recv.err")"
fi

# -- 5. a QMP socket that answers garbage --
python3 - "$GUEST_DIR/junk.qmp" <<'PY' &
import os, socket, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(p)
s.listen(1)
c, _ = s.accept()
c.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
c.recv(4096)
c.sendall(b'\x1b[2J{not json at all\r\n')
c.recv(4096)
PY
jp=$!
for _ in $(seq 50); do [ -S "$GUEST_DIR/junk.qmp" ] && break; sleep 0.05; done
"$RM" vm-send --qmp "$GUEST_DIR/junk.qmp" --to "$ADDR:9" --timeout 3 2>"$GUEST_DIR/junk.err"
rc=$?
kill "$jp" 2>/dev/null
wait "$jp" 2>/dev/null
if [ $rc = 1 ] && grep -qi "qmp" "$GUEST_DIR/junk.err" && ! grep -q $'\x1b' "$GUEST_DIR/junk.err"; then
	ok "a QMP socket that answers garbage: exit 1 ($(head -1 "$GUEST_DIR/junk.err" | cut -c1-100))"
else
	bad "garbage QMP: rc $rc: $(cat -v "$GUEST_DIR/junk.err")"
fi

# -- 6. RAM that rmig cannot share --
guest_start p0 "$GUEST_SHM/p0.ram" $MIB -object memory-backend-ram,id=extra,size=8M
"$RM" vm-send --qmp "$p0_qmp" --to "$ADDR:9" --timeout 3 2>"$GUEST_DIR/p0.err"
rc=$?
if [ $rc = 1 ] && grep -q "rmig moves only memory-backend-file with share=on" "$GUEST_DIR/p0.err" &&
	[ "$(guest_runstate p0)" = running ]; then
	ok "RAM not in a shared file: refused ($(grep -o "RAM backend '[a-z0-9]*' is a [a-z-]*" "$GUEST_DIR/p0.err")), the VM runs on"
else
	bad "memory-backend-ram: rc $rc: $(cat "$GUEST_DIR/p0.err")"
fi

# -- 7. --track soft-dirty where the kernel has no soft-dirty bits: refused by name --
if "$RM" info | grep -q "soft-dirty tracking: unavailable"; then
	guest_stop p0
	guest_start s0 "$GUEST_SHM/s0.ram" $MIB
	"$RM" vm-send --qmp "$s0_qmp" --to "$ADDR:9" --track soft-dirty --timeout 3 2>"$GUEST_DIR/s0.err"
	rc=$?
	if [ $rc = 1 ] && grep -q "track soft-dirty: soft-dirty bits do not work on this kernel" "$GUEST_DIR/s0.err" &&
		[ "$(guest_runstate s0)" = running ]; then
		ok "--track soft-dirty on a kernel without the bits: refused ($(grep -o 'CONFIG_MEM_SOFT_DIRTY off' "$GUEST_DIR/s0.err")), the VM runs on"
	else
		bad "--track soft-dirty without the bits: rc $rc: $(cat "$GUEST_DIR/s0.err")"
	fi
else
	echo "# this kernel has soft-dirty bits: the refusal without them is not checked here"
fi

# -- 8. the destination QEMU on the source's own RAM file: vm-recv would write
#       stale copies of pages into the running guest; refused, by the file lock --
guest_stop p0 2>/dev/null
guest_stop s0 2>/dev/null
guest_start e0 "$GUEST_SHM/e0.ram" $MIB || exit 1
guest_wait_progress e0 90 >/dev/null || exit 1
guest_start_incoming e1 "$GUEST_SHM/e0.ram" $MIB -S || exit 1
"$RM" vm-recv --qmp "$e1_qmp" --listen "$ADDR:0" --port-file "$GUEST_SHM/e0.ram" --timeout 3 \
	2>"$GUEST_DIR/e1.pf.err"
prc=$?
size=$(stat -c %s "$GUEST_SHM/e0.ram")
VMIG_TMO=3 vm_recv e1
"$RM" vm-send --qmp "$e0_qmp" --to "$ADDR:$RPORT" --transport "$TRANSPORT" --timeout 3 \
	>/dev/null 2>"$GUEST_DIR/e1.send.err"
rc=$?
wait "$RPID"
rrc=$?
v=$(guest_verify e0 60)
vrc=$?
state=$(guest_runstate e0)
if [ $prc = 2 ] && [ "$size" = $((MIB << 20)) ] && grep -q "is the RAM file of" "$GUEST_DIR/e1.pf.err" &&
	[ $rc = 1 ] && [ $rrc = 1 ] && [ $vrc = 0 ] && [ "$state" = running ] &&
	grep -q "must not share a RAM file" "$GUEST_DIR/e1.send.err" &&
	grep -q "the VM is still running on the source" "$GUEST_DIR/e1.send.err"; then
	ok "destination QEMU on the source's RAM file: vm-send exit 1 ($(grep -m1 -o 'is in use by [^:]*' "$GUEST_DIR/e1.send.err")), vm-recv exit 1, --port-file on it exit 2, the source VM runs: $v"
else
	bad "one RAM file for both QEMUs: port-file $prc (size $size), send $rc, recv $rrc, source '$state', '$v': $(cat "$GUEST_DIR/e1.pf.err" "$GUEST_DIR/e1.send.err" "$GUEST_DIR/e1.recv.err")"
fi

# -- 9. a destination RAM file that reads as zero, or holds old data: after the
#       migration it is the source's RAM file byte for byte (both QEMUs stopped:
#       the source migrated, the destination --paused). vm-recv tells the source
#       that a file without data reads as zero, so its zero pages are not sent;
#       a file with data gets every zero page. Negative control: old data taken
#       for zeros (a test hook) must leave pages that differ --
guest_stop e0 2>/dev/null
guest_stop e1 2>/dev/null
# zero_case NAME FILL: migrates a fresh guest NAME0 to NAME1, whose RAM file is new
# (FILL 0) or all 0xa5 bytes (FILL 1); sets ZC to "same", "differs" or "failed: ..."
zero_case() {
	local s=${1}0 d=${1}1 rc rrc
	ZC="failed: starting the source guest $s"
	guest_start "$s" "$GUEST_SHM/$s.ram" $MIB || return
	guest_wait_progress "$s" 90 >/dev/null || return
	rm -f "$GUEST_SHM/$d.ram"
	ZC="failed: writing old data into $d's RAM file"
	if [ "$2" = 1 ]; then
		head -c $((MIB << 20)) /dev/zero | tr '\0' '\245' >"$GUEST_SHM/$d.ram" || return
	fi
	ZC="failed: starting the destination QEMU $d"
	guest_start_incoming "$d" "$GUEST_SHM/$d.ram" $MIB -S || return
	vm_recv "$d" --paused --verbose
	"$RM" vm-send --qmp "$(_guest_var "$s" qmp)" --to "$ADDR:$RPORT" --transport "$TRANSPORT" \
		--timeout "${VMIG_TMO:-20}" >/dev/null 2>"$GUEST_DIR/$d.send.err"
	rc=$?
	wait "$RPID"
	rrc=$?
	if [ $rc != 0 ] || [ $rrc != 0 ]; then
		ZC="failed: vm-send $rc, vm-recv $rrc: $(tail -2 "$GUEST_DIR/$d.send.err" "$GUEST_DIR/$d.recv.err")"
	elif [ "$(guest_runstate "$s")" != postmigrate ] || [ "$(guest_runstate "$d")" != paused ]; then
		ZC="failed: source '$(guest_runstate "$s")', destination '$(guest_runstate "$d")'"
	elif cmp -s "$GUEST_SHM/$s.ram" "$GUEST_SHM/$d.ram"; then
		ZC=same
	else
		ZC=differs
	fi
	guest_stop "$s"
	guest_stop "$d"
	rm -f "$GUEST_SHM/$s.ram" "$GUEST_SHM/$d.ram"
}
zero_case za 0
zc_new=$ZC
zmsg_new=$(grep -o "the RAM files hold no data yet" "$GUEST_DIR/za1.recv.err")
zero_case zb 1
zc_old=$ZC
zmsg_old=$(grep -o "the RAM files hold data" "$GUEST_DIR/zb1.recv.err")
RMIG_VM_TEST_ASSUME_ZEROED=1 zero_case zc 1
zc_neg=$ZC
if [ "$zc_new" = same ] && [ -n "$zmsg_new" ] && [ "$zc_old" = same ] && [ -n "$zmsg_old" ] &&
	[ "$zc_neg" = differs ]; then
	ok "destination RAM file new or of old data: byte for byte the source's RAM after the migration; old data taken for zeros (negative control): differs"
else
	bad "destination RAM that reads as zero or not: new '$zc_new' ($zmsg_new), old data '$zc_old' ($zmsg_old), negative control '$zc_neg' (must differ)"
fi

# -- 10. a destination RAM file on a file system without room for it: vm-recv
#        says so and exits 1 before a page moves (never SIGBUS); the source VM
#        runs on --
mkdir -p "$GUEST_DIR/small"
if mount -t tmpfs -o size=$((MIB / 2))m tmpfs "$GUEST_DIR/small" 2>/dev/null; then
	guest_start r0 "$GUEST_SHM/r0.ram" $MIB || exit 1
	guest_wait_progress r0 90 >/dev/null || exit 1
	guest_start_incoming r1 "$GUEST_DIR/small/r1.ram" $MIB -S || exit 1
	VMIG_TMO=5 vm_recv r1
	wait "$RPID"
	rrc=$?
	v=$(guest_verify r0 60)
	vrc=$?
	state=$(guest_runstate r0)
	if [ $rrc = 1 ] && grep -q "RAM file $GUEST_DIR/small/r1.ram of backend 'ram0': no room for its $((MIB << 20)) bytes" "$GUEST_DIR/r1.recv.err" &&
		[ $vrc = 0 ] && [ "$state" = running ]; then
		ok "destination RAM file on a file system too small: vm-recv exit 1 before listening, naming it; the source VM runs: $v"
	else
		bad "no room for the destination RAM: vm-recv $rrc, source '$state' '$v': $(cat "$GUEST_DIR/r1.recv.err")"
	fi
	guest_stop r1
	guest_stop r0
	umount "$GUEST_DIR/small"
else
	echo "# cannot mount a small tmpfs here: the destination without room is not checked"
fi
