#!/usr/bin/env bash
# rails-bench.sh [BUILD_DIR [MiB [RUNS]]] - one rail against two, side by side
# in one boot of the soft-RoCE VM (run it with run-rails-bench.sh).
#
# The same image (random bytes in /dev/shm, default 256 MiB) moves with
# `rdma-migrate send` -> `recv` over 4 channels, into a fresh destination
# file each run, for each transport (rdma, tcp):
#   1 rail   recv --listen 10.0.0.1:0                      (rxe0 / dummy0)
#   2 rails  recv --listen 10.0.0.1:0 --listen 10.0.1.1:0  (rxe0 and rxe1)
# One untimed run of each first, then RUNS (default 5) iterations, the order
# reversed every other one. Every destination is compared byte for byte.
# Figures per case, medians: send's data phase (duration_s of --json), its
# throughput, the whole commands' wall time, and the CPU seconds (user + sys)
# of send and recv together with the share of each rail's bytes. Under
# soft-RoCE the "wire" is the CPU (rxe copies every byte in the kernel), so
# two rails add no bandwidth on these 2 cores: the figures say how rails
# share the work and what they cost, not what two NICs would give.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
MIB=${2:-256}
RUNS=${3:-5}
RM=$build/tools/rdma-migrate
IP=${SOFTROCE_IP:-10.0.0.1}
IP2=${SOFTROCE_IP2:-10.0.1.1}
W=$(mktemp -d /dev/shm/rails-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
die() { echo "rails-bench: $*" >&2; exit 1; }

ip -4 addr show | grep -q "inet $IP2/" || die "no second rail address $IP2 (run it in the soft-RoCE VM)"
head -c $((MIB << 20)) /dev/urandom >"$W/src.img" || die "cannot write the image"

# one run: CASE TRANSPORT -> a line "case transport data_s MiBps wall_s cpu_s rail0 rail1"
one() {
	local name=$1 tp=$2 listen=(--listen "$IP:0")
	[ "$name" = 2rails ] && listen+=(--listen "$IP2:0")
	rm -f "$W/dst.img" "$W/port"
	local t0 t1
	t0=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$W/rt" "$RM" recv "${listen[@]}" --port-file "$W/port" \
		--ram "ram=$W/dst.img" --quiet >/dev/null 2>"$W/rerr" &
	local rp=$!
	for _ in $(seq 400); do [ -s "$W/port" ] && break; sleep 0.005; done
	/usr/bin/time -f "%U %S" -o "$W/st" "$RM" send --to "$IP:$(cat "$W/port")" \
		--ram "ram=$W/src.img" --transport "$tp" --channels 4 --json --quiet \
		>"$W/s.json" 2>"$W/serr" || die "$name $tp: send failed: $(cat "$W/serr")"
	wait $rp || die "$name $tp: recv failed: $(cat "$W/rerr")"
	t1=$(date +%s.%N)
	cmp -s "$W/src.img" "$W/dst.img" || die "$name $tp: the destination differs"
	python3 - "$W/s.json" "$name" "$tp" "$t0" "$t1" "$W/st" "$W/rt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cpu = sum(float(x) for f in sys.argv[6:8] for x in open(f).read().split()[-2:])
r = d["rails"]
tot = sum(x["bytes"] for x in r) or 1
share = [x["bytes"] / tot for x in r] + [0.0]
print(sys.argv[2], sys.argv[3], d["duration_s"], d["throughput_MiBps"],
      float(sys.argv[5]) - float(sys.argv[4]), cpu, f"{share[0]:.2f}", f"{share[1]:.2f}")
PY
}

res=$W/res
: >"$res"
order=(1rail:rdma 2rails:rdma 1rail:tcp 2rails:tcp)
for c in "${order[@]}"; do one "${c%%:*}" "${c##*:}" >/dev/null; done # untimed
for i in $(seq "$RUNS"); do
	if [ $((i % 2)) = 1 ]; then seq_=("${order[@]}"); else seq_=(2rails:tcp 1rail:tcp 2rails:rdma 1rail:rdma); fi
	for c in "${seq_[@]}"; do one "${c%%:*}" "${c##*:}" >>"$res" || exit 1; done
done
python3 - "$res" "$MIB" "$RUNS" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"# {sys.argv[2]} MiB random image, 4 channels, medians of {sys.argv[3]} alternated runs")
print("| case | transport | data s | MiB/s | whole s | CPU s (both) | rail 0 / rail 1 bytes |")
print("|---|---|---|---|---|---|---|")
med = {}
for case in ("1rail", "2rails"):
    for tp in ("rdma", "tcp"):
        rs = [r for r in rows if r[0] == case and r[1] == tp]
        m = [st.median(float(r[k]) for r in rs) for k in range(2, 6)]
        med[(case, tp)] = m
        print(f"| {case} | {tp} | {m[0]:.3f} | {m[1]:.0f} | {m[2]:.3f} | {m[3]:.2f} | {rs[-1][6]} / {rs[-1][7]} |")
for tp in ("rdma", "tcp"):
    a, b = med[("2rails", tp)], med[("1rail", tp)]
    print(f"2 rails / 1 rail, {tp}: throughput {a[1] / b[1]:.2f}, whole command {a[2] / b[2]:.2f}, CPU {a[3] / b[3]:.2f}")
PY
