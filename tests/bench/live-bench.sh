#!/usr/bin/env bash
# live-bench.sh BUILD_DIR [TRANSPORT [ADDR [RAM_MiB [RATES]]]] - live migration
# figures from `rdma-migrate bench --live`, side by side in one run:
#   1. downtime and total time against the guest's dirty rate;
#   2. the switchover of 400 MiB of device state (4 blobs of 100 MiB, guest
#      idle) over 1 and over 4 channels, and the ratio of their downtimes
#      (perfect parallelism would give 1/4).
# Every migration is verified byte for byte; nothing here fails on speed.
# On the host: live-bench.sh build tcp 127.0.0.1. In the soft-RoCE VM:
# run-live-bench.sh (rdma on rxe0). LIVE_BENCH_DOWNTIME (ms, default 300) and
# LIVE_BENCH_REPS (default 5) tune it.
set -u
build=$1
tp=${2:-tcp}
addr=${3:-127.0.0.1}
ram=${4:-512}
rates=${5:-0 64M 256M 1G 4G}
dl=${LIVE_BENCH_DOWNTIME:-300} # ms
RM=$build/tools/rdma-migrate
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }

echo "live bench: $tp on $addr, ${ram} MiB guest, 2 writers (uniform), 4 channels, downtime limit $dl ms, max 30 rounds"
printf '%-11s %7s %-11s %12s %12s %10s %13s %9s\n' "dirty rate" rounds decision "expected ms" "downtime ms" "total s" "MiB/s" verified
for r in $rates; do
	"$RM" bench --live --transport "$tp" --addr "$addr" --ram-size "${ram}M" --dirty-rate "$r" \
		--writers 2 --channels 4 --downtime "$dl" --switch-anyway --timeout 120 --json --quiet >/tmp/lb.json 2>/tmp/lb.err
	if [ -s /tmp/lb.json ]; then
		printf '%-11s %7s %-11s %12.1f %12.1f %10.3f %13.1f %9s\n' "$r/s" \
			"$(field /tmp/lb.json 'len(d["rounds"])')" "$(field /tmp/lb.json 'd["decision"]')" \
			"$(field /tmp/lb.json 'd["expected_downtime_ms"]')" "$(field /tmp/lb.json 'd["downtime_ms"]')" \
			"$(field /tmp/lb.json 'd["total_s"]')" "$(field /tmp/lb.json 'd["throughput_MiBps"]')" \
			"$(field /tmp/lb.json 'd["verified"]')"
	else
		echo "$r/s: failed: $(cat /tmp/lb.err)"
	fi
done

echo
reps=${LIVE_BENCH_REPS:-7}
echo "device state at switchover: 4 blobs of 100 MiB, 64 MiB guest, no writers; $reps runs each, alternating"
printf '%-9s %s\n' channels "downtime ms (each run)"
d1=()
d4=()
for rep in $(seq "$reps"); do
	for ch in 1 4; do
		"$RM" bench --live --transport "$tp" --addr "$addr" --ram-size 64M --dirty-rate 0 \
			--writers 1 --channels "$ch" --device-state 100M,100M,100M,100M --timeout 120 \
			--switch-anyway --json --quiet >/tmp/ls.json 2>/tmp/ls.err ||
			{ echo "failed: $(cat /tmp/ls.err)"; continue; }
		[ "$(field /tmp/ls.json 'd["verified"]')" = True ] || echo "not verified!"
		if [ "$ch" = 1 ]; then d1+=("$(field /tmp/ls.json 'd["downtime_ms"]')"); else d4+=("$(field /tmp/ls.json 'd["downtime_ms"]')"); fi
	done
done
echo "1         ${d1[*]}"
echo "4         ${d4[*]}"
python3 - "${d1[*]}" "${d4[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
if a and b:
    m1, m4 = statistics.median(a), statistics.median(b)
    print(f"median downtime: 1 channel {m1:.1f} ms, 4 channels {m4:.1f} ms, ratio 4/1 {m4 / m1:.3f} (target near 0.25)")
    print(f"best downtime:   1 channel {min(a):.1f} ms, 4 channels {min(b):.1f} ms, ratio 4/1 {min(b) / min(a):.3f}")
PY
