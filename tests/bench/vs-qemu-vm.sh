#!/usr/bin/env bash
# vs-qemu-vm.sh BUILD_DIR [SIZE [RUNS]] - inside the soft-RoCE VM (see
# run-vs-qemu-vm.sh, which boots it): the same image moved over rxe0
# (10.0.0.1, loopback through the device) by, side by side (defaults: 256M, 5):
#   qemu-rdma    QEMU's rdma: migration of a paused guest whose RAM is the image
#   qemu-pinall  the same with the rdma-pin-all capability
#   qemu-multifd QEMU multifd, 4 channels over TCP
#   rmig-rdma    rdma-migrate recv into a fresh /dev/shm file, and send, 4 QPs
#   rmig-tcp     the same over TCP, 4 channels
#   ib_write_bw  perftest's ib_write_bw -q 4 -s 1M: what the device carries
# QEMU: tests/bench/qemu_mig.py (migrate phase: the migrate command to the
# destination's completed; whole: both QEMUs started to both quit). rmig:
# whole = recv started to both commands exited 0, data = send's duration_s,
# and its registration_s. Every contender runs once untimed, then RUNS
# iterations in alternating order. Every rmig destination is compared with
# the image byte for byte. Prints each run, the medians and the ratios;
# nothing here fails on speed. Exits 1 when a migration fails.
set -u
cd "$(dirname "$0")/../.." || exit 2
build=$1
size_arg=${2:-256M}
runs=${3:-5}
CH=4
IP=${SOFTROCE_IP:-10.0.0.1}
RM=$build/tools/rdma-migrate
QEMU=${QEMU:-qemu-system-x86_64}
bytes=$(numfmt --from=iec "${size_arg%B}") || exit 2
tmp=$(mktemp -d /tmp/vs-qemu-vm.XXXXXX)
IMG=/dev/shm/vsq-img
DST=/dev/shm/vsq-dst
trap 'for p in $(jobs -p); do kill "$p" 2>/dev/null; done; wait; rm -rf "$tmp" "$IMG" "$DST"' EXIT
die() {
	echo "vs-qemu-vm.sh: FAILED: $*" >&2
	exit 1
}
now() { echo "$EPOCHREALTIME"; }
sub() { python3 -c "print(f'{$1 - $2:.6f}')"; }
jfield() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]])' "$1" "$2"; }

run_qemu() { # MODE
	rm -f "$tmp"/*.sock "$tmp"/qemu-*.pid
	python3 tests/bench/qemu_mig.py "$QEMU" "$bytes" "$IMG" "$CH" memfd none "$tmp" "$1" "$IP" \
		>"$tmp/q.json" 2>"$tmp/q.err" || die "QEMU $1 migration: $(cat "$tmp/q.err")"
	local q
	q=$(cat "$tmp/q.json")
	a=$(jfield "$q" migrate_s)
	b=$(jfield "$q" whole_s)
	c=0
}

run_rmig() { # TRANSPORT
	local t0 t1 rp rc rrc
	rm -f "$DST" "$tmp/port"
	t0=$(now)
	"$RM" recv --listen "$IP:0" --port-file "$tmp/port" --ram "ram=$DST" --json --quiet \
		>"$tmp/r.json" 2>"$tmp/r.err" &
	rp=$!
	while [ ! -s "$tmp/port" ]; do
		kill -0 "$rp" 2>/dev/null || break
		sleep 0.001
	done
	[ -s "$tmp/port" ] || die "rdma-migrate recv did not listen: $(cat "$tmp/r.err")"
	"$RM" send --to "$IP:$(cat "$tmp/port")" --ram "ram=$IMG" --channels "$CH" --transport "$1" \
		--json --quiet >"$tmp/s.json" 2>"$tmp/s.err"
	rc=$?
	wait "$rp"
	rrc=$?
	t1=$(now)
	[ "$rc" = 0 ] && [ "$rrc" = 0 ] || die "rmig over $1: send exit $rc, recv exit $rrc: $(cat "$tmp/s.err" "$tmp/r.err")"
	cmp -s "$IMG" "$DST" || die "rmig over $1: the destination differs from the image"
	a=$(jfield "$(cat "$tmp/s.json")" duration_s)
	b=$(sub "$t1" "$t0")
	c=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("registration_s", 0))' "$tmp/s.json")
}

run_ibbw() {
	local sp
	ib_write_bw -d rxe0 -q "$CH" -s 1048576 -n $((bytes >> 20)) -F --report_gbits >"$tmp/ib-s.txt" 2>&1 &
	sp=$!
	sleep 0.5
	ib_write_bw -d rxe0 -q "$CH" -s 1048576 -n $((bytes >> 20)) -F --report_gbits "$IP" >"$tmp/ib-c.txt" 2>&1 ||
		die "ib_write_bw: $(tail -5 "$tmp/ib-c.txt")"
	wait "$sp"
	# " #bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]"
	a=$(awk '$1 == 1048576 {print $4}' "$tmp/ib-c.txt" | tail -1)
	[ -n "$a" ] || die "ib_write_bw printed no figure: $(tail -5 "$tmp/ib-c.txt")"
	b=0
	c=0
}

res=$tmp/results.txt
: >"$res"
one() { # RUN WHAT
	case $2 in
	qemu-rdma) run_qemu rdma ;;
	qemu-pinall) run_qemu rdma-pin-all ;;
	qemu-multifd) run_qemu multifd ;;
	rmig-rdma) run_rmig rdma ;;
	rmig-tcp) run_rmig tcp ;;
	ib_write_bw) run_ibbw ;;
	esac
	echo "$1 $2 $a $b $c" >>"$res"
	printf '  %-12s %8.3f %8.3f %.3f\n' "$2" "$a" "$b" "$c"
}

echo "vs-qemu-vm: $size_arg over $IP (rxe0), $CH channels / QPs, $runs run(s); QEMU $("$QEMU" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')"
head -c "$bytes" /dev/urandom >"$IMG" || die "cannot write $IMG"
order=(qemu-rdma qemu-pinall qemu-multifd rmig-rdma rmig-tcp ib_write_bw)
echo "figures: phase s (QEMU migrate, rmig data; ib_write_bw Gb/s), whole s, rmig registration s"
echo "warm-up, untimed"
for w in "${order[@]}"; do one 0 "$w"; done
for i in $(seq "$runs"); do
	if [ $((i % 2)) = 1 ]; then seq_=("${order[@]}"); else
		seq_=()
		for ((k = ${#order[@]} - 1; k >= 0; k--)); do seq_+=("${order[k]}"); done
	fi
	echo "run $i: ${seq_[*]}"
	for w in "${seq_[@]}"; do one "$i" "$w"; done
done

python3 - "$res" "$bytes" <<'PY'
import statistics, sys
res, size = sys.argv[1], int(sys.argv[2])
runs = {}
for line in open(res):
    f = line.split()
    if f[0] != "0":
        runs.setdefault(f[1], []).append([float(x) for x in f[2:]])
med = lambda k, i: statistics.median(r[i] for r in runs[k])
gbit = lambda t: size * 8 / t / 1e9
n = len(runs["ib_write_bw"])
print(f"\nmedians of {n} run{'s' if n > 1 else ''}")
print(f"  {'':12} {'phase s':>9} {'Gb/s':>7} {'whole s':>9} {'Gb/s':>7} {'reg s':>7}")
for k in ("qemu-rdma", "qemu-pinall", "qemu-multifd", "rmig-rdma", "rmig-tcp"):
    p, w, r = med(k, 0), med(k, 1), med(k, 2)
    print(f"  {k:12} {p:9.3f} {gbit(p):7.3f} {w:9.3f} {gbit(w):7.3f} {r:7.3f}")
ib = med("ib_write_bw", 0)
print(f"  {'ib_write_bw':12} {'':9} {ib:7.3f}")
print("ratios of medians")
rows = [
    ("rmig rdma / QEMU rdma pin-all, whole command time", med("rmig-rdma", 1) / med("qemu-pinall", 1)),
    ("rmig rdma / QEMU rdma (default), whole command time", med("rmig-rdma", 1) / med("qemu-rdma", 1)),
    ("rmig rdma data / QEMU rdma pin-all migrate time", med("rmig-rdma", 0) / med("qemu-pinall", 0)),
    ("rmig tcp / QEMU multifd, whole command time", med("rmig-tcp", 1) / med("qemu-multifd", 1)),
    ("rmig tcp data / QEMU multifd migrate time", med("rmig-tcp", 0) / med("qemu-multifd", 0)),
    ("rmig rdma throughput, whole command / ib_write_bw", gbit(med("rmig-rdma", 1)) / ib),
    ("rmig rdma throughput, data phase / ib_write_bw", gbit(med("rmig-rdma", 0)) / ib),
]
for label, v in rows:
    print(f"  {label + ':':55} {v:.3f}")
PY
