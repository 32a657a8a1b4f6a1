#!/usr/bin/env bash
# rdma-bench.sh BUILD_DIR [MiB] - inside the soft-RoCE VM (see run-rdma-bench.sh):
# ib_write_bw and rmig on the same rxe link, with the same queue-pair count and
# message size, side by side in one run; then TCP over the same link. The ratio
# compares rmig's data phase (registration excluded, as ib_write_bw registers
# before its clock starts) with ib_write_bw; the whole-migration rate is shown
# too. Then postcopy fault latency (postcopy-bench.sh) on the same link.
# Prints figures and ratios; nothing here passes or fails on speed.
set -u
build=$1
mib=${2:-256}
IP=${SOFTROCE_IP:-10.0.0.1}
RM=$build/tools/rdma-migrate
port=18515
echo "rdma bench: 3 rounds, $mib MiB, 1 MiB messages, rxe0 on $IP (soft-RoCE under TCG: proves function, not NIC speed)"
# Warm-up, discarded: the first RDMA run in a fresh VM is slow for both tools
# (TCG translating fresh code paths, guest pages faulted in for the first time).
"$RM" bench --transport rdma --addr "$IP" --size 64M --channel-list 1 --quiet >/dev/null 2>&1
ib_write_bw -d rxe0 -R -s 1048576 -n 64 -p 18000 >/dev/null 2>&1 &
sleep 2
ib_write_bw -d rxe0 -R -s 1048576 -n 64 -p 18000 "$IP" >/dev/null 2>&1
wait
printf '%-4s %14s %18s %14s %8s %16s %16s\n' QPs "ib_write_bw" "rmig rdma (all)" "(data phase)" ratio "rmig tcp" "raw tcp"
for run in 1 2 3; do
for q in 1 4; do
	n=$((mib / q))
	ib_write_bw -d rxe0 -R -s 1048576 -q "$q" -n "$n" -p "$port" >/tmp/ibw-s.txt 2>&1 &
	sp=$!
	sleep 2
	ib_write_bw -d rxe0 -R -s 1048576 -q "$q" -n "$n" -p "$port" "$IP" >/tmp/ibw-c.txt 2>&1
	wait "$sp"
	port=$((port + 1))
	# "#bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate[Mpps]"
	ibw=$(awk '$1 == 1048576 {print $4}' /tmp/ibw-c.txt | tail -1)
	"$RM" bench --transport rdma --addr "$IP" --size "${mib}M" --channel-list "$q" --extent 1M \
		--json --quiet >/tmp/rb.json 2>/tmp/rb.err || cat /tmp/rb.err
	"$RM" bench --transport tcp --addr "$IP" --size "${mib}M" --channel-list "$q" --extent 1M \
		--json --quiet >/tmp/tb.json 2>/tmp/tb.err || cat /tmp/tb.err
	all=$(grep -o '"rmig_MiBps":[0-9.]*' /tmp/rb.json | cut -d: -f2)
	r=$(grep -o '"rmig_data_MiBps":[0-9.]*' /tmp/rb.json | cut -d: -f2)
	t=$(grep -o '"rmig_MiBps":[0-9.]*' /tmp/tb.json | cut -d: -f2)
	raw=$(grep -o '"raw_MiBps":[0-9.]*' /tmp/tb.json | cut -d: -f2)
	ratio=$(awk -v a="${r:-0}" -v b="${ibw:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
	printf '%-4s %9s MiB/s %13s MiB/s %9s MiB/s %8s %10s MiB/s %10s MiB/s\n' "$q" "${ibw:-?}" "${all:-?}" "${r:-?}" "$ratio" "${t:-?}" "${raw:-?}"
done
done

# postcopy fault latency on the same link, rdma then tcp, urgent channel on and off
echo
echo "postcopy fault latency on rxe0 ($((mib / 2)) MiB of random pages; TCG: compare the rows, not the absolute figures)"
for t in rdma tcp; do
	tests/bench/postcopy-bench.sh "$build" "$t" "$IP" "$((mib / 2))M" 3 | grep -E "^median|failed" |
		sed "s/^/$t  /"
done
