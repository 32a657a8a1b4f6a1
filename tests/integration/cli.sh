#!/usr/bin/env bash
# cli.sh - rdma-migrate as an operator runs it: two processes on loopback.
# Usage: cli.sh BUILD_DIR [TRANSPORT [ADDR [ADDR2]]]
#   TRANSPORT tcp (default) or rdma (inside the soft-RoCE VM, ADDR its rxe address,
#   ADDR2 a second device's: the second rail; default 127.0.0.2)
# Every case compares images byte for byte or checks exit status, message and
# timing. Ends with "N passed, N failed".
set -u
BUILD=$(cd "${1:?build dir}" && pwd)
TRANSPORT=${2:-tcp}
ADDR=${3:-127.0.0.1}
ADDR2=${4:-127.0.0.2}
BIG=${RMIG_CLI_BIG:-1024} # MiB for the large case
RM="$BUILD/tools/rdma-migrate"
HOSTILE="$BUILD/tests/integration/hostile"
W=$(mktemp -d "${TMPDIR:-/tmp}/rmig-cli.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# make_image PATH MiB KIND: random | sparse (random and zero runs) | zero
make_image() {
	local path=$1 mib=$2 kind=$3 i
	: >"$path"
	case $kind in
	random) head -c "${mib}M" /dev/urandom >"$path" ;;
	zero) truncate -s "${mib}M" "$path" ;;
	sparse)
		for ((i = 0; i < mib; i += 16)); do
			if (((i / 16) % 2)); then
				head -c 16M /dev/zero >>"$path"
			else
				head -c 16M /dev/urandom >>"$path"
			fi
		done
		truncate -s "${mib}M" "$path"
		;;
	esac
}

# start_recv NAME ARGS...: runs recv in the background; sets RPID, RPORT
start_recv() {
	local name=$1
	shift
	rm -f "$W/$name.port"
	"$RM" recv --listen "$ADDR:0" --port-file "$W/$name.port" --quiet "$@" \
		>"$W/$name.out" 2>"$W/$name.err" &
	RPID=$!
	for _ in $(seq 100); do
		[ -s "$W/$name.port" ] && break
		sleep 0.05
	done
	RPORT=$(cat "$W/$name.port" 2>/dev/null)
}

# wait_rc PID SECONDS: the exit status, or 124 if it had to be killed
wait_rc() {
	local pid=$1 secs=$2 t=0
	while kill -0 "$pid" 2>/dev/null; do
		sleep 0.1
		t=$((t + 1))
		if ((t > secs * 10)); then
			kill -9 "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return 124
		fi
	done
	wait "$pid"
}

migrate_case() { # NAME CHANNELS MiB KIND [extra send args]
	local name=$1 ch=$2 mib=$3 kind=$4
	shift 4
	make_image "$W/$name.src" "$mib" "$kind"
	start_recv "$name" --ram "ram=$W/$name.dst" --timeout 20
	if "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/$name.src" --channels "$ch" \
		--transport "$TRANSPORT" --verify --json --quiet "$@" >"$W/$name.json" 2>"$W/$name.serr" &&
		wait_rc "$RPID" 60 && cmp -s "$W/$name.src" "$W/$name.dst"; then
		ok "$name: $mib MiB $kind, $ch channels, byte-identical ($(grep -o '"throughput_MiBps":[0-9.]*' "$W/$name.json"))"
	else
		bad "$name: $(cat "$W/$name.serr" "$W/$name.err" 2>/dev/null | tail -3)"
	fi
	rm -f "$W/$name.src" "$W/$name.dst"
}

echo "# rdma-migrate CLI tests, transport $TRANSPORT on $ADDR"

# ---- migrations ----
migrate_case big 4 "$BIG" sparse
for ch in 1 2 8; do migrate_case ch$ch "$ch" 24 random; done
migrate_case zeros 4 32 zero

# JSON stats: zero pages counted, per-channel bytes listed
make_image "$W/j.src" 64 sparse
start_recv j --ram "ram=$W/j.dst" --json
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" --transport "$TRANSPORT" --channels 2 \
	--json --quiet >"$W/j.json" 2>"$W/j.err"
src_rc=$?
wait_rc "$RPID" 30
dst_rc=$?
if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && grep -q '"ok":true' "$W/j.json" &&
	grep -q '"zero_pages":8192' "$W/j.json" && grep -q '"per_channel_bytes":\[[0-9]*,[0-9]*\]' "$W/j.json" &&
	grep -q '"role":"destination","ok":true' "$W/j.out" &&
	python3 -c '
import json, sys
s = json.load(open(sys.argv[1])); d = json.loads(open(sys.argv[2]).read().splitlines()[-1])
# the destination counts what it placed as the source counts what it sent
# (over RDMA the WRITEs land unseen: zero there)
want = s["bytes"] if sys.argv[3] == "tcp" else 0
sys.exit(not (s["bytes"] == 33554432 and sum(s["per_channel_bytes"]) == s["bytes"] and
              d["bytes"] == want and sum(d["per_channel_bytes"]) == want and
              d["rails"][0]["bytes"] == want))' "$W/j.json" "$W/j.out" "$TRANSPORT"; then
	ok "json: final stats on stdout on both sides, the bytes per channel counted on both"
else
	bad "json: $(cat "$W/j.json" "$W/j.out" "$W/j.err")"
fi

# placement in --json: each channel's device, NUMA node and CPUs; --no-bind
# (here on the source only) leaves the CPUs unknown and binds nothing
start_recv pl --ram "ram=$W/pl.dst" --json
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" --transport "$TRANSPORT" --channels 2 \
	--no-bind --json --quiet >"$W/pl.json" 2>"$W/pl.err"
src_rc=$?
wait_rc "$RPID" 30
dst_rc=$?
plcheck=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1])); d = json.loads(open(sys.argv[2]).read().splitlines()[-1])
lo = sys.argv[3] == "127.0.0.1" and sys.argv[4] == "tcp"
ok = len(s["placement"]) == 2 and len(d["placement"]) == 2
ok = ok and all(p["device"] and (p["device"] == "lo" or not lo) for p in s["placement"] + d["placement"])
ok = ok and all(p["cpus"] == "" and p["numa_node"] == -1 and not p["bound"] for p in s["placement"])
ok = ok and all(p["cpus"][:1].isdigit() and p["numa_node"] >= -1 for p in d["placement"])
print(ok)' "$W/pl.json" "$W/pl.out" "$ADDR" "$TRANSPORT" 2>&1)
if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && [ "$plcheck" = True ] && cmp -s "$W/j.src" "$W/pl.dst"; then
	ok "placement: --json names each channel's device ($(grep -o '"device":"[^"]*"' "$W/pl.out" | head -1)); --no-bind leaves it unbound"
else
	bad "placement: rc $src_rc/$dst_rc, check '$plcheck': $(cat "$W/pl.json" "$W/pl.out" "$W/pl.err")"
fi

# RMIG_TOPOLOGY: a topology hwloc cannot read is a warning, and the migration runs
echo "<topology><garbage" >"$W/bad-topo.xml"
RMIG_TOPOLOGY="$W/bad-topo.xml" start_recv bt --ram "ram=$W/bt.dst"
RMIG_TOPOLOGY="$W/bad-topo.xml" "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" \
	--transport "$TRANSPORT" --channels 2 >/dev/null 2>"$W/bt.serr"
src_rc=$?
wait_rc "$RPID" 30
dst_rc=$?
if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && cmp -s "$W/j.src" "$W/bt.dst" &&
	grep -q "placement off: cannot read the topology in $W/bad-topo.xml" "$W/bt.serr" &&
	grep -q "placement off" "$W/bt.err"; then
	ok "unreadable topology: placement off with a warning on both ends, byte-identical"
else
	bad "unreadable topology: rc $src_rc/$dst_rc: $(cat "$W/bt.serr" "$W/bt.err")"
fi
# a topology (two NUMA nodes, "lo" on node 1 with CPU 1) taken as this machine's:
# each channel thread is bound to CPU 1, and the image (on node 0) is far from lo
TOPO=$(dirname "$0")/../unit/topo/2node-lo-far.xml
if [ "$TRANSPORT" != tcp ] || [ "$ADDR" != 127.0.0.1 ] || [ "$(nproc)" -lt 2 ]; then
	echo "# placement on a given topology: only over tcp on 127.0.0.1 with 2 CPUs or more"
else
	for nb in "" --no-bind; do
		RMIG_TOPOLOGY=$TOPO start_recv tp --ram "ram=$W/tp.dst"
		RMIG_TOPOLOGY=$TOPO "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" \
			--transport tcp --channels 2 --json $nb >"$W/tp.json" 2>"$W/tp.serr"
		src_rc=$?
		wait_rc "$RPID" 30
		dst_rc=$?
		want=True
		[ -n "$nb" ] && want=False
		tpcheck=$(python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))["placement"]
on = [x["bound"] and x["numa_node"] == 1 and x["cpus"] == "1" and x["device"] == "lo" for x in p]
print(len(p) == 2 and all(on) if sys.argv[2] == "True" else not any(x["bound"] for x in p))' "$W/tp.json" "$want" 2>&1)
		warned=False
		grep -q "ram block 'ram' sits on NUMA node 0, but the devices that move it are on other nodes: lo (node 1)" "$W/tp.serr" && warned=True
		if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && cmp -s "$W/j.src" "$W/tp.dst" &&
			[ "$tpcheck" = True ] && [ "$warned" = "$want" ]; then
			ok "given topology${nb:+ $nb}: channels ${nb:+not }bound to CPU 1 near lo (node 1), the far image ${nb:+not }warned about"
		else
			bad "given topology $nb: rc $src_rc/$dst_rc, check '$tpcheck', warned $warned: $(cat "$W/tp.json" "$W/tp.serr")"
		fi
	done
fi

# two rails: recv --listen twice; the channels alternate, both rails carry bytes
start_recv rl --ram "ram=$W/rl.dst" --listen "$ADDR2:0" --json
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" --transport "$TRANSPORT" --channels 4 \
	--json --quiet >"$W/rl.json" 2>"$W/rl.err"
src_rc=$?
wait_rc "$RPID" 30
dst_rc=$?
rlcheck=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1])); d = json.loads(open(sys.argv[2]).read().splitlines()[-1])
r = s["rails"]
ok = len(r) == 2 and r[1]["address"] == sys.argv[3] and all(x["bytes"] > 0 and x["channels"] == 2 for x in r)
ok = ok and sum(x["bytes"] for x in r) == s["bytes"] and [p["rail"] for p in s["placement"]] == [0, 1, 0, 1]
ok = ok and len(d["rails"]) == 2 and s["transport"] == sys.argv[4]
print(ok)' "$W/rl.json" "$W/rl.out" "$ADDR2" "$TRANSPORT" 2>&1)
if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && [ "$rlcheck" = True ] && cmp -s "$W/j.src" "$W/rl.dst"; then
	ok "two rails ($ADDR, $ADDR2): byte-identical, $(python3 -c 'import json,sys; print(", ".join("rail %d %s: %d bytes on %s" % (x["rail"], x["address"], x["bytes"], x["device"]) for x in json.load(open(sys.argv[1]))["rails"]))' "$W/rl.json")"
else
	bad "two rails: rc $src_rc/$dst_rc, check '$rlcheck': $(cat "$W/rl.json" "$W/rl.out" "$W/rl.err")"
fi
# --rails: the source's local devices. Where the two rails go through two
# devices (rxe0, rxe1 in the VM), naming rail 0's alone leaves rail 1 out:
# every channel on rail 0, byte-identical; naming rail 1's alone puts every
# channel on rail 1 (the control connection stays on rail 0's address).
# Where both go through one (lo on the host), naming it keeps both rails.
read -r dev0 dev1 < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rails"]; print(r[0]["device"], r[-1]["device"])' "$W/rl.json" 2>/dev/null)
if [ -n "${dev0:-}" ]; then
	start_recv rs --ram "ram=$W/rs.dst" --listen "$ADDR2:0" --json
	"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" --transport "$TRANSPORT" --channels 4 \
		--rails "$dev0" --json --quiet >"$W/rs.json" 2>"$W/rs.serr"
	src_rc=$?
	wait_rc "$RPID" 30
	dst_rc=$?
	want=$([ "$dev0" != "$dev1" ] && echo "[0, 0, 0, 0]" || echo "[0, 1, 0, 1]")
	got=$(python3 -c 'import json,sys; print([p["rail"] for p in json.load(open(sys.argv[1]))["placement"]])' "$W/rs.json" 2>&1)
	if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && [ "$got" = "$want" ] && cmp -s "$W/j.src" "$W/rs.dst"; then
		ok "--rails $dev0 (rails through $dev0 and $dev1): channels on rails $got, byte-identical"
	else
		bad "--rails $dev0: rc $src_rc/$dst_rc, rails $got (want $want): $(cat "$W/rs.serr" "$W/rs.err")"
	fi
	if [ "$dev0" != "$dev1" ]; then
		start_recv rs2 --ram "ram=$W/rs2.dst" --listen "$ADDR2:0" --json
		"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/j.src" --transport "$TRANSPORT" --channels 4 \
			--rails "$dev1" --json --quiet >"$W/rs2.json" 2>"$W/rs2.serr"
		src_rc=$?
		wait_rc "$RPID" 30
		dst_rc=$?
		got=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print([p["rail"] for p in s["placement"]], s["rails"][0]["bytes"])' "$W/rs2.json" 2>&1)
		if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && [ "$got" = "[1, 1, 1, 1] 0" ] && cmp -s "$W/j.src" "$W/rs2.dst"; then
			ok "--rails $dev1 (rail 0 through $dev0 left out): every channel on rail 1, none on the control connection's rail, byte-identical"
		else
			bad "--rails $dev1: rc $src_rc/$dst_rc, rails and rail 0's bytes $got (want [1, 1, 1, 1] 0): $(cat "$W/rs2.serr" "$W/rs2.err")"
		fi
	fi
else
	bad "--rails: no devices in the two-rails run's --json"
fi
# a --rails name that is no device of this host: a usage error before any connection
"$RM" send --to "$ADDR:1" --ram "ram=$W/j.src" --rails "$dev0,nosuchdev9" >/dev/null 2>"$W/rs3.err"
rc=$?
if [ $rc = 2 ] && grep -q "no RDMA device or network interface named 'nosuchdev9'" "$W/rs3.err"; then
	ok "--rails with no such device: usage error (exit 2)"
else
	bad "--rails nosuchdev9: rc $rc: $(cat "$W/rs3.err")"
fi
"$RM" send --to "file:$W/rs4.rmig" --ram "ram=$W/j.src" --rails "$dev0" >/dev/null 2>"$W/rs4.err"
rc=$?
if [ $rc = 2 ] && grep -q "a file has no rails" "$W/rs4.err" && [ ! -e "$W/rs4.rmig" ]; then
	ok "--rails with a file target: usage error (exit 2)"
else
	bad "--rails to a file: rc $rc: $(cat "$W/rs4.err")"
fi
# a rail that is no address of this host: a clear error before any source is served
timeout 10 "$RM" recv --listen "$ADDR:0" --listen 192.0.2.1:0 --ram "ram=$W/rl2.dst" \
	>"$W/rl2.out" 2>"$W/rl2.err"
dst_rc=$?
if [ $dst_rc != 0 ] && [ $dst_rc != 124 ] && grep -q -- "--listen 192.0.2.1:0: not an address of this host" "$W/rl2.err"; then
	ok "a rail address not of this host: recv exit $dst_rc ($(grep -o -- '--listen 192.0.2.1.*' "$W/rl2.err" | head -1))"
else
	bad "rail not of this host: rc $dst_rc: $(cat "$W/rl2.err")"
fi
if "$RM" vm-recv --qmp /nonexistent --listen "$ADDR:0" --listen "$ADDR2:0" 2>"$W/rl3.err"; then
	bad "vm-recv took two --listen"
elif grep -q "one address only" "$W/rl3.err"; then
	ok "vm-recv --listen twice: usage error"
else
	bad "vm-recv --listen twice: $(cat "$W/rl3.err")"
fi

# several blocks, /dev/shm images, device-state files
shm=/dev/shm/rmig-cli-$$
make_image "$W/a.src" 8 random
make_image "$shm.b.src" 4 sparse
head -c 3000000 /dev/urandom >"$W/nic.state"
head -c 12345 /dev/urandom >"$W/gpu.state"
: >"$W/empty.state"
mkdir -p "$W/states"
start_recv multi --ram "a=$W/a.dst" --ram "b=$shm.b.dst" --state-dir "$W/states"
if "$RM" send --to "$ADDR:$RPORT" --ram "a=$W/a.src" --ram "b=$shm.b.src" --transport "$TRANSPORT" \
	--state "nic=$W/nic.state" --state "gpu=$W/gpu.state" --state "empty=$W/empty.state" \
	--verify --quiet 2>"$W/multi.serr" && wait_rc "$RPID" 30 &&
	cmp -s "$W/a.src" "$W/a.dst" && cmp -s "$shm.b.src" "$shm.b.dst" &&
	cmp -s "$W/nic.state" "$W/states/nic" && cmp -s "$W/gpu.state" "$W/states/gpu" &&
	cmp -s "$W/empty.state" "$W/states/empty"; then
	ok "two blocks (one in /dev/shm) and three device-state files, byte-identical"
else
	bad "multi: $(cat "$W/multi.serr" "$W/multi.err")"
fi
rm -f "$shm".*

# a source --extent above the destination's (1M): device state still fits its receive slots
mkdir -p "$W/states4"
start_recv ext4 --ram "a=$W/a4.dst" --state-dir "$W/states4"
if "$RM" send --to "$ADDR:$RPORT" --ram "a=$W/a.src" --transport "$TRANSPORT" --extent 4M \
	--state "nic=$W/nic.state" --verify --quiet 2>"$W/ext4.serr" && wait_rc "$RPID" 30 &&
	cmp -s "$W/a.src" "$W/a4.dst" && cmp -s "$W/nic.state" "$W/states4/nic"; then
	ok "send --extent 4M with a 3 MB device-state file: byte-identical"
else
	bad "extent 4M: $(cat "$W/ext4.serr" "$W/ext4.err")"
fi

# an existing destination image of another size is resized to the source's
make_image "$W/r.src" 8 random
make_image "$W/r.dst" 20 random
start_recv resize --ram "ram=$W/r.dst"
if "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/r.src" --transport "$TRANSPORT" --quiet &&
	wait_rc "$RPID" 30 && cmp -s "$W/r.src" "$W/r.dst"; then
	ok "destination image resized to the source's size"
else
	bad "resize"
fi

# hugetlbfs, when this machine has huge pages to give
huge_case() {
	local mnt=$W/huge
	[ "$(cat /proc/sys/vm/nr_hugepages)" -ge 16 ] 2>/dev/null || echo 16 >/proc/sys/vm/nr_hugepages 2>/dev/null
	if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 12 ] 2>/dev/null ||
		! mkdir -p "$mnt" || ! mount -t hugetlbfs none "$mnt" 2>/dev/null; then
		echo "skip hugetlbfs: no huge pages here (HugePages_Free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo))"
		return
	fi
	make_image "$W/h.src" 8 random
	# hugetlbfs has no write(): fill the source image through a shared mapping
	python3 - "$W/h.src" "$mnt/h.src" <<'PY'
import mmap, os, sys
data = open(sys.argv[1], 'rb').read()
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, len(data))
m = mmap.mmap(fd, len(data))
m[:] = data
m.close()
PY
	start_recv huge --ram "ram=$mnt/h.dst"
	if "$RM" send --to "$ADDR:$RPORT" --ram "ram=$mnt/h.src" --transport "$TRANSPORT" --verify \
		--quiet 2>"$W/h.err" && wait_rc "$RPID" 30 && cmp -s "$W/h.src" "$mnt/h.dst"; then
		ok "hugetlbfs images (2 MiB pages)"
	else
		bad "hugetlbfs: $(cat "$W/h.err" "$W/huge.err")"
	fi
	# a destination pool too small (a mount limited to 2 pages): named before a byte moves
	mkdir -p "$W/hsmall"
	if mount -t hugetlbfs -o size=4M none "$W/hsmall" 2>/dev/null; then
		start_recv hsmall --ram "ram=$W/hsmall/h.dst" --timeout 5
		"$RM" send --to "$ADDR:$RPORT" --ram "ram=$mnt/h.src" --transport "$TRANSPORT" \
			--timeout 5 --quiet 2>"$W/hs.err"
		rc=$?
		wait_rc "$RPID" 10
		rrc=$?
		if [ $rc = 1 ] && [ $rrc = 1 ] &&
			grep -q "the hugetlbfs pool is too small: it needs 4 pages of 2097152 bytes, 2 are free" "$W/hsmall.err"; then
			ok "hugetlbfs pool too small: both exit 1, the pages named"
		else
			bad "hugetlbfs pool too small: send $rc recv $rrc: $(cat "$W/hs.err" "$W/hsmall.err")"
		fi
		umount "$W/hsmall"
	fi
	rm -f "$mnt"/*
	umount "$mnt"
}
huge_case

# ---- bad arguments: exit 2 and a message naming the problem ----
usage_case() { # EXPECT ARGS...
	local expect=$1
	shift
	"$RM" "$@" >/dev/null 2>"$W/usage.err"
	local rc=$?
	if [ $rc = 2 ] && grep -q -- "$expect" "$W/usage.err"; then
		ok "usage: $* -> exit 2 ($expect)"
	else
		bad "usage: $* -> exit $rc: $(cat "$W/usage.err")"
	fi
}
make_image "$W/u.img" 1 random
head -c 5000 /dev/urandom >"$W/odd.img"
usage_case "out of range" send --to h:1 --ram "r=$W/u.img" --channels 0
usage_case "not a valid number" send --to h:1 --ram "r=$W/u.img" --channels four
usage_case "a device-state name may not be" send --to h:1 --ram "r=$W/u.img" --state "a/b=$W/u.img"
usage_case "a device-state name may not be" save --to "$W/nn.rmig" --ram "r=$W/u.img" --state "..=$W/u.img"
# what the library refuses, refused by the tool in the option's own name
usage_case "--extent: '12K' is not a power of two" send --to h:1 --ram "r=$W/u.img" --extent 12K
usage_case "--max-bandwidth: '1' is below 4K" send --to h:1 --ram "r=$W/u.img" --max-bandwidth 1
usage_case "unknown option" send --to h:1 --ram "r=$W/u.img" --bogus
usage_case "unknown option" send --listen h:1
usage_case "required" send --ram "r=$W/u.img"
usage_case "expected NAME=PATH" send --to h:1 --ram nopath
usage_case "No such file" send --to h:1 --ram "r=$W/missing.img"
usage_case "not a non-zero multiple" send --to h:1 --ram "r=$W/odd.img"
usage_case "is not one of" send --to h:1 --ram "r=$W/u.img" --transport udp
usage_case "not a valid size" bench --size 12Q
usage_case "unknown command" frobnicate
usage_case "--resume needs a peer" send --to "file:$W/x.save" --ram "r=$W/u.img" --resume
usage_case "unknown option" send --to h:1 --ram "r=$W/u.img" --keep
usage_case "out of range" recv --listen "$ADDR:0" --ram "r=$W/x" --keep --recovery-timeout 0
usage_case "not a directory" recv --listen "$ADDR:0" --ram "r=$W/x" --state-dir "$W/nonexistent"
usage_case "is the file --port-file names" recv --listen "$ADDR:0" --ram "r=$W/pf" --port-file "$W/pf"
head -c 32 /dev/urandom >"$W/kf"
usage_case "is the file --key-file names" recv --listen "$ADDR:0" --ram "r=$W/kf" --key-file "$W/kf"
# results that cannot be written (a full disk) are an error, not an exit 0
if [ -w /dev/full ]; then
	"$RM" info --json >/dev/full 2>"$W/full.err"
	rc=$?
	"$RM" send --help >/dev/full 2>>"$W/full.err"
	rc2=$?
	if [ $rc = 1 ] && [ $rc2 = 1 ] &&
		[ "$(grep -c "writing standard output: No space left on device" "$W/full.err")" = 2 ]; then
		ok "info --json and --help into a full stdout: exit 1, naming it"
	else
		bad "stdout full: info $rc, help $rc2: $(cat "$W/full.err")"
	fi
fi

# more memory than the host has: an error that says so, not the OOM killer's SIGKILL
for a in "--size 1T" "--live --ram-size 1T"; do
	"$RM" bench $a --quiet >/dev/null 2>"$W/oom.err"
	rc=$?
	if [ $rc = 1 ] && grep -q "needs 2.0 TiB of memory, and this process may have" "$W/oom.err"; then
		ok "bench $a: exit 1 before touching memory, naming what it needs"
	else
		bad "bench $a: rc $rc: $(cat "$W/oom.err")"
	fi
done
if "$RM" send --help | grep -q -- "--channels N" && "$RM" --help | grep -q "recv"; then
	ok "--help lists commands and options"
else
	bad "--help"
fi

# --version, and --help exits 0 everywhere
version=$(sed -n "s/^  version: '\(.*\)',$/\1/p" "$(dirname "$0")/../../meson.build")
out=$("$RM" --version 2>&1)
rc=$?
if [ $rc = 0 ] && [ -n "$version" ] && [ "$out" = "rdma-migrate $version" ]; then
	ok "--version: exit 0, '$out'"
else
	bad "--version: rc $rc: '$out' (meson.build says '$version')"
fi
help_ok=1
for cmd in "" send recv bench info; do
	# shellcheck disable=SC2086 # no subcommand for the top-level help
	"$RM" $cmd --help >"$W/help.out" 2>&1 || { help_ok=0; echo "# $cmd --help: exit $?"; }
done
"$RM" --help | grep -q -- "--version" || help_ok=0
"$RM" recv --help >"$W/help.out"
grep -q "with --key-file, recv keeps serving until a source that holds the key" "$W/help.out" &&
	grep -q "the first source to connect is the one served (first" "$W/help.out" || help_ok=0
if [ $help_ok = 1 ]; then
	ok "--help: exit 0 for every command; mentions --version; recv says which source it serves"
else
	bad "--help: $(cat "$W/help.out")"
fi

# names: each once, at most 63 bytes; refused before recv listens (--timeout 1: it would)
usage_case "--ram 'a=$W/d1' and --ram 'a=$W/d2': block name 'a' given twice" \
	recv --listen "$ADDR:0" --timeout 1 --ram "a=$W/d1" --ram "a=$W/d2"
usage_case "--ram 'a=$W/u.img' and --ram 'a=$W/u.img': block name 'a' given twice" \
	send --to h:1 --ram "a=$W/u.img" --ram "a=$W/u.img"
head -c 100 /dev/urandom >"$W/s1.state"
usage_case "--state 'dev=$W/s1.state' and --state 'dev=$W/s1.state': device-state name 'dev' given twice" \
	send --to h:1 --ram "a=$W/u.img" --state "dev=$W/s1.state" --state "dev=$W/s1.state"
long=$(printf 'n%.0s' $(seq 64))
usage_case "--ram '$long=$W/u.img': name longer than 63 bytes" send --to h:1 --ram "$long=$W/u.img"
usage_case "--state '$long=$W/s1.state': name longer than 63 bytes" \
	send --to h:1 --ram "a=$W/u.img" --state "$long=$W/s1.state"
usage_case "name longer than 63 bytes" recv --listen "$ADDR:0" --timeout 1 --ram "$long=$W/d1"

# two --ram names of one destination file: refused before listening, nothing created
same_file_case() { # WHAT PATH1 PATH2 [MUST_NOT_EXIST]
	local what=$1 p1=$2 p2=$3 absent=${4:-}
	(cd "$W" && "$RM" recv --listen "$ADDR:0" --timeout 1 --ram "a=$p1" --ram "b=$p2" \
		>/dev/null 2>"$W/same.err")
	local rc=$?
	if [ $rc = 2 ] && grep -qF -- "--ram 'a=$p1' and --ram 'b=$p2' name the same file" "$W/same.err" &&
		! grep -q listening "$W/same.err" && { [ -z "$absent" ] || [ ! -e "$absent" ]; }; then
		ok "recv, one destination file twice ($what): exit 2 before listening"
	else
		bad "recv, one destination file twice ($what): exit $rc: $(cat "$W/same.err")"
	fi
}
mkdir -p "$W/sd"
same_file_case "the same path" "$W/sd/X" "$W/sd/X" "$W/sd/X"
same_file_case "X and ./X" "sd/X" "./sd/X" "$W/sd/X"
same_file_case "a path through .." "$W/sd/X" "$W/sd/../sd/X" "$W/sd/X"
ln -s X "$W/sd/dangling"
same_file_case "a dangling symlink to it" "$W/sd/X" "$W/sd/dangling" "$W/sd/X"
ln -s dangling "$W/sd/chain"
same_file_case "a chain of dangling symlinks" "$W/sd/chain" "$W/sd/X" "$W/sd/X"
: >"$W/sd/E"
ln "$W/sd/E" "$W/sd/hard"
ln -s "$W/sd/E" "$W/sd/soft"
same_file_case "a hard link" "$W/sd/E" "$W/sd/hard"
same_file_case "a symlink" "$W/sd/soft" "$W/sd/E"

# addresses: checked before anything connects or listens
usage_case "--to 'host': expected HOST:PORT" send --to host --ram "r=$W/u.img"
usage_case "--to 'h:99999': port 99999 out of range" send --to h:99999 --ram "r=$W/u.img"
usage_case "--to ':80': empty host" send --to :80 --ram "r=$W/u.img"
usage_case "--listen 'host': expected HOST:PORT" recv --listen host --timeout 1 --ram "r=$W/d1"
usage_case "--listen '$ADDR:99999': port 99999 out of range" recv --listen "$ADDR:99999" --timeout 1 --ram "r=$W/d1"
usage_case "--listen ':0': empty host" recv --listen :0 --timeout 1 --ram "r=$W/d1"

# a FIFO as --key-file or --state: refused at once, not opened (that waits for a writer)
mkfifo "$W/fifo"
timeout 10 "$RM" send --to 127.0.0.1:1 --ram "r=$W/u.img" --key-file "$W/fifo" >/dev/null 2>"$W/fifo.err"
rc=$?
if [ $rc = 2 ] && grep -q -- "--key-file $W/fifo: not a regular file" "$W/fifo.err"; then
	ok "--key-file FIFO: exit 2, not a regular file"
else
	bad "--key-file FIFO: exit $rc: $(cat "$W/fifo.err")"
fi
timeout 10 "$RM" send --to 127.0.0.1:1 --ram "r=$W/u.img" --state "dev=$W/fifo" >/dev/null 2>"$W/fifo.err"
rc=$?
if [ $rc = 2 ] && grep -q -- "--state $W/fifo: not a regular file" "$W/fifo.err"; then
	ok "--state FIFO: exit 2, not a regular file"
else
	bad "--state FIFO: exit $rc: $(cat "$W/fifo.err")"
fi
usage_case "--state /dev/null: not a regular file" send --to 127.0.0.1:1 --ram "r=$W/u.img" --state "dev=/dev/null"

# a /proc file (st_size 0) as --state: sent with its content, not as an empty blob
mkdir -p "$W/pstates"
start_recv proc --ram "ram=$W/proc.dst" --state-dir "$W/pstates"
if "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/u.img" --transport "$TRANSPORT" \
	--state "ver=/proc/version" --verify --quiet 2>"$W/proc.serr" && wait_rc "$RPID" 10 &&
	cat /proc/version >"$W/ver.expect" && [ -s "$W/pstates/ver" ] &&
	cmp -s "$W/ver.expect" "$W/pstates/ver"; then # (cmp trusts the st_size of 0)
	ok "--state /proc/version: its $(stat -c %s "$W/pstates/ver") bytes arrive"
else
	bad "--state /proc file: $(cat "$W/proc.serr" "$W/proc.err"; stat -c %s "$W/pstates/ver" 2>&1)"
fi

# ---- failures at run time: exit 1, the cause, within the timeout ----
# nobody listening
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$RM" send --to "127.0.0.1:$port" --ram "r=$W/u.img" --transport tcp --timeout 3 2>"$W/e.err"
rc=$?
if [ $rc = 1 ] && grep -q "Connection refused" "$W/e.err"; then ok "unreachable peer: exit 1, connection refused"; else bad "unreachable: $rc $(cat "$W/e.err")"; fi

# where no RDMA device exists: rdma fails clearly, auto falls back to tcp and says why
if "$RM" info --json | grep -q '"rdma_usable":false'; then
	start_recv nordma --ram "ram=$W/nr.dst" --timeout 20
	t0=$(date +%s)
	"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/u.img" --transport rdma --timeout 5 --quiet 2>"$W/nr.err"
	rc=$?
	wait_rc "$RPID" 30
	rrc=$?
	# the destination hears the source's cause at once, not after its own timeout
	if [ $rc = 1 ] && grep -q "transport rdma unavailable: no RDMA devices" "$W/nr.err" &&
		[ $rrc = 1 ] && [ $(($(date +%s) - t0)) -lt 10 ] &&
		grep -q "peer reported: transport rdma unavailable" "$W/nordma.err"; then
		ok "--transport rdma without a device: exit 1 ($(grep -o 'transport rdma unavailable: [^(]*' "$W/nr.err" | head -1))"
	else
		bad "--transport rdma without a device: rc $rc/$rrc: $(cat "$W/nr.err" "$W/nordma.err")"
	fi
	start_recv auto --ram "ram=$W/auto.dst"
	if "$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/u.img" --transport auto --json 2>"$W/auto.err" |
		grep -q '"transport":"tcp"' && wait_rc "$RPID" 10 && cmp -s "$W/u.img" "$W/auto.dst" &&
		grep -q "transport: tcp, because rdma is unavailable" "$W/auto.err"; then
		ok "--transport auto without a device: tcp, and says why"
	else
		bad "--transport auto without a device: $(cat "$W/auto.err")"
	fi
fi

# a source that sends a block the destination has no --ram for
make_image "$W/n.src" 1 random
start_recv names --ram "other=$W/n.dst" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/n.src" --transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/n.serr"
src_rc=$?
wait_rc "$RPID" 10
dst_rc=$?
if [ $src_rc = 1 ] && [ $dst_rc = 1 ] && grep -q "no --ram ram=PATH" "$W/names.err" &&
	grep -q "declined the layout" "$W/n.serr"; then
	ok "unknown block name: both sides exit 1 and say why"
else
	bad "unknown name: src $src_rc dst $dst_rc: $(cat "$W/n.serr" "$W/names.err")"
fi

# a layout refused for one image changes no other: an existing image keeps
# what it held, one this recv created is removed (before: emptied, or left)
make_image "$W/lk.src" 4 random
make_image "$W/lk.old" 4 random
cp "$W/lk.old" "$W/lk.dst"
rm -f "$W/lk.new"
mkdir -p "$W/lk.dir"
start_recv lk --ram "a=$W/lk.dst" --ram "b=$W/lk.new" --ram "c=$W/lk.dir" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "a=$W/lk.src" --ram "b=$W/lk.src" --ram "c=$W/lk.src" \
	--transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/lk.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && cmp -s "$W/lk.old" "$W/lk.dst" && [ ! -e "$W/lk.new" ] &&
	grep -q "lk.dir: Is a directory" "$W/lk.err"; then
	ok "a refused layout: both exit 1, the existing image intact, the new one removed ($(grep -o 'image [^ ]*lk.dir: .*' "$W/lk.err"))"
else
	bad "refused layout: send $rc recv $rrc, image kept: $(cmp "$W/lk.old" "$W/lk.dst" 2>&1), new: $(ls "$W/lk.new" 2>&1): $(cat "$W/lk.serr" "$W/lk.err")"
fi

# an image path that is a symbolic link to a file yet to be made: made there
rm -f "$W/dl.target" "$W/dl.link"
ln -s "$W/dl.target" "$W/dl.link"
start_recv dl --ram "a=$W/dl.link" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "a=$W/lk.src" --transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/dl.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 0 ] && [ $rrc = 0 ] && [ -L "$W/dl.link" ] && cmp -s "$W/lk.src" "$W/dl.target"; then
	ok "recv into a symbolic link to a file yet to be made: received into its target"
else
	bad "dangling link: send $rc recv $rrc: $(cat "$W/dl.serr" "$W/dl.err")"
fi

# the source's own image given to recv on the same host: emptying it would
# destroy what is being sent (before: both ends exited 0, the image all zero)
make_image "$W/own.src" 4 random
cp "$W/own.src" "$W/own.copy"
start_recv own --ram "ram=$W/own.src" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/own.src" --transport "$TRANSPORT" --timeout 5 \
	--quiet 2>"$W/own.serr"
src_rc=$?
wait_rc "$RPID" 10
dst_rc=$?
if [ $src_rc = 1 ] && [ $dst_rc = 1 ] && cmp -s "$W/own.src" "$W/own.copy" &&
	grep -q "own.src is in use by another rdma-migrate" "$W/own.err" &&
	grep -q "declined the layout: Device or resource busy" "$W/own.serr"; then
	ok "recv into the image being sent: refused on both sides, the image intact"
else
	bad "recv into its own source: src $src_rc dst $dst_rc: $(cat "$W/own.serr" "$W/own.err")"
fi

# an image a recv or restore is writing (it holds the file's lock alone): send refuses it
if command -v flock >/dev/null; then
	flock -x "$W/own.src" sleep 5 &
	LPID=$!
	sleep 0.3
	"$RM" send --to "$ADDR:1" --ram "ram=$W/own.src" --transport "$TRANSPORT" --quiet \
		2>"$W/own2.err"
	src_rc=$?
	kill "$LPID" 2>/dev/null
	wait "$LPID" 2>/dev/null
	if [ $src_rc = 2 ] && grep -q "being written by another rdma-migrate" "$W/own2.err"; then
		ok "send of an image being written: refused, naming it"
	else
		bad "send of an image being written: rc $src_rc: $(cat "$W/own2.err")"
	fi
fi

# a device-state blob named after an image of the same migration, in the
# image's directory: refused (before: the image was replaced by the blob, exit 0)
mkdir -p "$W/bo"
printf 'state bytes' >"$W/bo.state"
start_recv bo --ram "ram=$W/bo/img" --state-dir "$W/bo" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/own.copy" --state "img=$W/bo.state" \
	--transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/bo.serr"
src_rc=$?
wait_rc "$RPID" 10
dst_rc=$?
if [ $src_rc = 1 ] && [ $dst_rc = 1 ] && [ "$(stat -c %s "$W/bo/img")" = 4194304 ] &&
	grep -q "over --ram ram=$W/bo/img of this run" "$W/bo.err"; then
	ok "a blob named after an image of the migration: refused, the image kept"
else
	bad "blob over an image: src $src_rc dst $dst_rc: $(cat "$W/bo.serr" "$W/bo.err")"
fi
# ... and the source reads the destination's cause every time, not "peer
# closed": the destination's main thread, woken by the failure, half-closed
# the control connection before the ERROR went out (half the runs, before)
told=0
for i in 1 2 3 4 5 6; do
	start_recv bo$i --ram "ram=$W/bo/img" --state-dir "$W/bo" --timeout 5
	"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/own.copy" --state "img=$W/bo.state" \
		--transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/bo$i.serr"
	wait_rc "$RPID" 10
	grep -q "peer reported: loading device state 'img'" "$W/bo$i.serr" && told=$((told + 1))
done
if [ $told = 6 ]; then
	ok "a destination failing in its state callback: the source names the cause, 6 runs of 6"
else
	bad "the destination's cause reached the source in $told runs of 6: $(cat "$W"/bo[1-6].serr | sort | uniq -c)"
fi

# links where a blob's temporary file goes: removed, never written through;
# and a blob named like another's temporary file: refused
mkdir -p "$W/sl"
printf 'precious' >"$W/sl.target"
printf 'precious' >"$W/sl.target2"
ln -sf "$W/sl.target" "$W/sl/img.part"
ln -f "$W/sl.target2" "$W/sl/dev.part"
start_recv sl --ram "ram=$W/sl.img" --state-dir "$W/sl" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/own.copy" --state "img=$W/bo.state" \
	--state "dev=$W/bo.state" --transport "$TRANSPORT" --timeout 5 --quiet 2>/dev/null
src_rc=$?
wait_rc "$RPID" 10
dst_rc=$?
if [ $src_rc = 0 ] && [ $dst_rc = 0 ] && [ "$(cat "$W/sl.target")" = precious ] &&
	[ "$(cat "$W/sl.target2")" = precious ] && cmp -s "$W/sl/img" "$W/bo.state" &&
	cmp -s "$W/sl/dev" "$W/bo.state"; then
	ok "links in the state directory: removed, not written through; the blobs land"
else
	bad "links in the state directory: src $src_rc dst $dst_rc: $(cat "$W/sl.err")"
fi
start_recv sp --ram "ram=$W/sp.img" --state-dir "$W/sl" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/own.copy" --state "x.part=$W/bo.state" \
	--state "x=$W/bo.state" --transport "$TRANSPORT" --timeout 5 --quiet 2>/dev/null
src_rc=$?
wait_rc "$RPID" 10
dst_rc=$?
# ... and the migration that failed left no blob (before: 'x' whole, as if received)
if [ $src_rc = 1 ] && [ $dst_rc = 1 ] && grep -q "which another blob of this migration uses\|as another blob of this migration is" "$W/sp.err" &&
	[ ! -e "$W/sl/x" ] && [ ! -e "$W/sl/x.part" ] && [ ! -e "$W/sl/x.part.part" ]; then
	ok "blobs 'x.part' and 'x': refused (one would be the other's scratch file), no blob left"
else
	bad "blobs x.part and x: src $src_rc dst $dst_rc: $(cat "$W/sp.err")"
fi

# a stalled destination (SIGSTOP): the source gives up within its timeout
start_recv stalled --ram "ram=$W/st.dst" --timeout 30
kill -STOP "$RPID"
start=$(date +%s)
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/u.img" --transport "$TRANSPORT" --timeout 2 --quiet 2>"$W/st.err"
rc=$?
took=$(($(date +%s) - start))
kill -9 "$RPID" 2>/dev/null
wait "$RPID" 2>/dev/null
if [ $rc = 1 ] && [ "$took" -le 6 ] && grep -q "timed out" "$W/st.err"; then
	ok "stalled destination: exit 1 after ${took}s ($(tail -1 "$W/st.err"))"
else
	bad "stalled: rc $rc after ${took}s: $(cat "$W/st.err")"
fi

# a destination file system without room: exit 1 before data moves, naming the space; never SIGBUS
if mkdir -p "$W/small" && mount -t tmpfs -o size=64M rmig-small "$W/small" 2>/dev/null; then
	make_image "$W/full.src" 128 sparse
	# what the image held stays: the room is checked before it is emptied
	head -c 1M /dev/urandom >"$W/full.old"
	cp "$W/full.old" "$W/small/full.dst"
	start_recv full --ram "ram=$W/small/full.dst" --timeout 5
	"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/full.src" --transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/full.serr"
	rc=$?
	wait_rc "$RPID" 10
	rrc=$?
	if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "no room on its file system: it needs 134217728 bytes" "$W/full.err" &&
		cmp -s "$W/full.old" "$W/small/full.dst"; then
		ok "destination file system full: both exit 1 ($(grep -o 'no room[^;]*' "$W/full.err" | head -1))"
	else
		bad "destination full: send $rc recv $rrc: $(cat "$W/full.serr" "$W/full.err")"
	fi
	umount "$W/small"
else
	echo "skip destination file system full: cannot mount a small tmpfs here"
fi

# SIGTERM (or Ctrl-C) mid-migration: the session is cancelled, the peer reads
# why, and the process still ends by the signal (before: the peer read only
# "peer closed", a recv's blobs stayed)
make_image "$W/sig.img" 16 random
mkdir -p "$W/sigsd"
start_recv sig --ram "ram=$W/sig.dst" --state-dir "$W/sigsd" --timeout 10
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/sig.img" --state "dev=$W/bo.state" --transport "$TRANSPORT" \
	--max-bandwidth 4M --timeout 10 --quiet 2>"$W/sig.serr" &
spid=$!
sleep 1.5
kill -TERM "$spid"
wait_rc "$spid" 15
rc=$?
wait_rc "$RPID" 15
rrc=$?
if [ $rc = 143 ] && [ $rrc = 1 ] && grep -q "interrupted by SIGTERM: cancelling" "$W/sig.serr" &&
	grep -q "peer reported: migration cancelled: interrupted by SIGTERM" "$W/sig.err" &&
	[ -z "$(ls -A "$W/sigsd")" ]; then
	ok "send killed by SIGTERM: cancelled, exit 143; recv exit 1 quoting why, no blob left"
else
	bad "SIGTERM to send: send $rc recv $rrc: $(cat "$W/sig.serr" "$W/sig.err"; ls "$W/sigsd")"
fi

# SIGTERM (or Ctrl-C) while send --resume tries to reconnect to a destination
# that is gone: exit 143 and the interruption named last (before: "could not
# resume within 30 s", then the last refused connect, as if the window had run
# out). (A script's background job ignores SIGINT, and so send leaves it.)
make_image "$W/sigr.img" 16 random
start_recv sigr --ram "ram=$W/sigr.dst" --timeout 10
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/sigr.img" --transport "$TRANSPORT" --resume \
	--recovery-timeout 30 --max-bandwidth 4M --timeout 3 --quiet 2>"$W/sigr.serr" &
spid=$!
sleep 1
kill -9 "$RPID"
wait "$RPID" 2>/dev/null
sleep 1.5
kill -TERM "$spid"
wait_rc "$spid" 10
rc=$?
if [ $rc = 143 ] && [ "$(tail -1 "$W/sigr.serr")" = "rdma-migrate send: migration failed: interrupted by SIGTERM" ] &&
	! grep -q "could not resume" "$W/sigr.serr"; then
	ok "SIGTERM while send --resume reconnects: exit 143, the interruption named last"
else
	bad "SIGTERM during a resume: send $rc: $(cat "$W/sigr.serr")"
fi

# a source image that shrinks during the send: exit 1 naming it; never SIGBUS
make_image "$W/shrink.src" 256 sparse
start_recv shrink --ram "ram=$W/shrink.dst" --timeout 10
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/shrink.src" --transport "$TRANSPORT" --timeout 10 \
	--max-bandwidth 64M --quiet 2>"$W/shrink.serr" &
spid=$!
sleep 0.5
truncate -s 0 "$W/shrink.src"
wait_rc "$spid" 20
rc=$?
wait_rc "$RPID" 20
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "shrank from 268435456 to 0 bytes during the send" "$W/shrink.serr"; then
	ok "source image shrinks mid-send: both exit 1 ($(grep -o 'image [^ ]* .* shrank[^;]*' "$W/shrink.serr" | head -1 | sed "s|$W/||"))"
else
	bad "source shrinks: send $rc recv $rrc: $(cat "$W/shrink.serr" "$W/shrink.err")"
fi

# with a key, strangers before the real source never cost the migration
head -c 32 /dev/urandom >"$W/sk"
head -c 32 /dev/urandom >"$W/sk2"
chmod 600 "$W/sk" "$W/sk2"
make_image "$W/stray.src" 8 random
start_recv stray --ram "ram=$W/stray.dst" --key-file "$W/sk" --timeout 8
python3 - "$ADDR" "$RPORT" <<'PY' &
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
held = []
for i in range(3):  # a port scan
    socket.create_connection((host, port)).close()
for i in range(20):  # idle connections
    held.append(socket.create_connection((host, port)))
t = socket.create_connection((host, port))  # a client that trickles its HELLO
for b in b"RMIG\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00":
    try:
        t.send(bytes([b]))
    except OSError:
        break
    time.sleep(0.5)
time.sleep(2)
PY
strays=$!
sleep 1
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/stray.src" --transport "$TRANSPORT" --key-file "$W/sk2" --timeout 5 --quiet 2>/dev/null
wrong=$?
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/stray.src" --transport "$TRANSPORT" --key-file "$W/sk" --timeout 8 --quiet 2>"$W/stray.serr"
rc=$?
wait_rc "$RPID" 15
rrc=$?
kill "$strays" 2>/dev/null
wait "$strays" 2>/dev/null
if [ $wrong = 1 ] && [ $rc = 0 ] && [ $rrc = 0 ] && cmp -s "$W/stray.src" "$W/stray.dst" &&
	grep -q "refused a connection from" "$W/stray.err"; then
	ok "recv --key-file: a port scan, 20 idle connections, a trickling client and a wrong key, then the real source migrates ($(grep -c 'refused a connection' "$W/stray.err") refusals logged)"
else
	bad "strays before the source: wrong $wrong send $rc recv $rrc: $(cat "$W/stray.serr" "$W/stray.err")"
fi

# without a key, connections that never send a HELLO are strays, refused:
# the first source that speaks the protocol migrates (before: the first
# connection was taken for the source, and a port scan ended the recv)
start_recv nokey --ram "ram=$W/nokey.dst" --timeout 8
python3 - "$ADDR" "$RPORT" <<'PY' &
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
held = []
for i in range(3):  # a port scan
    socket.create_connection((host, port)).close()
s = socket.create_connection((host, port))  # a client of another protocol
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
s.close()
for i in range(5):  # idle connections
    held.append(socket.create_connection((host, port)))
time.sleep(4)
PY
strays=$!
sleep 1
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/stray.src" --transport "$TRANSPORT" --timeout 8 \
	--quiet 2>"$W/nokey.serr"
rc=$?
wait_rc "$RPID" 15
rrc=$?
kill "$strays" 2>/dev/null
wait "$strays" 2>/dev/null
if [ $rc = 0 ] && [ $rrc = 0 ] && cmp -s "$W/stray.src" "$W/nokey.dst" &&
	grep -q "refused a connection from .*malformed message header" "$W/nokey.err"; then
	ok "recv without a key: a port scan, another protocol's client and idle connections, then the source migrates ($(grep -c 'refused a connection' "$W/nokey.err") refusals logged)"
else
	bad "strays before a source without a key: send $rc recv $rrc: $(cat "$W/nokey.serr" "$W/nokey.err")"
fi

# ---- shared key: same key migrates; wrong or missing key refused on both sides ----
head -c 32 /dev/urandom >"$W/k1"
head -c 32 /dev/urandom >"$W/k2"
chmod 600 "$W/k1" "$W/k2"
make_image "$W/key.img" 4 random
start_recv key --ram "ram=$W/key.dst" --key-file "$W/k1"
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --transport "$TRANSPORT" --key-file "$W/k1" --verify --quiet 2>"$W/key.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 0 ] && [ $rrc = 0 ] && cmp -s "$W/key.img" "$W/key.dst" && ! grep -q "no --key-file" "$W/key.err"; then
	ok "--key-file: the same key on both sides migrates, byte for byte"
else
	bad "--key-file same key: rc $rc/$rrc: $(cat "$W/key.serr" "$W/key.err")"
fi
start_recv wkey --ram "ram=$W/wkey.dst" --key-file "$W/k1" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --transport "$TRANSPORT" --key-file "$W/k2" --timeout 5 --quiet 2>"$W/wkey.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "the source's key does not match" "$W/wkey.serr" &&
	grep -q "authentication failed: the source's key does not match" "$W/wkey.err" &&
	! cmp -s "$W/key.img" "$W/wkey.dst" 2>/dev/null; then
	ok "--key-file: a wrong key is refused; both sides exit 1 and say so"
else
	bad "--key-file wrong key: rc $rc/$rrc: $(cat "$W/wkey.serr" "$W/wkey.err")"
fi
start_recv nkey --ram "ram=$W/nkey.dst" --key-file "$W/k1" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --transport "$TRANSPORT" --timeout 5 --quiet 2>"$W/nkey.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "requires a key and the source has none" "$W/nkey.serr"; then
	ok "--key-file: a source without the key is refused"
else
	bad "--key-file missing on the source: rc $rc/$rrc: $(cat "$W/nkey.serr" "$W/nkey.err")"
fi
start_recv nokey --ram "ram=$W/nokey.dst" --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --transport "$TRANSPORT" --timeout 5 --quiet 2>/dev/null
wait_rc "$RPID" 10
if grep -q "warning: no --key-file: anyone who can reach $ADDR:$RPORT can write into the images" "$W/nokey.err"; then
	ok "recv without --key-file warns who can write into the images"
else
	bad "recv without a key: no warning: $(cat "$W/nokey.err")"
fi
head -c 8 /dev/urandom >"$W/kshort"
usage_case "a key is a regular file of 16..4096 bytes" send --to h:1 --ram "r=$W/u.img" --key-file "$W/kshort"
usage_case "No such file" recv --listen "$ADDR:0" --ram "r=$W/x" --key-file "$W/nokeyfile"
chmod 644 "$W/k2"
"$RM" send --to "127.0.0.1:1" --ram "r=$W/u.img" --key-file "$W/k2" --transport tcp --timeout 1 --quiet 2>"$W/kmode.err"
if grep -q "can be read by other users (mode 644); chmod 600 it" "$W/kmode.err"; then
	ok "--key-file readable by others: a warning"
else
	bad "--key-file mode: $(cat "$W/kmode.err")"
fi

# ---- TLS: private data on the wire; both sides must agree ----
start_recv tls --ram "ram=$W/tls.dst" --key-file "$W/k1" --tls
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --key-file "$W/k1" --tls --verify --json --quiet >"$W/tls.json" 2>"$W/tls.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
tk=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["transport"])' "$W/tls.json" 2>/dev/null)
if [ $rc = 0 ] && [ $rrc = 0 ] && cmp -s "$W/key.img" "$W/tls.dst" && [ "$tk" = tcp ]; then
	ok "--tls: migrates byte for byte; transport auto picks tcp"
else
	bad "--tls: rc $rc/$rrc transport '$tk': $(cat "$W/tls.serr" "$W/tls.err")"
fi
start_recv tls1 --ram "ram=$W/tls1.dst" --key-file "$W/k1" --tls --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --key-file "$W/k1" --timeout 5 --quiet 2>"$W/tls1.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "the peer speaks rmig without TLS" "$W/tls1.err" &&
	grep -q "the peer speaks rmig without TLS" "$W/tls1.serr"; then
	ok "--tls on recv only: both sides exit 1 and say the source has no TLS"
else
	bad "--tls on recv only: rc $rc/$rrc: $(cat "$W/tls1.serr" "$W/tls1.err")"
fi
start_recv tls2 --ram "ram=$W/tls2.dst" --key-file "$W/k1" --tls --timeout 5
"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/key.img" --key-file "$W/k2" --tls --timeout 5 --quiet 2>"$W/tls2.serr"
rc=$?
wait_rc "$RPID" 10
rrc=$?
if [ $rc = 1 ] && [ $rrc = 1 ] && grep -q "the peer holds a different key" "$W/tls2.err" &&
	grep -q "TLS handshake: the peer refused it" "$W/tls2.serr" && [ ! -s "$W/tls2.dst" ]; then
	ok "--tls with another key: the handshake fails on both sides; nothing written"
else
	bad "--tls wrong key: rc $rc/$rrc: $(cat "$W/tls2.serr" "$W/tls2.err")"
fi
usage_case "--tls needs --key-file" send --to h:1 --ram "r=$W/u.img" --tls
usage_case "RDMA writes are not encrypted" send --to h:1 --ram "r=$W/u.img" --tls --key-file "$W/k1" --transport rdma

# ---- live migration: bench --live, a built-in guest whose writers dirty RAM ----
LIVE=(bench --live --transport "$TRANSPORT" --addr "$ADDR" --timeout 20)
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }

# plain bench: an IPv6 address (before: "bad address 'tcp://::1:0'"), and --json that
# says when it failed (before: an empty "runs" list and nothing else)
if grep -q ' lo$' /proc/net/if_inet6 2>/dev/null; then
	"$RM" bench --size 1M --channel-list 1 --addr ::1 --json 2>"$W/b6.err" >"$W/b6.json"
	rc=$?
	if [ $rc = 0 ] && jget "$W/b6.json" 'd["ok"] and len(d["runs"]) == 1' | grep -q True; then
		ok "bench --addr ::1: measured, \"ok\":true"
	else
		bad "bench --addr ::1: rc $rc: $(cat "$W/b6.err" "$W/b6.json")"
	fi
fi
if "$RM" info --json | grep -q '"rdma_usable":false'; then
	"$RM" bench --size 1M --channel-list 1 --transport rdma --json 2>/dev/null >"$W/bf.json"
	rc=$?
	if [ $rc = 1 ] && jget "$W/bf.json" 'd["ok"] is False and d["error"] != ""' | grep -q True; then
		ok "bench --transport rdma without a device: exit 1, --json says \"ok\":false and why"
	else
		bad "bench --json on failure: rc $rc: $(cat "$W/bf.json")"
	fi
fi

"$RM" "${LIVE[@]}" --ram-size 64M --dirty-rate 16M --device-state 4M,1M,0 --json >"$W/l1.json" 2>"$W/l1.err"
rc=$?
if [ $rc = 0 ] && [ "$(jget "$W/l1.json" 'd["ok"] and d["verified"] and d["converged"] and d["decision"]=="switchover" and d["transport"]=="'"$TRANSPORT"'" and d["device_state"]["blobs"]==3 and d["downtime_ms"]>0 and len(d["rounds"])>=1 and d["rounds"][0]["pages"]==16384 and d["guest_writes"]>0')" = True ]; then
	ok "bench --live: converged after $(jget "$W/l1.json" 'len(d["rounds"])') rounds, downtime $(jget "$W/l1.json" 'd["downtime_ms"]') ms, verified"
else
	bad "bench --live: rc $rc: $(cat "$W/l1.err" "$W/l1.json")"
fi

# hot set: after the first round only pages of the first 1 MiB (256 pages) are dirty
"$RM" "${LIVE[@]}" --ram-size 32M --pattern hot --hot-size 1M --dirty-rate 64M --downtime 1 \
	--max-rounds 4 --switch-anyway --json >"$W/l2.json" 2>"$W/l2.err"
rc=$?
if [ $rc = 0 ] && [ "$(jget "$W/l2.json" 'd["verified"] and all(r["dirty_pages"]<=256 for r in d["rounds"][1:]+[d["final_round"]]) and d["guest_writes"]>0')" = True ]; then
	ok "bench --live --pattern hot: every later round within the hot set, verified"
else
	bad "bench --live hot: rc $rc: $(cat "$W/l2.err" "$W/l2.json")"
fi

# --pattern hot on a guest smaller than the default hot set (64M): all of it is hot
# (before: a usage error about a --hot-size never given)
"$RM" "${LIVE[@]}" --ram-size 16M --pattern hot --json >"$W/l2b.json" 2>"$W/l2b.err"
rc=$?
if [ $rc = 0 ] && [ "$(jget "$W/l2b.json" 'd["ok"] and d["verified"]')" = True ]; then
	ok "bench --live --pattern hot on a 16M guest: the default hot set is the guest, verified"
else
	bad "bench --live hot, small guest: rc $rc: $(cat "$W/l2b.err" "$W/l2b.json")"
fi

# a dirty rate that cannot converge under the bandwidth limit: give up, or switch anyway
NOCONV=(--ram-size 16M --dirty-rate 1G --max-bandwidth 16M --downtime 1 --max-rounds 2)
"$RM" "${LIVE[@]}" "${NOCONV[@]}" --quiet --json >"$W/l3.json" 2>"$W/l3.err"
rc=$?
if [ $rc = 1 ] && grep -q "did not converge: after 2 rounds the expected downtime is" "$W/l3.err" &&
	grep -q "cancelled, the guest keeps running on the source" "$W/l3.err" &&
	[ "$(jget "$W/l3.json" 'd["decision"]=="give_up" and not d["ok"] and not d["converged"] and len(d["rounds"])==2')" = True ]; then
	ok "bench --live, no convergence: exit 1, gave up after 2 rounds and says so"
else
	bad "bench --live give up: rc $rc: $(cat "$W/l3.err" "$W/l3.json")"
fi
"$RM" "${LIVE[@]}" "${NOCONV[@]}" --switch-anyway --json >"$W/l4.json" 2>"$W/l4.err"
rc=$?
if [ $rc = 0 ] && grep -q "warning: did not converge within 2 rounds: switched over anyway" "$W/l4.err" &&
	[ "$(jget "$W/l4.json" 'd["decision"]=="forced" and d["verified"] and not d["converged"] and max(r["bandwidth_MiBps"] for r in d["rounds"])<=16.5')" = True ]; then
	ok "bench --live --switch-anyway: exit 0, switched anyway, warned, verified; rounds kept to 16 MiB/s"
else
	bad "bench --live switch anyway: rc $rc: $(cat "$W/l4.err" "$W/l4.json")"
fi

# to a recv peer in another process: RAM and blobs land, digests match
start_recv live --ram "ram=$W/live.dst" --state-dir "$W" --timeout 20
"$RM" bench --live --transport "$TRANSPORT" --to "$ADDR:$RPORT" --timeout 20 --ram-size 32M \
	--dirty-rate 8M --device-state 3M,5K --json >"$W/l5.json" 2>"$W/l5.err"
rc=$?
wait_rc "$RPID" 20
rrc=$?
if [ $rc = 0 ] && [ $rrc = 0 ] && [ "$(stat -c %s "$W/live.dst")" = 33554432 ] &&
	[ "$(stat -c %s "$W/dev")" = 3145728 ] && [ "$(stat -c %s "$W/dev.1")" = 5120 ] &&
	[ "$(jget "$W/l5.json" 'd["verified"] and d["ok"]')" = True ]; then
	ok "bench --live --to a recv peer: exit 0 on both sides, digests match"
else
	bad "bench --live --to: rc $rc/$rrc: $(cat "$W/l5.err" "$W/live.err" "$W/l5.json")"
fi

# bw_case NAME MIB RATE MIN_S [ARGS...]: send MIB MiB under --max-bandwidth RATE
# (ARGS to both ends): byte for byte, and in no less than MIN_S seconds
bw_case() {
	local name=$1 mib=$2 rate=$3 min=$4 start took rc
	shift 4
	make_image "$W/$name.img" "$mib" random
	start_recv "$name" --ram "ram=$W/$name.dst" "$@"
	start=$(date +%s.%N)
	"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/$name.img" --transport "$TRANSPORT" \
		--max-bandwidth "$rate" "$@" --quiet 2>"$W/$name.serr"
	rc=$?
	took=$(python3 -c "import sys; print(round($(date +%s.%N) - $start, 2))")
	wait_rc "$RPID" 10
	if [ $rc = 0 ] && cmp -s "$W/$name.img" "$W/$name.dst" && python3 -c "import sys; sys.exit(not $took >= $min)"; then
		ok "send --max-bandwidth $rate $*: $mib MiB in ${took} s, byte for byte${*:+, no false stall}"
	else
		bad "send --max-bandwidth $rate $*: rc $rc in ${took}s: $(cat "$W/$name.serr")"
	fi
}
# the bandwidth limit on send: 16 MiB at 8 MiB/s cannot take less than 2 s
bw_case bw 16 8M 1.95
# a limit so low that each channel waits longer than --timeout for its turn:
# slow, not stalled (before: "no data channel became idle ... stalled")
bw_case bw2 3 512K 4.5 --timeout 2

# ---- postcopy: bench --postcopy, a workload at the destination faults on missing pages ----
PC=(bench --postcopy --transport "$TRANSPORT" --addr "$ADDR" --timeout 20)
# pure postcopy: every page missing; each is sent exactly once, by request or in the background
"$RM" "${PC[@]}" --ram-size 64M --faults 200 --device-state 1M --json >"$W/p1.json" 2>"$W/p1.err"
rc=$?
if [ $rc = 0 ] && [ "$(jget "$W/p1.json" 'd["ok"] and d["verified"] and d["urgent"] and d["transport"]=="'"$TRANSPORT"'" and d["missing_pages"]==16384 and d["idle"]["faults"]==200 and 0<d["idle"]["p50_us"]<=d["idle"]["p99_us"]<=d["idle"]["max_us"] and d["requests"]>=200 and d["urgent_pages"]>=200 and d["urgent_pages"]+d["background_pages"]-d["resent"]==16384')" = True ]; then
	ok "bench --postcopy: idle p50 $(jget "$W/p1.json" 'd["idle"]["p50_us"]') us p99 $(jget "$W/p1.json" 'd["idle"]["p99_us"]') us, background p99 $(jget "$W/p1.json" 'd["background"]["p99_us"]') us; every page sent once (again only if asked for on the way); verified"
else
	bad "bench --postcopy: rc $rc: $(cat "$W/p1.err" "$W/p1.json")"
fi
# live rounds first, then postcopy of what the writers dirtied, on the shared channels
"$RM" "${PC[@]}" --ram-size 32M --postcopy-after 2 --dirty-rate 32M --no-urgent --faults 50 \
	>"$W/p2.out" 2>"$W/p2.err"
rc=$?
if [ $rc = 0 ] && grep -q "postcopy after 2 live rounds: [1-9][0-9]* pages missing" "$W/p2.out" &&
	grep -q "no urgent channel" "$W/p2.out" && grep -q "^idle  *[1-9]" "$W/p2.out" &&
	grep -q "^verified: every byte of RAM at the destination" "$W/p2.out" &&
	[ "$(grep -c '^ *[12] ' "$W/p2.out")" = 2 ]; then
	ok "bench --postcopy --postcopy-after 2 --no-urgent: 2 live rounds, then the dirtied pages; verified"
else
	bad "bench --postcopy after rounds: rc $rc: $(cat "$W/p2.err" "$W/p2.out")"
fi
# the source dies while the destination runs the guest: exit 3, the guest cannot continue
RMIG_FAULT=postcopy-running:source-dies "$RM" "${PC[@]}" --ram-size 32M --faults 50 --json \
	>"$W/p3.json" 2>"$W/p3.err"
rc=$?
if [ $rc = 3 ] && grep -q "postcopy failed while the destination ran the guest: .*the guest cannot continue" "$W/p3.err" &&
	[ "$(jget "$W/p3.json" 'not d["ok"] and d["guest_lost"]')" = True ]; then
	ok "bench --postcopy, the source dies mid-postcopy: exit 3, the guest cannot continue"
else
	bad "bench --postcopy source dies: rc $rc: $(cat "$W/p3.err" "$W/p3.json")"
fi
usage_case "needs --postcopy" bench --faults 10
usage_case "needs --postcopy" bench --live --no-urgent
usage_case "is not for --postcopy" bench --postcopy --downtime 5
usage_case "is not for --postcopy (its workload runs at a destination in this process)" bench --postcopy --to 127.0.0.1:1
usage_case "two modes" bench --live --postcopy

usage_case "needs --live" bench --ram-size 1G
usage_case "with --live use --ram-size and --channels" bench --live --size 1G
usage_case "expected SIZE" bench --live --device-state 1M,,2M
usage_case "needs --pattern hot" bench --live --hot-size 1M

# hostile sources against recv: each ends in exit 1 naming the cause, within the timeout
# (they speak the control protocol and tcp data channels, whatever recv could do)
"$HOSTILE" list >"$W/cases" || true
if [ "$(wc -l <"$W/cases")" -lt 10 ]; then
	bad "hostile: could not list the cases"
else
	head -c 8192 /dev/urandom >"$W/h-old"
	while IFS=$'\t' read -r name expect; do
		# what the image held before: a layout refused keeps it
		cp "$W/h-old" "$W/h-$name.dst"
		start_recv "h-$name" --ram "ram=$W/h-$name.dst" --timeout 2
		"$HOSTILE" source "$name" "$ADDR:$RPORT" >/dev/null 2>&1 &
		hp=$!
		wait_rc "$RPID" 8
		rc=$?
		wait "$hp" 2>/dev/null
		# what the source sent never reaches the terminal raw: no ESC byte
		kept=yes
		case $name in layout-* | escape-name | many-blocks | bad-version) cmp -s "$W/h-old" "$W/h-$name.dst" || kept=no ;; esac
		if [ $rc = 1 ] && [ $kept = yes ] && grep -q -- "$expect" "$W/h-$name.err" &&
			! LC_ALL=C grep -q $'\x1b' "$W/h-$name.err"; then
			ok "hostile source $name: recv exit 1 ($expect)"
		else
			bad "hostile source $name: recv exit $rc, old image kept: $kept: $(cat -v "$W/h-$name.err")"
		fi
	done <"$W/cases"
	# a block name with a terminal escape sequence is shown escaped, by the tool and the library
	if grep -qF "the source sends ram block 'evil\x1b[31m\x9b2J' but no --ram" "$W/h-escape-name.err" &&
		! LC_ALL=C grep -q $'[\x1b\x9b]' "$W/h-escape-name.err"; then
		ok "hostile block name '\\x1b[31m...': recv shows it escaped, no ESC byte on stderr"
	else
		bad "hostile block name: $(cat -v "$W/h-escape-name.err")"
	fi
fi

# two device-state blobs whose files would be one ('dev' instance 1, 'dev.1' instance 0)
mkdir -p "$W/clash"
start_recv clash --ram "ram=$W/clash.dst" --state-dir "$W/clash" --timeout 3
"$HOSTILE" source state-path-clash "$ADDR:$RPORT" >/dev/null 2>&1 &
hp=$!
wait_rc "$RPID" 10
rc=$?
wait "$hp" 2>/dev/null
if [ $rc = 1 ] && grep -q "would be written to $W/clash/dev.1, as another blob of this migration is" "$W/clash.err"; then
	ok "two blobs for one state file: recv exit 1 and names the file"
else
	bad "state path clash: recv exit $rc: $(cat "$W/clash.err")"
fi

# A stranger on this host who connects to the data port as soon as it opens,
# before the source's channels (their connects slowed down by strace, 1 s each): one
# that hangs up (with --tls: a failed handshake) or one that stays silent
# (with --key-file) must not end or hold up the migration. Before, the first
# failed the session and the second ran out its timeout.
if [ "$TRANSPORT" = tcp ] && command -v strace >/dev/null; then
	head -c 32 /dev/urandom >"$W/stray.key"
	chmod 600 "$W/stray.key"
	make_image "$W/stray.src" 16 random
	for mode in close silent; do
		tls=()
		[ $mode = close ] && tls=(--tls)
		rm -f "$W/stray-$mode.dst"
		start_recv "stray-$mode" --ram "ram=$W/stray-$mode.dst" --timeout 5 \
			--key-file "$W/stray.key" "${tls[@]}"
		python3 "$(dirname "$0")/stray-poker.py" $mode 6 "$RPID" >"$W/stray-$mode.poked" &
		pk=$!
		sleep 0.3
		# (LeakSanitizer cannot run under ptrace: an ASan build checks leaks elsewhere)
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
			timeout 30 strace -f -qq -o /dev/null -e trace=connect -e inject=connect:delay_enter=1000000 \
			"$RM" send --to "$ADDR:$RPORT" --ram "ram=$W/stray.src" --channels 4 --timeout 5 \
			--key-file "$W/stray.key" "${tls[@]}" --quiet 2>"$W/stray-$mode.serr"
		rc=$?
		wait_rc "$RPID" 20
		rrc=$?
		wait "$pk"
		poked=$(cat "$W/stray-$mode.poked")
		if [ $rc = 0 ] && [ $rrc = 0 ] && cmp -s "$W/stray.src" "$W/stray-$mode.dst" &&
			[ "${poked:-0}" -ge 1 ] &&
			{ [ $mode = silent ] || grep -q "refused a stray connection: TLS handshake" "$W/stray-$mode.err"; }; then
			ok "a stranger on the data port first ($mode${tls[*]:+, ${tls[*]}}): the migration goes on, byte for byte"
		else
			bad "a stranger on the data port ($mode): send $rc, recv $rrc, poked '$poked': $(cat "$W/stray-$mode.serr" "$W/stray-$mode.err")"
		fi
	done
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
