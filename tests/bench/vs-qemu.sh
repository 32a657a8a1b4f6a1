#!/usr/bin/env bash
# vs-qemu.sh [BUILD_DIR [SIZE [RUNS]]] - the path users run, side by side on
# loopback TCP with 4 channels (defaults: build, 1G, 5):
#   qemu   QEMU (qemu-system-x86_64) migrates a paused guest whose RAM is the
#          image to a second QEMU started with -incoming defer; multifd, 4
#          channels, max-bandwidth 100 GiB/s, driven over QMP;
#   rmig   rdma-migrate recv into a fresh file in /dev/shm, and
#          rdma-migrate send of the image, 4 channels, --transport tcp;
#   iperf3 iperf3 -P 4 -n SIZE: what the link itself carries.
# Each of the two migrations runs on two images: random bytes, and "half":
# the same bytes with every second 4 KiB page zero (pages alternate: data,
# zero, data, ...; VS_QEMU_ZERO=runs makes it runs of 64 data pages then 64
# zero pages instead).
# Every contender runs once untimed first; then each of RUNS iterations runs
# them all, in the reverse order of the iteration before. Prints the figures
# of each run, the medians and the ratios. Every rmig destination is compared
# with its source byte for byte.
#
# Times:
#   qemu whole  from starting the destination QEMU until both QEMUs have quit
#               (both starts: the source copies the image into guest RAM when
#               it preallocates, share=off);
#   qemu mig    from the migrate command until the destination reports
#               completed;
#   rmig whole  from starting recv until send and recv have both exited 0;
#   rmig data   duration_s of send --json (connect to completion).
# Throughput is SIZE / time, in GB/s (10^9 bytes).
#
# VS_QEMU_DEST selects the destination QEMU's RAM: memfd (default; shmem, as
# rmig's /dev/shm destination is), ram (anonymous), or shm (a file in
# /dev/shm, shared; its bytes are then compared with the source too).
# Exits 1 when a migration fails or a destination differs, 2 on bad usage or
# a missing tool. Nothing here fails on speed. Needs SIZE x 5 in /dev/shm.
set -u
cd "$(dirname "$0")/../.." || exit 2
build=${1:-build}
size_arg=${2:-1G}
runs=${3:-5}
CH=4
RM=$build/tools/rdma-migrate
QEMU=${QEMU:-qemu-system-x86_64}
zero_kind=${VS_QEMU_ZERO:-alternate}
qdest=${VS_QEMU_DEST:-memfd}

usage() { echo "vs-qemu.sh: $*" >&2; exit 2; }
[ -x "$RM" ] || usage "no $RM (build it first: scripts/build.sh $build)"
bytes=$(numfmt --from=iec "${size_arg%B}" 2>/dev/null) || usage "SIZE '$size_arg': expected e.g. 256M, 1G"
[ $((bytes % 1048576)) = 0 ] && [ "$bytes" -gt 0 ] || usage "SIZE must be a positive multiple of 1 MiB"
case $runs in '' | *[!0-9]* | 0) usage "RUNS '$runs': expected a positive number" ;; esac
case $zero_kind in alternate | runs) ;; *) usage "VS_QEMU_ZERO: alternate or runs" ;; esac
case $qdest in memfd | ram | shm) ;; *) usage "VS_QEMU_DEST: memfd, ram or shm" ;; esac
command -v "$QEMU" >/dev/null || usage "no $QEMU"
command -v python3 >/dev/null || usage "no python3"
if ! command -v iperf3 >/dev/null; then
	echo "vs-qemu.sh: installing iperf3" >&2
	{ apt-get install -y iperf3 || { apt-get update && apt-get install -y iperf3; }; } >/dev/null 2>&1 ||
		usage "no iperf3, and apt-get install -y iperf3 failed"
fi
free=$(df -B1 --output=avail /dev/shm | tail -1)
[ "$free" -gt $((bytes * 5)) ] || usage "/dev/shm has $((free >> 20)) MiB free; needs $((bytes * 5 >> 20))"

tmp=$(mktemp -d /tmp/vs-qemu.XXXXXX)
shm=/dev/shm/vs-qemu-$$
RAND=$shm-rand.img
HALF=$shm-half.img
DST=$shm-dst.img
QDST=$shm-qdst.img

cleanup() {
	local p
	trap - EXIT INT TERM
	# only jobs still running: no pid that may have been reused since
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	# QEMUs write their pid files; the driver also has them die with it
	for f in "$tmp"/*.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f" 2>/dev/null)
		[ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = qemu-system-x86 ] && kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -f "$RAND" "$HALF" "$DST" "$QDST"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
die() {
	echo "vs-qemu.sh: FAILED: $*" >&2
	exit 1
}
now() { echo "$EPOCHREALTIME"; }
sub() { python3 -c "print(f'{$1 - $2:.6f}')"; }


jfield() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]])' "$1" "$2"; }

# ---- the images ----
echo "vs-qemu: $size_arg ($bytes bytes), $CH channels, loopback TCP, $runs run(s); QEMU $("$QEMU" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p'), its destination RAM $qdest"
head -c "$bytes" /dev/urandom >"$RAND" || die "cannot write $RAND"
python3 - "$RAND" "$HALF" "$zero_kind" <<'PY' || die "cannot write $HALF"
import sys
src, dst, kind = sys.argv[1:]
run = 1 if kind == "alternate" else 64  # pages of data, then as many zero pages
zero = bytes(4096 * run)
with open(src, "rb") as i, open(dst, "wb") as o:
    while True:
        buf = bytearray(i.read(1 << 20))
        if not buf:
            break
        for off in range(4096 * run, len(buf), 8192 * run):
            buf[off:off + 4096 * run] = zero[:len(buf) - off]
        o.write(buf)
PY
echo "images: random ($RAND), half zero pages, $zero_kind ($HALF)"

# ---- one run of each contender; each sets its figures or dies ----
run_qemu() { # IMAGE
	rm -f "$tmp"/*.sock "$tmp"/qemu-*.pid "$QDST"
	python3 tests/bench/qemu_mig.py "$QEMU" "$bytes" "$1" "$CH" "$qdest" "$QDST" "$tmp" >"$tmp/q.json" 2>"$tmp/q.err" &
	wait $! || die "QEMU migration of $1: $(cat "$tmp/q.err")"
	q=$(cat "$tmp/q.json")
	q_mig=$(jfield "$q" migrate_s)
	q_whole=$(jfield "$q" whole_s)
	q_zero=$(jfield "$q" zero_pages)
	[ $(($(jfield "$q" normal) + q_zero)) -ge $((bytes / 4096)) ] ||
		die "QEMU sent $(jfield "$q" normal) pages and $q_zero zero pages of $((bytes / 4096)): $q"
	if [ "$qdest" = shm ]; then
		cmp -s "$1" "$QDST" || die "QEMU destination $QDST differs from $1"
		rm -f "$QDST"
	fi
}

run_rmig() { # IMAGE
	local t0 t1 rp sp rc rrc
	rm -f "$DST" "$tmp/port"
	t0=$(now)
	"$RM" recv --listen 127.0.0.1:0 --port-file "$tmp/port" --ram "ram=$DST" --json --quiet \
		>"$tmp/r.json" 2>"$tmp/r.err" &
	rp=$!
	while [ ! -s "$tmp/port" ]; do
		kill -0 "$rp" 2>/dev/null || break
		sleep 0.001
	done
	[ -s "$tmp/port" ] || die "rdma-migrate recv did not listen: $(cat "$tmp/r.err")"
	"$RM" send --to "127.0.0.1:$(cat "$tmp/port")" --ram "ram=$1" --channels "$CH" \
		--transport tcp --json --quiet >"$tmp/s.json" 2>"$tmp/s.err" &
	sp=$!
	wait "$sp"
	rc=$?
	wait "$rp"
	rrc=$?
	t1=$(now)
	[ "$rc" = 0 ] && [ "$rrc" = 0 ] ||
		die "rmig of $1: send exit $rc, recv exit $rrc: $(cat "$tmp/s.err" "$tmp/r.err" "$tmp/s.json" "$tmp/r.json")"
	cmp -s "$1" "$DST" || die "rmig destination $DST differs from $1"
	r_whole=$(sub "$t1" "$t0")
	r_data=$(jfield "$(cat "$tmp/s.json")" duration_s)
	r_zero=$(jfield "$(cat "$tmp/s.json")" zero_pages)
	rm -f "$DST"
}

iport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iperf3 -s -B 127.0.0.1 -p "$iport" >"$tmp/iperf-s.log" 2>&1 &
run_iperf() {
	local _
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		iperf3 -c 127.0.0.1 -p "$iport" -P "$CH" -n "$bytes" --json >"$tmp/i.json" 2>&1 && break
		sleep 0.2
	done
	i_gbps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8e9)' "$tmp/i.json" 2>/dev/null) ||
		die "iperf3: $(tail -5 "$tmp/i.json")"
}

gbps() { python3 -c "print(f'{$bytes / $1 / 1e9:.3f}')"; }
res=$tmp/results.txt
: >"$res"
one() { # RUN WHAT
	case $2 in
	qemu-rand | qemu-half)
		run_qemu "$([ "$2" = qemu-rand ] && echo "$RAND" || echo "$HALF")"
		echo "$1 $2 $q_mig $q_whole" >>"$res"
		printf '  %-10s migrate %8.3f s (%6s GB/s)  whole %8.3f s   zero pages %s\n' "$2" "$q_mig" "$(gbps "$q_mig")" "$q_whole" "$q_zero"
		;;
	rmig-rand | rmig-half)
		run_rmig "$([ "$2" = rmig-rand ] && echo "$RAND" || echo "$HALF")"
		echo "$1 $2 $r_data $r_whole" >>"$res"
		printf '  %-10s data    %8.3f s (%6s GB/s)  whole %8.3f s   zero pages %s, identical\n' "$2" "$r_data" "$(gbps "$r_data")" "$r_whole" "$r_zero"
		;;
	iperf3)
		run_iperf
		echo "$1 iperf3 $i_gbps" >>"$res"
		printf '  %-10s %.3f GB/s\n' iperf3 "$i_gbps"
		;;
	esac
}

order=(qemu-rand qemu-half rmig-rand rmig-half iperf3)
echo "warm-up, untimed: each contender once"
for w in qemu-rand rmig-rand iperf3; do one 0 "$w"; done
for i in $(seq "$runs"); do
	if [ $((i % 2)) = 1 ]; then seq_=("${order[@]}"); else seq_=(iperf3 rmig-half rmig-rand qemu-half qemu-rand); fi
	echo "run $i: ${seq_[*]}"
	for w in "${seq_[@]}"; do one "$i" "$w"; done
done

python3 - "$res" "$bytes" <<'PY'
import statistics, sys
res, size = sys.argv[1], int(sys.argv[2])
runs = {}
for line in open(res):
    f = line.split()
    if f[0] != "0":  # warm-up
        runs.setdefault(f[1], []).append([float(x) for x in f[2:]])
med = lambda k, i: statistics.median(r[i] for r in runs[k])
gb = lambda t: size / t / 1e9
n = len(runs["iperf3"])
print(f"\nmedians of {n} run{'s' if n > 1 else ''}")
print(f"  {'':10} {'phase s':>9} {'GB/s':>7} {'whole s':>9} {'GB/s':>7}")
for k, phase in (("qemu-rand", "migrate"), ("qemu-half", "migrate"), ("rmig-rand", "data"), ("rmig-half", "data")):
    p, w = med(k, 0), med(k, 1)
    print(f"  {k:10} {p:9.3f} {gb(p):7.3f} {w:9.3f} {gb(w):7.3f}   ({phase} phase)")
ip = med("iperf3", 0)
print(f"  {'iperf3':10} {'':9} {ip:7.3f}")
print("ratios of medians")
rows = [
    ("rmig / QEMU time, whole command, random image", med("rmig-rand", 1) / med("qemu-rand", 1)),
    ("rmig / QEMU time, whole command, half-zero image", med("rmig-half", 1) / med("qemu-half", 1)),
    ("rmig data / QEMU migrate time, random image", med("rmig-rand", 0) / med("qemu-rand", 0)),
    ("rmig data / QEMU migrate time, half-zero image", med("rmig-half", 0) / med("qemu-half", 0)),
    ("rmig throughput (data phase) / iperf3", gb(med("rmig-rand", 0)) / ip),
    ("rmig throughput (whole command) / iperf3", gb(med("rmig-rand", 1)) / ip),
    ("QEMU throughput (migrate phase) / iperf3", gb(med("qemu-rand", 0)) / ip),
]
for tool, i, what in (("rmig", 1, "whole command"), ("rmig", 0, "data phase"),
                      ("qemu", 1, "whole command"), ("qemu", 0, "migrate phase")):
    rows.append((f"half-zero / random image time, {tool} {what}",
                 med(tool + "-half", i) / med(tool + "-rand", i)))
for label, v in rows:
    print(f"  {label + ':':52} {v:.3f}")
PY
