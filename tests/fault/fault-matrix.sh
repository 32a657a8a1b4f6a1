#!/usr/bin/env bash
# fault-matrix.sh BUILD_DIR [TRANSPORT [ADDR]] - kill, stall or cut off one end
# of a real `rdma-migrate send` -> `recv` migration at many points, and check
# what the other end does. TRANSPORT tcp (default, on the host; the link drop
# uses two network namespaces joined by a veth pair) or rdma (inside the
# soft-RoCE VM; the link drop takes the rxe netdev down).
#
# Every case: the survivor exits 1 (never 0, never a hang), names the cause,
# within its --timeout plus slack. With an ASan build, LeakSanitizer runs at
# the survivor's exit: any leak (buffers, registrations, sessions) turns the
# exit status into a failure. Prints a table row per case and ends with
# "N passed, N failed".
set -u
exec 2>&1 # job-control notices ("Killed") go where the report goes, in order
BUILD=$(cd "${1:?build dir}" && pwd)
TRANSPORT=${2:-tcp}
ADDR=${3:-127.0.0.1}
RM="$BUILD/tools/rdma-migrate"
HOSTILE="$BUILD/tests/integration/hostile"
PC_PEER="$BUILD/tests/integration/pc_peer" # postcopy between two processes
TMO=3       # survivor's --timeout, seconds
SLACK=6     # allowed beyond it (sanitizers, TCG)
W=$(mktemp -d "${TMPDIR:-/tmp}/rmig-fault.XXXXXX")
trap 'kill -9 $(jobs -p) 2>/dev/null; cleanup_netns; rm -rf "$W"' EXIT
export ASAN_OPTIONS=detect_leaks=1:exitcode=86
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
pass=0
fail=0
rows=()

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

head -c 48M /dev/urandom >"$W/img"
head -c 16M /dev/urandom >"$W/dev"

# wait_for PID SECONDS: its exit status, or 124 after killing it
wait_for() {
	local pid=$1 secs=$2 t=0
	while kill -0 "$pid" 2>/dev/null; do
		sleep 0.1
		t=$((t + 1))
		if [ $t -ge $((secs * 10)) ]; then
			kill -9 "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return 124
		fi
	done
	wait "$pid" 2>/dev/null
}

now() { date +%s.%N; }

# check NAME SIDE RC ERRFILE SECS EXPECT: the survivor's verdict
check() {
	local name=$1 side=$2 rc=$3 err=$4 secs=$5 expect=$6 why=""
	[ "$rc" = 1 ] || why="exit $rc"
	grep -qE -- "$expect" "$err" || why="${why:+$why, }no message matching '$expect'"
	if grep -qE "LeakSanitizer|AddressSanitizer|runtime error" "$err"; then why="${why:+$why, }sanitizer report"; fi
	python3 -c "import sys; sys.exit(not $secs <= $TMO + $SLACK)" || why="${why:+$why, }took ${secs}s"
	local msg
	# the survivor's last word, without the tool's prefix
	msg=$(grep -E -- "$expect" "$err" | tail -1 | sed -E 's/^rdma-migrate (send|recv): migration failed: //; s/^rdma-migrate: (error: )?//')
	if [ -z "$why" ]; then
		ok "$name: $side exit 1 after ${secs}s: $msg"
		rows+=("| $name | $side | 1 | ${secs} | ${msg//|/\\|} |")
	else
		bad "$name: $side: $why"
		sed 's/^/     /' "$err" | tail -15
		rows+=("| $name | $side | $rc | ${secs} | FAILED: $why |")
	fi
}

start_recv() { # NAME [env...] -- ARGS: sets RPID, RPORT
	local name=$1
	shift
	local envs=()
	while [ "$1" != "--" ]; do envs+=("$1"); shift; done
	shift
	rm -f "$W/$name.port"
	"${RECV_NS[@]}" env "${envs[@]}" "$RM" recv --listen "$LISTEN:0" --port-file "$W/$name.port" --quiet "${RECV_EXTRA[@]}" "$@" \
		>"$W/$name.rout" 2>"$W/$name.rerr" &
	RPID=$!
	for _ in $(seq 200); do [ -s "$W/$name.port" ] && break; sleep 0.05; done
	RPORT=$(cat "$W/$name.port" 2>/dev/null)
}

LISTEN=$ADDR
RECV_NS=()
SEND_NS=()
RECV_EXTRA=()
SEND_ARGS=(--transport "$TRANSPORT" --channels 4 --max-bandwidth 32M --quiet)
# send's extra options for link_drop and link_resume (the VM's: no TCP fallback)
NO_FB=()

# source_dies NAME POINT ACTION EXPECT [send args]: recv survives
source_dies() {
	local name=$1 point=$2 action=$3 expect=$4
	shift 4
	start_recv "$name" -- --ram "ram=$W/$name.dst" --state-dir "$W" --timeout $TMO
	local t0 spid rc
	t0=$(now)
	RMIG_FAULT="$point:$action" "${SEND_NS[@]}" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" \
		"${SEND_ARGS[@]}" --timeout 30 "$@" >/dev/null 2>"$W/$name.serr" &
	spid=$!
	wait_for "$RPID" $((TMO + SLACK + 5))
	rc=$?
	check "$name" recv "$rc" "$W/$name.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "$expect"
	kill -9 "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
}

# dest_dies NAME POINT ACTION EXPECT [send args]: send survives
dest_dies() {
	local name=$1 point=$2 action=$3 expect=$4
	shift 4
	start_recv "$name" "RMIG_FAULT=$point:$action" -- --ram "ram=$W/$name.dst" --state-dir "$W" --timeout 30
	local t0 spid rc
	t0=$(now)
	"${SEND_NS[@]}" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" "${SEND_ARGS[@]}" \
		--timeout $TMO "$@" >/dev/null 2>"$W/$name.serr" &
	spid=$!
	wait_for "$spid" $((TMO + SLACK + 5))
	rc=$?
	check "$name" send "$rc" "$W/$name.serr" "$(python3 -c "print(round($(now) - $t0, 1))")" "$expect"
	kill -9 "$RPID" 2>/dev/null
	wait "$RPID" 2>/dev/null
}

# dest_dies_at NAME POINT EXPECT [send args]: the source stops itself at POINT
# (a sync in flight, or about to complete); the destination is killed
# meanwhile; the source resumes and must fail, naming the cause
dest_dies_at() {
	local name=$1 point=$2 expect=$3
	shift 3
	start_recv "$name" -- --ram "ram=$W/$name.dst" --state-dir "$W" --timeout 30
	local t0 spid rc
	RMIG_FAULT="$point:stop" "${SEND_NS[@]}" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" \
		"${SEND_ARGS[@]}" --timeout $TMO "$@" >/dev/null 2>"$W/$name.serr" &
	spid=$!
	for _ in $(seq 600); do
		[ "$(ps -o stat= -p "$spid" 2>/dev/null | cut -c1)" = T ] && break
		sleep 0.05
	done
	kill -9 "$RPID" 2>/dev/null
	wait "$RPID" 2>/dev/null
	t0=$(now) # the survivor's clock starts at the death
	kill -CONT "$spid"
	wait_for "$spid" $((TMO + SLACK + 5))
	rc=$?
	check "$name" send "$rc" "$W/$name.serr" "$(python3 -c "print(round($(now) - $t0, 1))")" "$expect"
}

echo "fault matrix: $TRANSPORT on $ADDR, survivor --timeout ${TMO}s, 48 MiB at 32 MiB/s over 4 channels"
GONE="peer closed the connection|peer silent|timed out|Connection reset|connection reset|refused|completion error|rdma: .*(disconnect|error)"

# -- the source dies --
# in the handshake: a source that sends half a HELLO and is gone
start_recv src-handshake -- --ram "ram=$W/hs.dst" --timeout $TMO
t0=$(now)
"$HOSTILE" source truncated-hello "$ADDR:$RPORT" >/dev/null 2>&1 &
hp=$!
wait_for "$RPID" $((TMO + SLACK + 5))
check src-handshake recv $? "$W/src-handshake.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "peer closed the connection"
wait "$hp" 2>/dev/null
source_dies src-first-round connected kill "$GONE"
source_dies src-mid-round mid-round kill "$GONE"
source_dies src-during-sync sync kill "$GONE"
source_dies src-device-state state kill "$GONE" --state "dev=$W/dev"
source_dies src-completion complete kill "$GONE" --state "dev=$W/dev"
source_dies src-stalled mid-round stop "peer silent for 3000 ms|timed out"

# -- sources that trickle, stall or are strangers: the wait is bounded all the same --
# a HELLO one byte at a time, each well inside the timeout: the message deadline ends it
start_recv src-trickles-hello -- --ram "ram=$W/th.dst" --timeout $TMO
t0=$(now)
python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for b in b"RMIG\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00" * 4:
    try:
        s.send(bytes([b]))
    except OSError:
        break
    time.sleep(0.5)
' "$ADDR" "$RPORT" >/dev/null 2>&1 &
hp=$!
wait_for "$RPID" $((TMO + SLACK + 5))
check src-trickles-hello recv $? "$W/src-trickles-hello.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "waiting for HELLO: timed out|still in the handshake when the wait ended"
kill "$hp" 2>/dev/null
wait "$hp" 2>/dev/null
# half a frame on a data channel, the control connection kept alive with PINGs
if [ "$TRANSPORT" = tcp ]; then
	start_recv src-stalls-data -- --ram "ram=$W/sd.dst" --timeout $TMO
	t0=$(now)
	"$HOSTILE" source stall-mid-frame "$ADDR:$RPORT" >/dev/null 2>&1 &
	hp=$!
	wait_for "$RPID" $((TMO + SLACK + 5))
	check src-stalls-data recv $? "$W/src-stalls-data.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "stalled: a frame did not arrive whole"
	wait "$hp" 2>/dev/null
fi
# with a key: a port scan, idle connections and a wrong key, and no real source
head -c 32 /dev/urandom >"$W/skey"
head -c 32 /dev/urandom >"$W/skey2"
chmod 600 "$W/skey" "$W/skey2"
start_recv strays-only -- --ram "ram=$W/so.dst" --timeout $TMO --key-file "$W/skey"
t0=$(now)
python3 -c '
import socket, sys, time
a = (sys.argv[1], int(sys.argv[2]))
socket.create_connection(a).close()
held = [socket.create_connection(a) for _ in range(8)]
time.sleep(6)
' "$ADDR" "$RPORT" >/dev/null 2>&1 &
hp=$!
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" --transport "$TRANSPORT" --key-file "$W/skey2" --timeout $TMO --quiet >/dev/null 2>&1
wait_for "$RPID" $((TMO + SLACK + 5))
check strays-only recv $? "$W/strays-only.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "no source that holds the key; refused [0-9]+ connections"
kill "$hp" 2>/dev/null
wait "$hp" 2>/dev/null

# -- the destination dies --
dest_dies dst-handshake handshake kill "$GONE"
dest_dies dst-first-round accepted kill "$GONE"
dest_dies dst-mid-round mid-round kill "$GONE"
dest_dies_at dst-during-sync sync "$GONE"
dest_dies dst-device-state state kill "$GONE" --state "dev=$W/dev"
dest_dies_at dst-completion complete "$GONE" --state "dev=$W/dev"
dest_dies dst-stalled mid-round stop "peer silent for 3000 ms|timed out|no data channel became idle|no acknowledgement"

# -- TLS on every connection (tcp only): a death or a stall under TLS reads the same --
head -c 32 /dev/urandom >"$W/key"
chmod 600 "$W/key"
TLS=(--key-file "$W/key" --tls)
if [ "$TRANSPORT" = tcp ]; then
	RECV_EXTRA=("${TLS[@]}")
	source_dies tls-src-mid-round mid-round kill "$GONE" "${TLS[@]}"
	source_dies tls-src-stalled mid-round stop "peer silent for 3000 ms|timed out" "${TLS[@]}"
	dest_dies tls-dst-mid-round mid-round kill "$GONE" "${TLS[@]}"
	dest_dies tls-dst-stalled mid-round stop "peer silent for 3000 ms|timed out|no data channel became idle|no acknowledgement" "${TLS[@]}"
	RECV_EXTRA=()
fi

# -- the link drops mid-transfer: both ends must fail --
link_drop() { # NAME DOWN_CMD...
	local name=$1
	shift
	start_recv "$name" -- --ram "ram=$W/$name.dst" --timeout $TMO
	local t0 spid rc rrc
	t0=$(now)
	# slower, so that the drop lands mid-transfer even under TCG and ASan
	"${SEND_NS[@]}" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" "${SEND_ARGS[@]}" "${NO_FB[@]}" \
		--max-bandwidth 8M --timeout $TMO >/dev/null 2>"$W/$name.serr" &
	spid=$!
	sleep "${DROP_AFTER:-2}" # into the transfer: 48 MiB at 8 MiB/s
	"$@"
	t0=$(now) # the survivors' clocks start at the drop
	wait_for "$spid" $((TMO + SLACK + 5))
	rc=$?
	check "$name" send "$rc" "$W/$name.serr" "$(python3 -c "print(round($(now) - $t0, 1))")" "$GONE|stalled"
	wait_for "$RPID" $((TMO + SLACK + 5))
	rrc=$?
	check "$name" recv "$rrc" "$W/$name.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "$GONE|stalled"
}

# link_resume NAME DOWN_SECS WINDOW: the link goes down 2 s (DROP_AFTER) into the transfer
# (link_down) and comes back DOWN_SECS later (link_up); send --resume and
# recv --keep wait WINDOW seconds for each other. Within the window both end
# 0, the image equal, and the resumed source sent less than all of it; past
# it both end 1, the destination saying no source came back.
link_resume() {
	local name=$1 down=$2 window=$3
	start_recv "$name" -- --ram "ram=$W/$name.dst" --timeout $TMO --keep --recovery-timeout "$window"
	local t0 spid rc rrc why=""
	"${SEND_NS[@]}" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" --transport "$TRANSPORT" \
		--channels 4 --max-bandwidth 8M --timeout $TMO --resume --recovery-timeout "$window" \
		"${NO_FB[@]}" --verify >/dev/null 2>"$W/$name.serr" &
	spid=$!
	sleep "${DROP_AFTER:-2}"
	link_down
	sleep "$down"
	link_up
	t0=$(now)
	wait_for "$spid" $((TMO + SLACK + window + 20))
	rc=$?
	wait_for "$RPID" $((TMO + SLACK + window + 20))
	rrc=$?
	if [ "$down" -lt "$window" ]; then
		[ "$rc" = 0 ] || why="send exit $rc"
		[ "$rrc" = 0 ] || why="${why:+$why, }recv exit $rrc"
		cmp -s "$W/img" "$W/$name.dst" || why="${why:+$why, }the image differs"
		grep -qE "resumed: the destination holds [1-9]" "$W/$name.serr" ||
			why="${why:+$why, }no resume that saved bytes"
		if grep -qE "LeakSanitizer|AddressSanitizer|runtime error" "$W/$name.serr" "$W/$name.rerr"; then
			why="${why:+$why, }sanitizer report"
		fi
		local held
		held=$(grep -oE "holds [0-9.]+ of [0-9.]+ MiB" "$W/$name.serr" | head -1)
		rows+=("| $name | both | $rc/$rrc | $(python3 -c "print(round($(now) - $t0, 1))") | resumed: the destination $held |")
		if [ -z "$why" ]; then ok "$name: resumed after ${down}s down, image equal ($held)"; else
			bad "$name: $why"
			sed 's/^/    send: /' "$W/$name.serr" | tail -8
			sed 's/^/    recv: /' "$W/$name.rerr" | tail -8
		fi
	else
		check "$name" send "$rc" "$W/$name.serr" 0 "migration failed"
		check "$name" recv "$rrc" "$W/$name.rerr" 0 "no source resumed the migration within $window s"
	fi
}

# rail_failover NAME DOWN_CMD [-- UP_CMD]: two rails (RECV_EXTRA's --listen);
# the second rail goes down 2 s (DROP_AFTER) into the transfer and stays
# down. Plain send and recv: the rail fails over within the session, and
# what it may have lost goes again through rail 0: both end 0, the image
# equal, --json counts the failover (and no resume). UP_CMD, if any, runs
# once a side said what it did, while the migration goes on. With
# FO_FALLBACK=1 every rail goes: the channels go on over TCP within the
# session (the TCP fallback), and --json says so on both ends.
rail_failover() {
	local name=$1 down=() up=() t0 spid rc rrc why=""
	shift
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do down+=("$1"); shift; done
	[ $# -gt 0 ] && shift && up=("$@")
	start_recv "$name" -- --ram "ram=$W/$name.dst" --timeout $TMO --json
	local said_re="failed: .* goes on through the other"
	[ "${FO_FALLBACK:-0}" = 1 ] && said_re="it was the last: the migration goes on over tcp"
	"${SEND_NS[@]}" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" --transport "$TRANSPORT" \
		--channels 4 --max-bandwidth 8M --timeout $TMO \
		--verify --json >"$W/$name.json" 2>"$W/$name.serr" &
	spid=$!
	sleep "${DROP_AFTER:-2}"
	"${down[@]}"
	t0=$(now)
	if [ ${#up[@]} -gt 0 ]; then
		for _ in $(seq 300); do
			grep -qE "$said_re" "$W/$name.serr" "$W/$name.rerr" && break
			sleep 0.1
		done
		"${up[@]}"
	fi
	wait_for "$spid" $((TMO + SLACK + 40))
	rc=$?
	wait_for "$RPID" $((TMO + SLACK + 40))
	rrc=$?
	[ "$rc" = 0 ] || why="send exit $rc"
	[ "$rrc" = 0 ] || why="${why:+$why, }recv exit $rrc"
	cmp -s "$W/img" "$W/$name.dst" || why="${why:+$why, }the image differs"
	grep -qE "$said_re" "$W/$name.serr" "$W/$name.rerr" ||
		why="${why:+$why, }neither side said '$said_re'"
	if [ "${FO_FALLBACK:-0}" = 1 ]; then
		# both ends went on over tcp, every channel on the fallback's rail; pages went again
		python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); d=json.loads(open(sys.argv[2]).read().strip().splitlines()[-1]); sys.exit(not (s["ok"] and s["verified"] and s["resumes"] == 0 and s["failovers"] >= 1 and s["failover_pages"] > 0 and s["tcp_fallback"] and d["tcp_fallback"] and len({p["rail"] for p in s["placement"]}) == 1 and s["placement"][0]["rail"] >= 1 and s["rails"][0]["bytes"] > 0))' \
			"$W/$name.json" "$W/$name.rout" 2>/dev/null || why="${why:+$why, }--json: no tcp fallback on both ends, channels left on an rdma rail, or no bytes on rail 0 before the move"
	else
		# both ends count the failover; the source sent pages again, and both rails carried bytes
		python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); d=json.loads(open(sys.argv[2]).read().strip().splitlines()[-1]); sys.exit(not (s["ok"] and s["verified"] and s["resumes"] == 0 and s["failovers"] == 1 and s["failover_pages"] > 0 and d["failovers"] == 1 and len({p["rail"] for p in s["placement"]}) == 2))' \
			"$W/$name.json" "$W/$name.rout" 2>/dev/null || why="${why:+$why, }--json: no failover counted on both ends (or a resume)"
	fi
	if grep -qE "LeakSanitizer|AddressSanitizer|runtime error" "$W/$name.serr" "$W/$name.rerr"; then
		why="${why:+$why, }sanitizer report"
	fi
	local said
	said=$(grep -hoE "($said_re).*" "$W/$name.serr" "$W/$name.rerr" | head -1 | cut -c1-110)
	rows+=("| $name | both | $rc/$rrc | $(python3 -c "print(round($(now) - $t0, 1))") | ${said//|/\\|} |")
	if [ -z "$why" ]; then ok "$name: image equal ($said)"; else
		bad "$name: $why"
		sed 's/^/    send: /' "$W/$name.serr" | tail -10
		sed 's/^/    recv: /' "$W/$name.rerr" | tail -10
	fi
}

# pc_resume NAME DOWN_SECS WINDOW DROPS [STRANGER]: postcopy between two
# pc_peer processes (the destination's guest reads and checks every page as
# it faults in); the link goes down DROPS times, 1 s after the guest starts
# and again 1 s after each resume, for DOWN_SECS. With STRANGER, both ends
# hold a key and, once the destination paused, a source with another key
# knocks on it from the destination's side of the link (the link comes up
# 1 s after it was refused). Within the window both end 0, the guest read
# every page right and the memory is equal; past it both end 1 and no
# thread is left waiting (the destination names the window).
pc_resume() {
	local name=$1 down=$2 window=$3 drops=$4 stranger=${5:-} key="" dpid spid rc rrc why="" t0
	local ups=() # when the link came up, each time
	[ -n "$stranger" ] && key=k3y-of-the-migration
	"${RECV_NS[@]}" "$PC_PEER" dest "$ADDR" 7300 48 "$window" "$key" 2>"$W/$name.rerr" &
	dpid=$!
	sleep 0.5
	"${SEND_NS[@]}" "$PC_PEER" source "$ADDR" 7300 48 "$window" "$key" 2>"$W/$name.serr" &
	spid=$!
	for d in $(seq "$drops"); do
		for _ in $(seq 100); do # the guest runs (first drop), or runs again (later ones)
			[ "$(grep -cE "guest starts|resumed by" "$W/$name.rerr")" -ge "$d" ] && break
			sleep 0.1
		done
		sleep 1
		link_down
		if [ -n "$stranger" ]; then
			for _ in $(seq 100); do # the destination pauses once its 3 s wait runs out
				grep -q "waiting for the source to resume" "$W/$name.rerr" && break
				sleep 0.1
			done
			printf 'another key, not the one' >"$W/$name.key"
			chmod 600 "$W/$name.key"
			head -c 1M /dev/urandom >"$W/$name.small"
			for _ in $(seq 20); do # (until the destination listens again)
				"${RECV_NS[@]}" "$RM" send --to "$ADDR:7300" --ram "ram=$W/$name.small" \
					--key-file "$W/$name.key" --timeout 3 >/dev/null 2>"$W/$name.xerr"
				echo "stranger exit $?" >>"$W/$name.xerr"
				grep -q "Connection refused" "$W/$name.xerr" || break
				sleep 0.1
			done
			sleep 1
		else
			sleep "$down"
		fi
		link_up
		ups+=("$(now)")
	done
	t0=$(now)
	wait_for "$spid" $((window + 40))
	rc=$?
	wait_for "$dpid" $((window + 40))
	rrc=$?
	if [ "$down" -lt "$window" ]; then
		[ "$rc" = 0 ] || why="source exit $rc"
		[ "$rrc" = 0 ] || why="${why:+$why, }destination exit $rrc"
		grep -q "migrated after $drops resume(s); the guest read all 12288 pages right, and the memory is equal; $drops pause(s)" "$W/$name.rerr" ||
			why="${why:+$why, }not $drops pause(s) and every page right"
		if [ -n "$stranger" ]; then
			grep -q "stranger exit 1" "$W/$name.xerr" || why="${why:+$why, }the stranger was not refused"
			grep -q "key does not match" "$W/$name.xerr" || why="${why:+$why, }the stranger was not told its key is wrong"
		fi
		if grep -qE "LeakSanitizer|AddressSanitizer|runtime error" "$W/$name.serr" "$W/$name.rerr"; then
			why="${why:+$why, }sanitizer report"
		fi
		local said back
		said=$(grep -oE "[0-9]+ pause\(s\), [0-9]+ ms paused, [0-9]+ page\(s\) asked for again" "$W/$name.rerr")
		# link up to resumed, each time (the destination's clock; the same machine)
		back=$(grep -oE "resumed by the source at [0-9.]+" "$W/$name.rerr" | awk '{print $NF}' |
			paste -sd' ' | python3 -c "import sys; b=sys.stdin.read().split(); u='${ups[*]}'.split(); print(', '.join('%.2f s' % (float(x) - float(y)) for x, y in zip(b, u)))")
		said="$said; link up to resumed: $back"
		rows+=("| $name | both | $rc/$rrc | $(python3 -c "print(round($(now) - $t0, 1))") | postcopy resumed: every page right; $said |")
		if [ -z "$why" ]; then ok "$name: postcopy resumed after $drops drop(s) of ${down}s: $said"; else
			bad "$name: $why"
			sed 's/^/    source: /' "$W/$name.serr" | tail -8
			sed 's/^/    dest: /' "$W/$name.rerr" | tail -8
			[ -f "$W/$name.xerr" ] && sed 's/^/    stranger: /' "$W/$name.xerr" | tail -4
		fi
	else
		check "$name" source "$rc" "$W/$name.serr" 0 "could not resume"
		check "$name" dest "$rrc" "$W/$name.rerr" 0 "no source resumed the migration within"
	fi
}

cleanup_netns() {
	ip netns del rmig-fa 2>/dev/null
	ip netns del rmig-fb 2>/dev/null
}

if [ "$TRANSPORT" = tcp ]; then
	# recv in namespace rmig-fa (10.99.0.1), send in rmig-fb (10.99.0.2), one veth pair
	cleanup_netns
	if ip netns add rmig-fa && ip netns add rmig-fb &&
		ip link add rmig-va netns rmig-fa type veth peer name rmig-vb netns rmig-fb &&
		ip -n rmig-fa addr add 10.99.0.1/24 dev rmig-va && ip -n rmig-fb addr add 10.99.0.2/24 dev rmig-vb &&
		ip -n rmig-fa link set rmig-va up && ip -n rmig-fb link set rmig-vb up &&
		ip -n rmig-fa link set lo up && ip -n rmig-fb link set lo up; then
		# recv in rmig-fa, send in rmig-fb; the drop takes the send side's veth down
		LISTEN=10.99.0.1
		saved_addr=$ADDR
		ADDR=10.99.0.1
		RECV_NS=(ip netns exec rmig-fa)
		SEND_NS=(ip netns exec rmig-fb)
		link_drop link-drop ip -n rmig-fb link set rmig-vb down
		ip -n rmig-fb link set rmig-vb up
		link_down() { ip -n rmig-fb link set rmig-vb down; }
		link_up() { ip -n rmig-fb link set rmig-vb up; }
		link_resume link-resume 4 30
		link_resume resume-window 8 2
		if [ -x "$PC_PEER" ]; then
			pc_resume pc-link-resume 5 20 1
			pc_resume pc-link-twice 5 20 2
			pc_resume pc-stranger 6 20 1 stranger
			pc_resume pc-window 9 2 1
		else
			bad "pc-link-resume: no $PC_PEER"
		fi
		RECV_EXTRA=("${TLS[@]}")
		saved_send=("${SEND_ARGS[@]}")
		SEND_ARGS+=("${TLS[@]}")
		link_drop tls-link-drop ip -n rmig-fb link set rmig-vb down
		RECV_EXTRA=()
		SEND_ARGS=("${saved_send[@]}")
		ip -n rmig-fb link set rmig-vb up
		# two rails, a veth pair each; the second rail's link goes down
		# mid-transfer: it fails over within the session, and the migration
		# goes on through rail 0. Both links down: nothing is left, and both
		# ends fail, naming the channel that went.
		if ip link add rmig-va2 netns rmig-fa type veth peer name rmig-vb2 netns rmig-fb &&
			ip -n rmig-fa addr add 10.98.0.1/24 dev rmig-va2 &&
			ip -n rmig-fb addr add 10.98.0.2/24 dev rmig-vb2 &&
			ip -n rmig-fa link set rmig-va2 up && ip -n rmig-fb link set rmig-vb2 up; then
			RECV_EXTRA=(--listen 10.98.0.1:0)
			rail_failover rail-failover ip -n rmig-fb link set rmig-vb2 down
			ip -n rmig-fb link set rmig-vb2 up
			ip -n rmig-fb addr show rmig-vb2 | grep -q 10.98.0.2 || ip -n rmig-fb addr add 10.98.0.2/24 dev rmig-vb2
			both_down() { ip -n rmig-fb link set rmig-vb2 down; ip -n rmig-fb link set rmig-vb down; }
			link_drop rails-all-down both_down
			ip -n rmig-fb link set rmig-vb up
			ip -n rmig-fb link set rmig-vb2 up
			ip -n rmig-fb addr show rmig-vb2 | grep -q 10.98.0.2 || ip -n rmig-fb addr add 10.98.0.2/24 dev rmig-vb2
			ip -n rmig-fb addr show rmig-vb | grep -q 10.99.0.2 || ip -n rmig-fb addr add 10.99.0.2/24 dev rmig-vb
			RECV_EXTRA=()
		else
			bad "rail-failover: could not build the second veth pair"
		fi
		RECV_NS=()
		SEND_NS=()
		ADDR=$saved_addr
		LISTEN=$saved_addr
	else
		bad "link-drop: could not build the network namespaces (root and iproute2 needed)"
	fi
	cleanup_netns
else
	# dummyN up again, its address back, and rxeN's port active
	dummy_up() { # N ADDR
		ip link set "dummy$1" up
		ip addr show "dummy$1" | grep -q "$2" || ip addr add "$2/24" dev "dummy$1"
		for _ in $(seq 100); do
			ibv_devinfo -d "rxe$1" 2>/dev/null | grep -q PORT_ACTIVE && break
			sleep 0.1
		done
	}
	dummy0_up() { dummy_up 0 "$ADDR"; }
	dummy1_up() { dummy_up 1 "$ADDR2"; }
	# a migration begun while rxe0's port is down: both ends fail at once,
	# naming the port (no connection request goes out through it)
	ip link set dummy0 down
	start_recv port-down -- --ram "ram=$W/port-down.dst" --timeout $TMO
	t0=$(now)
	"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/img" "${SEND_ARGS[@]}" --timeout $TMO \
		>/dev/null 2>"$W/port-down.serr"
	rc=$?
	check port-down send "$rc" "$W/port-down.serr" "$(python3 -c "print(round($(now) - $t0, 1))")" "port 1 is down"
	wait_for "$RPID" $((TMO + SLACK + 5))
	rrc=$?
	check port-down recv "$rrc" "$W/port-down.rerr" "$(python3 -c "print(round($(now) - $t0, 1))")" "port 1 is down"
	dummy0_up
	# send --resume and recv --keep across dummy0 down for 4 s. The control
	# connection (a local address) stays up; while rxe0's port is down no
	# connection-manager message goes out (a data channel's connect and
	# listen fail at once, and a connection closed then is destroyed once
	# the port is up), and the resume goes on once it is up again.
	link_down() { ip link set dummy0 down; }
	link_up() { dummy0_up; }
	# dummy0 down takes rxe0, the only RDMA rail, and leaves the control
	# connection's local address up: a migration would go on over TCP
	# (rdma-to-tcp below). These rows break it instead, as a link to
	# another host would: no TCP fallback.
	NO_FB=(--no-tcp-fallback)
	# (3.5 s in: under TCG the connect takes up to 1.5 s, and the first
	# step's sync must be acknowledged before the drop for a resume that
	# saves bytes)
	DROP_AFTER=3.5 link_resume link-resume 4 30
	# (No postcopy rows here: dummy0 down for 5 s does not break a postcopy
	# migration between two processes of this VM, whose pages go by SEND a
	# few at a time; it goes on after the outage with no pause. Postcopy
	# pause and resume over RDMA run in-process in test_resume.)
	# two rails (rxe0, and rxe1 on dummy1); the second one's netdev goes down
	# mid-transfer: rxe1 fails over within the session, and the migration
	# goes on through rxe0. dummy1 comes back once a side said so, so that
	# no process exits while its port is down (see link-drop below).
	ADDR2=${SOFTROCE_IP2:-10.0.1.1}
	if ip addr show dummy1 2>/dev/null | grep -q "$ADDR2"; then
		RECV_EXTRA=(--listen "$ADDR2:0")
		DROP_AFTER=5 rail_failover rail-failover ip link set dummy1 down -- dummy1_up
		RECV_EXTRA=()
		ip link set dummy1 up
		ip addr show dummy1 | grep -q "$ADDR2" || ip addr add "$ADDR2/24" dev dummy1
	else
		bad "rail-failover: no second rail ($ADDR2 on dummy1) in this VM"
	fi
	# every RDMA rail gone (rxe0's netdev down; the control connection, a
	# local address, stays up): plain send and recv go on over tcp within
	# the session (the tcp fallback). dummy0 comes back once a side said so,
	# before any process exits.
	RECV_EXTRA=()
	DROP_AFTER=5 FO_FALLBACK=1 rail_failover rdma-to-tcp ip link set dummy0 down -- dummy0_up
	# Last on rxe0: the netdev goes down under a
	# running migration, and both ends fail and exit while it is down. The
	# kernel then destroys their connections, sending disconnect requests
	# through the port that is down, and soft-RoCE's connection manager
	# (Linux 6.1) hears no request on that device after that, from any
	# process. rmig itself sends none then (link-resume), but a process
	# that exits cannot hold its connections back.
	link_drop link-drop ip link set dummy0 down
	dummy0_up
fi

echo
echo "| case | survivor | exit | seconds | message |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
