#!/usr/bin/env bash
# postcopy-bench.sh BUILD_DIR [TRANSPORT [ADDR [RAM [RUNS]]]] - postcopy fault
# latency, side by side in one run: `rdma-migrate bench --postcopy` with the
# urgent channel and with --no-urgent, RUNS times each, alternating. Each run
# is pure postcopy of RAM random pages; a workload at the destination times
# --faults touches of missing pages idle, then as many under the background
# load. Prints every run and the medians; every run is verified byte for byte.
# Nothing here passes or fails on speed.
set -u
build=$1
transport=${2:-tcp}
addr=${3:-127.0.0.1}
ram=${4:-1G}
runs=${5:-5}
RM=$build/tools/rdma-migrate
echo "postcopy latency: $ram of random pages over $transport on $addr, 4 channels, $runs runs per mode"
printf '%-10s %4s %8s %10s %10s %8s %10s %10s %8s %7s\n' mode run "idle n" "p50 us" "p99 us" "bg n" \
	"p50 us" "p99 us" "p99 x" resent
for run in $(seq "$runs"); do
	for mode in urgent no-urgent; do
		extra=()
		[ $mode = no-urgent ] && extra=(--no-urgent)
		if ! "$RM" bench --postcopy --transport "$transport" --addr "$addr" --ram-size "$ram" \
			--faults 2000 --timeout 60 --json --quiet "${extra[@]}" >/tmp/pcb.json 2>/tmp/pcb.err; then
			echo "$mode run $run failed: $(cat /tmp/pcb.err)"
			continue
		fi
		python3 - "$mode" "$run" /tmp/pcb.json <<'PY' | tee -a /tmp/pcb.all
import json, sys
d = json.load(open(sys.argv[3]))
i, b = d["idle"], d["background"]
print("%-10s %4s %8d %10.1f %10.1f %8d %10.1f %10.1f %8.2f %7d" % (sys.argv[1], sys.argv[2],
      i["faults"], i["p50_us"], i["p99_us"], b["faults"], b["p50_us"], b["p99_us"],
      d["p99_ratio"], d["resent"]))
PY
	done
done
python3 - /tmp/pcb.all <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for mode in ("urgent", "no-urgent"):
    r = [x for x in rows if x[0] == mode]
    if not r:
        continue
    med = lambda k: statistics.median(float(x[k]) for x in r)
    print("median %-10s idle p50 %7.1f us p99 %7.1f us | background p50 %8.1f us p99 %9.1f us | "
          "p99 background/idle %.2fx" % (mode, med(3), med(4), med(6), med(7), med(7) / med(4)))
PY
rm -f /tmp/pcb.all
