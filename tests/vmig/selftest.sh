#!/usr/bin/env bash
# selftest.sh - checks the migration test guest and its harness (guest.sh)
# with QEMU's own migration only, no rmig:
#   1. a source guest boots to its first PROGRESS line (the time is printed)
#      and verifies;
#   2. QEMU migration (RAM over TCP) to a destination on another RAM file:
#      the destination verifies, its counter has not gone back, it runs on;
#   3. x-ignore-shared with pause-before-switchover: QEMU moves the device
#      state only, the RAM file is copied while the source is stopped (what
#      rdma-migrate vm-send/vm-recv do): verifies, counter not back;
#   4. negative control: a migration to a destination started with -S; before
#      cont, some of the workload's pages in its RAM file are corrupted and
#      some made stale (older versions copied back from an earlier RAM file
#      of the guest): verify must then report VERIFY FAIL, both kinds seen.
# Ends with "vmig-selftest: N passed, M failed"; exits 1 on any failure (the
# guests' console logs are printed), 0 otherwise.
#
# Environment: VMIG_MIB guest RAM (default 128; the host's kernel needs 96+),
# GUEST_WL_MIB / GUEST_WL_RATE the workload (default 32 MiB, 2000 pages/s),
# GUEST_KEEP=1 keeps the logs and RAM files (paths printed).
# shellcheck disable=SC2154 # d1_memfile etc. are set by guest_start
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/vmig/guest.sh
. tests/vmig/guest.sh

MIB=${VMIG_MIB:-128}
pass=0
failed=0
t_start=$EPOCHREALTIME

ok() { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; failed=$((failed + 1)); }
secs() { python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$2" "$1"; }

# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	trap - EXIT
	if ((failed)); then
		guest_print_logs 30
	fi
	[ "${GUEST_KEEP:-0}" = 1 ] && echo "vmig-selftest: kept $GUEST_DIR and $GUEST_SHM"
	guest_stop_all
	echo "vmig-selftest: total $(secs "$t_start" "$EPOCHREALTIME") s"
	echo "vmig-selftest: $pass passed, $failed failed"
	((failed == 0))
	exit
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# a JSON field of a QMP reply line: jget LINE key.key...
jget() {
	python3 -c 'import json,sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v.get(k, {}) if isinstance(v, dict) else {}
print("" if v == {} else v)' "$1" "$2"
}

caps() { # NAME CAP=on|off...
	local name=$1 c list=""
	shift
	for c in "$@"; do
		list+="${list:+,}{\"capability\":\"${c%=*}\",\"state\":$([ "${c#*=}" = on ] && echo true || echo false)}"
	done
	guest_qmp "$name" "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[$list]}}" >/dev/null
}

# migrate FROM TO: starts the migration to TO (started with -incoming defer)
migrate_start() {
	local port
	port=$(guest_free_port)
	guest_qmp "$2" "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}" >/dev/null &&
		guest_qmp "$1" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1073741824}}' >/dev/null &&
		guest_qmp "$1" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}" >/dev/null
}

# the source's figures after a completed migration
migrate_figures() {
	local r
	r=$(guest_qmp "$1" query-migrate) || return 0
	echo "     $1 -> $2: total $(jget "$r" return.total-time) ms, downtime $(jget "$r" return.downtime) ms," \
		"RAM transferred $(($(jget "$r" return.ram.transferred) >> 10)) KiB"
}

# running_after NAME: cont if it is paused; 0 when it is running
run_dest() {
	local st
	st=$(guest_runstate "$1") || return 1
	case $st in
	running) return 0 ;;
	paused | prelaunch | postmigrate) guest_qmp "$1" cont >/dev/null || return 1 ;;
	*) echo "     $1 is '$st'" >&2; return 1 ;;
	esac
	[ "$(guest_runstate "$1")" = running ]
}

echo "vmig-selftest: guest ${MIB} MiB, workload ${GUEST_WL_MIB:-32} MiB at ${GUEST_WL_RATE:-2000} pages/s; $(qemu-system-x86_64 --version | head -1)"

# ---- 1. boot ----
t0=$EPOCHREALTIME
if ! guest_start src "$GUEST_SHM/src.ram" "$MIB"; then
	bad "the source QEMU starts"
	exit
fi
t_qemu=$EPOCHREALTIME
if ! line=$(guest_wait_progress src 120); then
	bad "the source guest boots to PROGRESS"
	exit
fi
t1=$EPOCHREALTIME
ok "boot: '$line' $(secs "$t0" "$t1") s after guest_start (QEMU up in $(secs "$t0" "$t_qemu") s)"
if v=$(guest_verify src 60); then ok "source: $v"; else bad "source verifies: '$v'"; fi
c0=$(guest_counter src) || c0=""
if [ -n "$c0" ]; then ok "source: COUNTER $c0"; else bad "source answers counter"; fi

# ---- 2. QEMU migration, RAM over TCP ----
if guest_start_incoming d1 "$GUEST_SHM/d1.ram" "$MIB" && migrate_start src d1 &&
	st=$(guest_migrate_wait src 120) && guest_migrate_wait d1 60 >/dev/null; then
	ok "QEMU migration src -> d1 completed"
	migrate_figures src d1
else
	bad "QEMU migration src -> d1: ${st:-no status}"
	exit
fi
guest_stop src
if run_dest d1; then ok "d1 runs"; else bad "d1 runs"; fi
if v=$(guest_verify d1 60); then ok "d1: $v"; else bad "d1 verifies: '$v'"; fi
c1=$(guest_counter d1) || c1=""
if [ -n "$c1" ] && [ -n "$c0" ] && ((c1 >= c0)); then ok "d1: COUNTER $c1 >= $c0"; else bad "d1: COUNTER '$c1' >= '$c0'"; fi
if p=$(guest_wait_progress d1 15); then ok "d1 goes on: $p"; else bad "d1 goes on printing PROGRESS"; fi

# ---- 3. x-ignore-shared: device state by QEMU, RAM file copied ----
st=""
if guest_start_incoming d2 "$GUEST_SHM/d2.ram" "$MIB" &&
	caps d1 x-ignore-shared=on pause-before-switchover=on && caps d2 x-ignore-shared=on &&
	migrate_start d1 d2 && st=$(guest_migrate_wait d1 60 pre-switchover); then
	ts=$EPOCHREALTIME
	if dd if="$d1_memfile" of="$d2_memfile" bs=1M conv=notrunc,fsync status=none &&
		guest_qmp d1 '{"execute":"migrate-continue","arguments":{"state":"pre-switchover"}}' >/dev/null &&
		st=$(guest_migrate_wait d1 60) && guest_migrate_wait d2 60 >/dev/null; then
		ok "x-ignore-shared migration d1 -> d2 completed (RAM file copied at pre-switchover in $(secs "$ts" "$EPOCHREALTIME") s)"
		migrate_figures d1 d2
		r=$(guest_qmp d1 query-migrate)
		tr=$(jget "$r" return.ram.transferred)
		if [ -n "$tr" ] && ((tr < MIB * 1048576 / 8)); then ok "x-ignore-shared: QEMU sent no RAM pages ($tr bytes)"; else bad "x-ignore-shared: QEMU sent $tr bytes of RAM"; fi
	else
		bad "x-ignore-shared migration d1 -> d2: ${st:-no status}"
		exit
	fi
else
	bad "x-ignore-shared migration d1 -> d2 reaches pre-switchover: ${st:-no status}"
	exit
fi
guest_stop d1
if run_dest d2; then ok "d2 runs"; else bad "d2 runs"; fi
if v=$(guest_verify d2 60); then ok "d2: $v"; else bad "d2 verifies: '$v'"; fi
c2=$(guest_counter d2) || c2=""
if [ -n "$c2" ] && [ -n "$c1" ] && ((c2 >= c1)); then ok "d2: COUNTER $c2 >= $c1"; else bad "d2: COUNTER '$c2' >= '$c1'"; fi

# ---- 4. negative control: corrupted pages must be caught ----
st=""
if guest_start_incoming d3 "$GUEST_SHM/d3.ram" "$MIB" -S && caps d2 x-ignore-shared=off &&
	migrate_start d2 d3 && st=$(guest_migrate_wait d2 120) && guest_migrate_wait d3 60 >/dev/null; then
	ok "QEMU migration d2 -> d3 (-S) completed"
else
	bad "QEMU migration d2 -> d3: ${st:-no status}"
	exit
fi
guest_stop d2
st=$(guest_runstate d3)
if [ "$st" = paused ]; then ok "d3 waits paused (-S)"; else bad "d3 waits paused (-S), is '$st'"; fi
n=8
if cr=$(guest_corrupt_memfile "$d3_memfile" $n); then
	ok "corrupted in d3's RAM file: ${cr%% indices=*}"
else
	bad "corrupting workload pages in d3's RAM file"
fi
# d1's RAM file holds the guest as it was one migration ago: older pages
if sr=$(guest_stale_memfile "$d1_memfile" "$d3_memfile" $n); then
	ok "made stale in d3's RAM file (older versions from d1's): ${sr%% indices=*}"
else
	bad "making workload pages in d3's RAM file stale"
fi
# verify is sent before cont: the workload reads it first thing, before it
# rewrites (and so repairs) many of those pages
guest_serial_cmd d3 verify 60 >"$GUEST_DIR/d3.verify" &
vpid=$!
sleep 0.3
if run_dest d3; then ok "d3 runs after cont"; else bad "d3 runs after cont"; fi
wait "$vpid"
v=$(cat "$GUEST_DIR/d3.verify")
kinds=$(grep -a '^BADPAGES' "$d3_log" | tail -1 | tr -d '\r')
idx=",${cr##*indices=},${sr##*indices=},"
if [[ $v =~ ^VERIFY\ FAIL\ ([0-9]+)\ first=([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= 2 * n)) &&
	[[ $idx == *",${BASH_REMATCH[2]},"* ]]; then
	ok "d3 catches them: $v ($kinds)"
else
	bad "d3 catches them: got '$v' ($kinds), corrupted ${cr:-nothing}, stale ${sr:-nothing}"
fi
if [[ $kinds =~ generation=([0-9]+)\ checksum=([0-9]+) ]] && ((BASH_REMATCH[1] >= 1 && BASH_REMATCH[2] >= 1)); then
	ok "d3 tells stale pages (generation) from corrupted ones (checksum)"
else
	bad "d3 tells stale pages from corrupted ones: '$kinds'"
fi
c3=$(guest_counter d3) || c3=""
if [ -n "$c3" ] && [ -n "$c2" ] && ((c3 >= c2)); then ok "d3: COUNTER $c3 >= $c2"; else bad "d3: COUNTER '$c3' >= '$c2'"; fi
exit
