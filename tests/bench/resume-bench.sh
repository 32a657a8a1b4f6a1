#!/usr/bin/env bash
# resume-bench.sh [BUILD_DIR [MiB [RUNS]]] - what a resume saves after a link
# drop, against starting again, side by side (root: network namespaces).
#
# recv runs in namespace rmb-a (10.96.0.1), send in rmb-b, one veth pair
# between them. The image (random bytes in /dev/shm, default 512 MiB) moves
# over 4 TCP channels at --max-bandwidth 256M (so that the drop lands
# mid-transfer); 40% of the way in, the send side's veth goes down for 2 s
# (--timeout 1: both ends see the break within a second), then comes back.
#   resume   send --resume, recv --keep: the same processes go on
#   restart  both fail; once the link is back, a fresh send -> recv moves
#            the whole image again (what an operator does without resume)
# RUNS (default 3) iterations, the order reversed every other one; every
# destination is compared byte for byte. Figures per case, medians: seconds
# from link up to the data moving again (resume: send's "resumed:" line;
# restart: the fresh send's start), from link up to done, and the MiB sent
# after the break (resume: the resumed session's --json bytes; restart: the
# whole image).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
MIB=${2:-512}
RUNS=${3:-3}
RM=$build/tools/rdma-migrate
BW=256M
W=$(mktemp -d /dev/shm/resume-bench.XXXXXX)
cleanup() {
	kill $(jobs -p) 2>/dev/null
	ip netns del rmb-a 2>/dev/null
	ip netns del rmb-b 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
die() { echo "resume-bench: $*" >&2; exit 1; }

ip netns del rmb-a 2>/dev/null
ip netns del rmb-b 2>/dev/null
ip netns add rmb-a && ip netns add rmb-b &&
	ip link add rmb-va netns rmb-a type veth peer name rmb-vb netns rmb-b &&
	ip -n rmb-a addr add 10.96.0.1/24 dev rmb-va && ip -n rmb-b addr add 10.96.0.2/24 dev rmb-vb &&
	ip -n rmb-a link set rmb-va up && ip -n rmb-b link set rmb-vb up ||
	die "cannot build the network namespaces (root and iproute2 needed)"
A=(ip netns exec rmb-a)
B=(ip netns exec rmb-b)
head -c $((MIB << 20)) /dev/urandom >"$W/src.img" || die "cannot write the image"
# the drop: 40% of the transfer at 256 MiB/s
DROP_AT=$(python3 -c "print(round($MIB * 0.4 / 256, 2))")

now() { date +%s.%N; }

start_recv() { # ARGS...
	rm -f "$W/dst.img" "$W/port"
	"${A[@]}" "$RM" recv --listen 10.96.0.1:0 --port-file "$W/port" --ram "ram=$W/dst.img" \
		--timeout 1 "$@" >/dev/null 2>"$W/rerr" &
	RP=$!
	for _ in $(seq 400); do [ -s "$W/port" ] && break; sleep 0.005; done
}

start_send() { # JSON ARGS...
	local json=$1
	shift
	"${B[@]}" "$RM" send --to "10.96.0.1:$(cat "$W/port")" --ram "ram=$W/src.img" \
		--transport tcp --channels 4 --max-bandwidth $BW --timeout 1 --json "$@" \
		>"$json" 2>"$W/serr" &
	SP=$!
}

# one run: CASE -> a line "case up_to_moving_s up_to_done_s mib_after"
one() {
	local name=$1 up moving done mib
	if [ "$name" = resume ]; then
		start_recv --keep --recovery-timeout 30
		start_send "$W/s.json" --resume --recovery-timeout 30
	else
		start_recv
		start_send "$W/s.json"
	fi
	sleep "$DROP_AT"
	ip -n rmb-b link set rmb-vb down
	sleep 2
	ip -n rmb-b link set rmb-vb up
	up=$(now)
	if [ "$name" = resume ]; then
		for _ in $(seq 3000); do
			grep -q "resumed:" "$W/serr" && break
			sleep 0.01
		done
		moving=$(now)
		wait $SP || die "resume: send failed: $(cat "$W/serr")"
		wait $RP || die "resume: recv failed: $(cat "$W/rerr")"
	else
		wait $SP && die "restart: the first send did not fail"
		wait $RP && die "restart: the first recv did not fail"
		start_recv
		moving=$(now)
		start_send "$W/s.json"
		wait $SP || die "restart: send failed: $(cat "$W/serr")"
		wait $RP || die "restart: recv failed: $(cat "$W/rerr")"
	fi
	done=$(now)
	cmp -s "$W/src.img" "$W/dst.img" || die "$name: the destination differs"
	mib=$(python3 -c "import json; print(round(json.load(open('$W/s.json'))['bytes'] / 1048576, 1))")
	python3 -c "print('$name', round($moving - $up, 2), round($done - $up, 2), $mib)"
}

echo "resume-bench: ${MIB} MiB at $BW/s over 4 TCP channels, veth down at ${DROP_AT} s for 2 s, $RUNS runs"
: >"$W/rows"
for i in $(seq "$RUNS"); do
	if [ $((i % 2)) = 1 ]; then order="resume restart"; else order="restart resume"; fi
	for c in $order; do one "$c" | tee -a "$W/rows"; done
done
python3 - "$W/rows" "$MIB" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for case in ("resume", "restart"):
    r = [x for x in rows if x[0] == case]
    med[case] = [statistics.median(float(x[k]) for x in r) for k in (1, 2, 3)]
print()
print("| case | link up -> moving, s | link up -> done, s | MiB sent after the break |")
print("|---|---|---|---|")
for case in ("resume", "restart"):
    m = med[case]
    print(f"| {case} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.1f} of {sys.argv[2]} |")
r, f = med["resume"], med["restart"]
print()
print(f"resume/restart: time after link up {r[1] / f[1]:.2f}, bytes after the break {r[2] / f[2]:.2f}")
PY
