#!/usr/bin/env bash
# vm-bench.sh [BUILD_DIR [RUNS]] - live migration of a running QEMU VM, side
# by side in one run (defaults: build, 5):
#   rmig  rdma-migrate vm-send -> vm-recv over TCP loopback, 4 channels,
#         --downtime 300: rmig moves the RAM, QEMU's stream (x-ignore-shared)
#         only the device state; vm-send's dirty tracking is its default
#         (--track auto: soft-dirty bits where the kernel has them, else the
#         shadow compare);
#   rmig-shadow, rmig-sd  the same with --track shadow, --track soft-dirty;
#   qemu  QEMU's own migration of the same VM: multifd, 4 channels,
#         max-bandwidth 100 GiB/s (no limit in effect), downtime-limit 300 ms
#         (its default), over TCP loopback to a destination QEMU started with
#         -incoming defer on its own RAM file; driven over QMP.
# VM_BENCH_WHO picks the contenders (default "rmig qemu"). VM_BENCH_TRANSPORT=rdma
# with VM_BENCH_ADDR (an address of an RDMA device, as in the soft-RoCE VM):
# rmig over rdma, and QEMU's rdma: migration with rdma-pin-all instead of
# multifd. VM_BENCH_BOOT_S bounds a guest's boot (default 120).
# The VM: the test guest of tests/vmig/guest.sh, 128 MiB of RAM in a shared
# file (memory-backend-file, share=on), 1 vCPU under TCG, its workload
# (GUEST_WL_MIB, default 32 MiB) rewriting random pages at a set rate.
# Every migration gets a freshly booted source guest: it runs until two
# PROGRESS lines have passed (the second is a full interval into the
# workload: the measured rewrite rate is printed), then migrates.
#
# Scenarios: one per dirty rate in VM_BENCH_RATES (pages a second; default
# "2000 20000"). In each, every contender migrates once untimed first, then
# each of RUNS iterations runs both, in the reverse order of the iteration
# before. Every destination must answer VERIFY OK (the workload checks all of
# its pages) or the script exits 1.
#
# Figures (ms):
#   total     rmig: vm-send's total_s (from its start, QMP and setup
#             included, until the destination has loaded the device state and
#             acknowledged); qemu: query-migrate total-time on the source
#             (from the migrate command until the source has sent the last
#             byte);
#   downtime  rmig: vm-send's downtime_ms (from the moment it sees the source
#             in pre-switchover, the VM already stopped, until the destination
#             QEMU has loaded the device state and acknowledged; the
#             destination's cont comes after); qemu: query-migrate downtime on
#             the source (from stopping the VM until the source has sent the
#             last byte: the destination's load and start are not in it);
#   wall      rmig: the vm-send command, exec to exit; qemu: from sending
#             migrate until the source's MIGRATION event "completed" arrives;
#   stop>run  the same measure for both, from QMP event timestamps (host
#             wall clock, microseconds) on a second QMP monitor of each QEMU:
#             the source's STOP to the destination's RESUME: the time the
#             guest does not run;
#   start>run from starting the migration (vm-send exec / the migrate
#             command) until the destination's RESUME event.
# Ratios are rmig / qemu of the medians; below 1: rmig is faster.
# Details per row: rmig: vm-send's rounds, final round, device state; qemu:
# query-migrate's dirty syncs, setup time, bytes sent, mbps; both:
# outside_downtime, the part of stop>run outside the reported downtime,
# before its clock starts and after it stops (rmig's "after" is a little
# high: its clock is placed at vm-send's exec + total_s).
#
# Exits 1 when a migration fails or a destination does not verify, 2 on bad
# usage or a missing tool. Nothing here fails on speed.
# shellcheck disable=SC2154 # ${NAME}_qmp etc. are set by guest_start
set -u
if [ -n "${1:-}" ]; then
	BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "vm-bench.sh: no build dir '$1'" >&2; exit 2; }
fi
cd "$(dirname "$0")/../.." || exit 2
BUILD=${BUILD:-$(pwd)/build}
RUNS=${2:-5}
RM=$BUILD/tools/rdma-migrate
MIB=128
CH=4
DOWNTIME=300
MAXBW=$((100 << 30))
RATES=${VM_BENCH_RATES:-2000 20000}
TRANSPORT=${VM_BENCH_TRANSPORT:-tcp}
ADDR=${VM_BENCH_ADDR:-127.0.0.1}
read -r -a WHO <<<"${VM_BENCH_WHO:-rmig qemu}"

usage() { echo "vm-bench.sh: $*" >&2; exit 2; }
[ -x "$RM" ] || usage "no $RM (build it first: ./scripts/build.sh build)"
case $RUNS in '' | *[!0-9]* | 0) usage "RUNS '$RUNS': expected a positive number" ;; esac
for w in "${WHO[@]}"; do
	case $w in rmig | rmig-shadow | rmig-sd | qemu) ;; *) usage "VM_BENCH_WHO: '$w' is not rmig, rmig-shadow, rmig-sd or qemu" ;; esac
done
case $TRANSPORT in tcp | rdma) ;; *) usage "VM_BENCH_TRANSPORT: '$TRANSPORT' is not tcp or rdma" ;; esac
for r in $RATES; do
	case $r in '' | *[!0-9]*) usage "VM_BENCH_RATES: '$r' is not a number" ;; esac
done
command -v qemu-system-x86_64 >/dev/null || usage "no qemu-system-x86_64"
command -v python3 >/dev/null || usage "no python3"

# shellcheck source=tests/vmig/guest.sh
. tests/vmig/guest.sh

RES=$(mktemp /tmp/vm-bench.XXXXXX.tsv)
EVPIDS=()
RPID=""
t_start=$EPOCHREALTIME

# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	local rc=$? p
	trap - EXIT
	for p in "${EVPIDS[@]}" $RPID; do kill "$p" 2>/dev/null; done
	for p in "${EVPIDS[@]}" $RPID; do wait "$p" 2>/dev/null; done
	guest_stop_all
	rm -f "$RES"
	echo "vm-bench: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t_start" "$EPOCHREALTIME") s"
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "vm-bench: FAIL: $*" >&2
	guest_print_logs 15 >&2
	exit 1
}

# the QMP events of one QEMU, one JSON line each, into a file; "READY" first
EVLOG='
import socket, sys, time
path, out = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 30
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        break
    except OSError:
        s.close()
        if time.monotonic() > deadline:
            sys.exit(2)
        time.sleep(0.02)
f = s.makefile("rw")
f.readline()
f.write("{\"execute\":\"qmp_capabilities\"}\n")
f.flush()
with open(out, "w") as o:
    for line in f:
        if "\"event\"" in line:
            o.write(line)
        elif "\"return\"" in line:
            o.write("READY\n")
        o.flush()
'

# QEMU's migration: qmigrate SRC_QMP DST_QMP PORT; one JSON line of figures
QMIGRATE='
import json, socket, sys, time
src, dst, port, ch, bw, dl = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
tp, addr = sys.argv[7], sys.argv[8]

class Q:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.s.settimeout(120)
        self.f = self.s.makefile("rw")
        self.events = []
        self.f.readline()
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise SystemExit("QEMU closed the QMP connection")
        return json.loads(line)

    def cmd(self, name, args=None):
        m = {"execute": name}
        if args is not None:
            m["arguments"] = args
        self.f.write(json.dumps(m) + "\n")
        self.f.flush()
        while True:
            r = self.read()
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise SystemExit("%s: %s" % (name, r["error"]))
            elif "return" in r:
                return r["return"]

    def migration_event(self):
        while True:
            while self.events:
                e = self.events.pop(0)
                if e["event"] == "MIGRATION" and e["data"]["status"] in ("completed", "failed", "cancelled"):
                    return e
            self.events.append(self.read())

d, s = Q(dst), Q(src)
if tp == "rdma": # QEMU rdma: with every RAM block registered up front
    caps = [{"capability": "rdma-pin-all", "state": True}]
    dpar, spar = {}, {"max-bandwidth": bw, "downtime-limit": dl}
    uri = f"rdma:{addr}:{port}"
else:
    caps = [{"capability": "multifd", "state": True}]
    dpar, spar = {"multifd-channels": ch}, {"multifd-channels": ch, "max-bandwidth": bw, "downtime-limit": dl}
    uri = f"tcp:{addr}:{port}"
d.cmd("migrate-set-capabilities", {"capabilities": caps})
if dpar:
    d.cmd("migrate-set-parameters", dpar)
d.cmd("migrate-incoming", {"uri": uri})
s.cmd("migrate-set-capabilities", {"capabilities": caps + [{"capability": "events", "state": True}]})
s.cmd("migrate-set-parameters", spar)
t0 = time.time()
s.cmd("migrate", {"uri": uri})
e = s.migration_event()
t1 = time.time()
# QEMU 7.2 sets "completed" (and sends the event) before it fills in
# total-time and downtime: a query at once can read 0 for both
for _ in range(200):
    r = s.cmd("query-migrate")
    if r.get("status") != "completed" or r.get("total-time"):
        break
    time.sleep(0.01)
ram = r.get("ram", {})
print(json.dumps({"status": r.get("status"), "error": r.get("error-desc", ""), "t0": t0,
                  "wall_ms": (t1 - t0) * 1e3, "total_ms": r.get("total-time"),
                  "downtime_ms": r.get("downtime"), "setup_ms": r.get("setup-time"),
                  "transferred": ram.get("transferred"), "dirty_sync": ram.get("dirty-sync-count"),
                  "mbps": ram.get("mbps")}))
sys.exit(0 if r.get("status") == "completed" else 1)
'

# one result line: figures RESFILE SCEN RUN CONTENDER ORDER RATE SRCEV DSTEV T0 WALL_MS JSON
FIGURES='
import json, sys
res, scen, run, who, order, rate, srcev, dstev, t0, wall, js = sys.argv[1:12]
def ev(path, name):
    for line in open(path):
        if line.startswith("{"):
            e = json.loads(line)
            if e["event"] == name:
                return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
    raise SystemExit(f"no {name} event in {path}")
stop, resume = ev(srcev, "STOP"), ev(dstev, "RESUME")
j = json.loads(js)
t0 = float(t0)
if who.startswith("rmig"):
    total, down, wall = j["total_s"] * 1e3, j["downtime_ms"], float(wall)
    extra = "setup_ms=%.1f reg_ms=%.1f first_round_ms=%.1f (collect %.1f) rounds=%d final_pages=%d final_round_ms=%.1f devstate=%d devstate_ms=%.1f load_ack_ms=%.1f tracking=%s" % (
        j["setup_ms"], j["registration_ms"], j["first_round_ms"], j.get("first_collect_ms", 0.0), j["rounds"], j["final_pages"], j["final_round_ms"],
        j["device_state_bytes"], j["device_state_ms"], j["load_and_ack_ms"], j["tracking"])
    if "freezes" in j:
        extra += " stops=%d stop_ms_max=%.1f" % (j["freezes"], j["freeze_ms_max"])
else:
    total, down, wall = j["total_ms"], j["downtime_ms"], j["wall_ms"]
    t0 = j["t0"]
    extra = "syncs=%d setup_ms=%d sent_MiB=%.1f mbps=%.0f" % (
        j["dirty_sync"], j["setup_ms"], j["transferred"] / 1048576, j["mbps"])
# where the guest-visible stop outside the reported downtime goes: before
# its clock starts, after it stops (rmig: the clock ends at t0 + total_s,
# and total_s starts a little after exec, so "after" is a little high)
end = t0 + total / 1e3 if who.startswith("rmig") else stop + down / 1e3
after = (resume - end) * 1e3
before = (resume - stop) * 1e3 - down - after
extra += " outside_downtime: before=%.1f after=%.1f" % (before, after)
row = [scen, run, who, order, rate, f"{total:.1f}", f"{down:.1f}", f"{wall:.1f}",
       f"{(resume - stop) * 1e3:.1f}", f"{(resume - t0) * 1e3:.1f}", extra]
with open(res, "a") as f:
    f.write("\t".join(row) + "\n")
print("  {:>4} {:>11} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}  {}".format(run, who, order, rate, *row[5:10], extra))
'

evlog_start() { # NAME: logs the events of NAME's second monitor into $GUEST_DIR/NAME.events
	local out=$GUEST_DIR/$1.events
	rm -f "$out"
	python3 -c "$EVLOG" "$GUEST_DIR/$1.ev" "$out" &
	EVPIDS+=($!)
	for _ in $(seq 200); do
		grep -q '^READY' "$out" 2>/dev/null && return 0
		sleep 0.05
	done
	die "no QMP event monitor on $1"
}

evlog_stop() {
	local p
	for p in "${EVPIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${EVPIDS[@]}"; do wait "$p" 2>/dev/null; done
	EVPIDS=()
}

wait_event() { # NAME EVENT TIMEOUT_S
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		grep -q "\"event\": *\"$2\"" "$GUEST_DIR/$1.events" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# boot NAME: a fresh source guest, running its workload; sets RATE_SEEN
boot() {
	local p1 p2
	guest_start "$1" "$GUEST_SHM/$1.ram" $MIB -qmp "unix:$GUEST_DIR/$1.ev,server=on,wait=off" ||
		die "the source QEMU $1 starts"
	guest_wait_progress "$1" "${VM_BENCH_BOOT_S:-120}" >/dev/null || die "$1 boots to PROGRESS"
	p1=$(guest_wait_progress "$1" 10) || die "$1 goes on printing PROGRESS"
	p2=$(guest_wait_progress "$1" 10) || die "$1 goes on printing PROGRESS"
	RATE_SEEN=$((${p2##* } - ${p1##* }))
}

# after a migration: the destination verifies; both guests go
finish_trial() { # SRC DST
	local v
	v=$(guest_verify "$2" 60) || die "$2 does not verify: '$v'"
	VERIFIED=$v
	evlog_stop
	guest_stop "$1"
	guest_stop "$2"
	rm -f "$GUEST_SHM/$1.ram" "$GUEST_SHM/$2.ram"
}

# trial_rmig TAG SCEN RUN ORDER [untimed]; $WHO_NOW: rmig, rmig-shadow or rmig-sd
trial_rmig() {
	local src=$1s dst=$1d q port="" rc rrc t0 t1 j track=()
	case $WHO_NOW in
	rmig-shadow) track=(--track shadow) ;;
	rmig-sd) track=(--track soft-dirty) ;;
	esac
	boot "$src"
	guest_start_incoming "$dst" "$GUEST_SHM/$dst.ram" $MIB -S -qmp "unix:$GUEST_DIR/$dst.ev,server=on,wait=off" ||
		die "the destination QEMU $dst starts"
	evlog_start "$src"
	evlog_start "$dst"
	q=$(_guest_var "$dst" qmp)
	rm -f "$GUEST_DIR/$dst.port"
	"$RM" vm-recv --qmp "$q" --listen "$ADDR:0" --port-file "$GUEST_DIR/$dst.port" --timeout 60 \
		>"$GUEST_DIR/$dst.recv.out" 2>"$GUEST_DIR/$dst.recv.err" &
	RPID=$!
	for _ in $(seq 200); do
		[ -s "$GUEST_DIR/$dst.port" ] && break
		kill -0 "$RPID" 2>/dev/null || break
		sleep 0.05
	done
	port=$(cat "$GUEST_DIR/$dst.port" 2>/dev/null)
	[ -n "$port" ] || die "vm-recv did not listen: $(cat "$GUEST_DIR/$dst.recv.err")"
	q=$(_guest_var "$src" qmp)
	t0=$EPOCHREALTIME
	"$RM" vm-send --qmp "$q" --to "$ADDR:$port" --channels $CH --transport "$TRANSPORT" \
		--downtime $DOWNTIME --timeout 60 --json "${track[@]}" >"$GUEST_DIR/$dst.json" 2>"$GUEST_DIR/$dst.send.err"
	rc=$?
	t1=$EPOCHREALTIME
	wait "$RPID"
	rrc=$?
	RPID=""
	if [ $rc != 0 ] || [ $rrc != 0 ]; then
		die "rmig $src -> $dst: vm-send $rc ($(tail -2 "$GUEST_DIR/$dst.send.err")), vm-recv $rrc ($(tail -2 "$GUEST_DIR/$dst.recv.err"))"
	fi
	wait_event "$dst" RESUME 30 || die "$dst never resumed"
	j=$(cat "$GUEST_DIR/$dst.json")
	if [ "${5:-}" != untimed ]; then
		python3 -c "$FIGURES" "$RES" "$2" "$3" "$WHO_NOW" "$4" "$RATE_SEEN" "$GUEST_DIR/$src.events" \
			"$GUEST_DIR/$dst.events" "$t0" "$(python3 -c "import sys; print((float(sys.argv[2]) - float(sys.argv[1])) * 1e3)" "$t0" "$t1")" "$j" ||
			die "rmig figures"
	fi
	finish_trial "$src" "$dst"
}

# trial_qemu TAG SCEN RUN ORDER [untimed]
trial_qemu() {
	local src=$1s dst=$1d port j
	boot "$src"
	guest_start_incoming "$dst" "$GUEST_SHM/$dst.ram" $MIB -qmp "unix:$GUEST_DIR/$dst.ev,server=on,wait=off" ||
		die "the destination QEMU $dst starts"
	evlog_start "$src"
	evlog_start "$dst"
	port=$(guest_free_port)
	j=$(python3 -c "$QMIGRATE" "$(_guest_var "$src" qmp)" "$(_guest_var "$dst" qmp)" "$port" \
		$CH $MAXBW $DOWNTIME "$TRANSPORT" "$ADDR" 2>"$GUEST_DIR/$dst.qmig.err") ||
		die "QEMU migration $src -> $dst: $j $(cat "$GUEST_DIR/$dst.qmig.err")"
	wait_event "$dst" RESUME 30 || die "$dst never resumed"
	if [ "${5:-}" != untimed ]; then
		python3 -c "$FIGURES" "$RES" "$2" "$3" qemu "$4" "$RATE_SEEN" "$GUEST_DIR/$src.events" \
			"$GUEST_DIR/$dst.events" 0 0 "$j" || die "qemu figures"
	fi
	finish_trial "$src" "$dst"
}

echo "vm-bench: ${MIB} MiB guest (1 vCPU, TCG), workload ${GUEST_WL_MIB:-32} MiB; $TRANSPORT to $ADDR, $CH channels," \
	"downtime limit $DOWNTIME ms; $RUNS runs a scenario, rates: $RATES pages/s; contenders: ${WHO[*]}"
echo "vm-bench: $(qemu-system-x86_64 --version | head -1); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
hdr() {
	printf '  %4s %11s %5s %6s %9s %9s %9s %9s %9s  %s\n' run who order rate/s total downtime wall 'stop>run' 'start>run' details
}
for rate in $RATES; do
	export GUEST_WL_RATE=$rate
	scen=r$rate
	echo
	echo "== scenario: workload rewriting $rate pages/s (figures in ms; rate/s: rewrites measured in the second before the migration)"
	for w in "${WHO[@]}"; do
		WHO_NOW=$w
		"trial_${w%%-*}" "${scen}_w_${w//-/_}" "$scen" warm 0 untimed
		echo "  warm-up $w: $VERIFIED"
	done
	hdr
	n=${#WHO[@]}
	for ((i = 1; i <= RUNS; i++)); do
		# each run in another order: the contenders turned by one, and reversed every other run
		order=()
		for ((k = 0; k < n; k++)); do order+=("${WHO[(i + k) % n]}"); done
		if ((i % 2 == 0)); then
			for ((k = 0; k < n / 2; k++)); do
				w=${order[k]}
				order[k]=${order[n - 1 - k]}
				order[n - 1 - k]=$w
			done
		fi
		for ((k = 0; k < n; k++)); do
			WHO_NOW=${order[k]}
			"trial_${WHO_NOW%%-*}" "${scen}_${i}_${WHO_NOW//-/_}" "$scen" "$i" $((k + 1))
		done
	done
	echo "  every destination: VERIFY OK"
done

echo
python3 - "$RES" "$RUNS" "${WHO[@]}" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
who_all = sys.argv[3:]
names = ["total", "downtime", "wall", "stop>run", "start>run"]
print(f"== medians of {sys.argv[2]} runs (ms); ratio = contender / qemu")
print("  {:>8} {:>11} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}".format("scenario", "who", "rate/s", *names))
for scen in dict.fromkeys(r[0] for r in rows):
    med = {}
    for who in who_all:
        sel = [r for r in rows if r[0] == scen and r[2] == who]
        med[who] = [statistics.median(float(r[5 + k]) for r in sel) for k in range(5)]
        rate = statistics.median(int(r[4]) for r in sel)
        print("  {:>8} {:>11} {:>7.0f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}".format(scen, who, rate, *med[who]))
    if "qemu" in med:
        for who in who_all:
            if who != "qemu":
                ratio = [a / b if b else float("nan") for a, b in zip(med[who], med["qemu"])]
                print("  {:>8} {:>11} {:>7} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}".format(scen, who + "/qemu", "", *ratio))
PY
