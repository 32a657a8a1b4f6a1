#!/usr/bin/env bash
# file-bench.sh [BUILD_DIR [SIZE [RUNS [DIR]]]] - rdma-migrate save / restore
# against dd and against QEMU 7.2's migration to a file, side by side,
# alternated, medians of RUNS (default: build, 2G, 3, /tmp).
#
# The image in /dev/shm is half zero pages (4 KiB data, 4 KiB zero). Each run:
#   dd write      dd if=IMG of=DIR/out.raw bs=1M oflag=direct
#   save          rdma-migrate save --to DIR/s.rmig (4 channels; fdatasync included)
#   save --direct the same with O_DIRECT
#   qemu          a paused QEMU (-S) whose RAM is the image (memory-backend-file,
#                 share=off, prealloc=on) migrates to "exec:cat > DIR/q.mig";
#                 time from migrate to the file synced (cat has exited: QEMU may
#                 report completed before it does, so the script waits for it)
#   dd read       dd if=DIR/out.raw of=/dev/shm/back bs=1M iflag=direct
#   restore       rdma-migrate restore --from DIR/s.rmig (cold: the file's cached
#                 pages evicted first), and --direct
# Prints every run, the medians and the file sizes (apparent and allocated).
# Every restore is compared with the image byte for byte. Figures only: it
# never fails on speed; it exits 1 when a tool fails or a restore differs.
set -u
BUILD=$(cd "${1:-build}" && pwd)
SIZE=${2:-2G}
RUNS=${3:-3}
D=$(mktemp -d "${4:-/tmp}/file-bench.XXXXXX")
RM="$BUILD/tools/rdma-migrate"
IMG=/dev/shm/file-bench-$$.img
BACK=/dev/shm/file-bench-$$.back
QPID=
trap 'kill $QPID 2>/dev/null; rm -rf "$D" "$IMG" "$BACK"' EXIT
bytes=$(numfmt --from=iec "$SIZE")
mib=$((bytes >> 20))
failed=0

python3 - "$IMG" "$bytes" <<'PY'
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    z = bytes(4096)
    for _ in range(n // 8192):
        f.write(os.urandom(4096))
        f.write(z)
PY

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$(now)"; }
evict() { sync "$1"; dd if="$1" iflag=nocache count=0 status=none; }
t() { # CMD...: seconds, or FAILED
	local s
	s=$(now)
	if "$@" >/dev/null 2>>"$D/err"; then since "$s"; else echo FAILED; failed=1; fi
}
check() { # WHAT: the restored image must be the original
	cmp -s "$IMG" "$BACK" || { echo "$1: the restored image differs" >&2; failed=1; }
	rm -f "$BACK"
}

qmp() { # SOCKET JSON...: one QMP conversation, replies printed
	python3 - "$@" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
for _ in range(200):
    try:
        s.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.05)
f = s.makefile("rw")
f.readline()
for cmd in ['{"execute":"qmp_capabilities"}'] + sys.argv[2:]:
    f.write(cmd + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            print(json.dumps(r)); break
PY
}

qemu_save() { # OUT: prints seconds from migrate to the file synced
	local sock=$D/q.sock out=$1 s st
	rm -f "$out" "$sock"
	qemu-system-x86_64 -machine none,memory-backend=m -accel tcg -nodefaults -display none \
		-m "${mib}M" -S -qmp "unix:$sock,server=on,wait=off" \
		-object "memory-backend-file,id=m,size=${bytes},mem-path=$IMG,share=off,prealloc=on" \
		>/dev/null 2>>"$D/err" &
	QPID=$!
	qmp "$sock" >/dev/null || { echo FAILED; failed=1; return; }
	s=$(now)
	qmp "$sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > $out\"}}" >/dev/null
	for _ in $(seq 6000); do
		st=$(qmp "$sock" '{"execute":"query-migrate"}' | tail -1 |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["return"].get("status",""))')
		[ "$st" = completed ] || [ "$st" = failed ] && break
		sleep 0.01
	done
	# completed can come before cat has written everything: wait for it, then sync
	while pgrep -f "cat > $out" >/dev/null; do sleep 0.01; done
	sync "$out"
	if [ "$st" = completed ]; then since "$s"; else echo FAILED; failed=1; fi
	kill "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	QPID=
}

echo "file-bench: $SIZE image of half zero pages, files in $D, $RUNS runs"
declare -A all
for r in $(seq "$RUNS"); do
	rm -f "$D"/out.raw "$D"/s.rmig "$D"/sd.rmig "$D"/q.mig
	row=()
	if ((r % 2)); then order="dd save saved qemu"; else order="qemu saved save dd"; fi
	for w in $order; do
		case $w in
		dd) v=$(t dd if="$IMG" of="$D/out.raw" bs=1M oflag=direct) ;;
		save) v=$(t "$RM" save --ram "ram=$IMG" --to "$D/s.rmig" --quiet) ;;
		saved) v=$(t "$RM" save --ram "ram=$IMG" --to "$D/sd.rmig" --direct --quiet) ;;
		qemu) v=$(qemu_save "$D/q.mig") ;;
		esac
		all[$w]+="$v "
		row+=("$w $v")
	done
	for f in out.raw s.rmig sd.rmig; do evict "$D/$f"; done
	v=$(t dd if="$D/out.raw" of="$BACK" bs=1M iflag=direct); check "dd read"; all[ddr]+="$v "; row+=("dd-read $v")
	v=$(t "$RM" restore --from "$D/sd.rmig" --ram "ram=$BACK" --direct --quiet); check "restore --direct"
	all[restored]+="$v "; row+=("restore-direct $v")
	evict "$D/s.rmig"
	v=$(t "$RM" restore --from "$D/s.rmig" --ram "ram=$BACK" --quiet); check restore
	all[restore]+="$v "; row+=("restore $v")
	echo "run $r: ${row[*]}"
done
med() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:] if x != "FAILED"]; print(f"{statistics.median(v):.3f}" if v else "n/a")' $1; }
echo "medians (s):"
for w in dd save saved qemu ddr restored restore; do
	printf '  %-16s %s\n' "$(case $w in dd) echo 'dd write' ;; save) echo save ;; saved) echo 'save --direct' ;;
		qemu) echo 'qemu exec:cat' ;; ddr) echo 'dd read' ;; restored) echo 'restore --direct' ;;
		restore) echo restore ;; esac)" "$(med "${all[$w]}")"
done
echo "files (apparent, allocated):"
for f in out.raw s.rmig sd.rmig q.mig; do
	[ -f "$D/$f" ] && printf '  %-8s %14s %8s\n' "$f" "$(stat -c %s "$D/$f")" "$(du -h "$D/$f" | cut -f1)"
done
[ "$failed" = 0 ]
