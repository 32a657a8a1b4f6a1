#!/usr/bin/env bash
# ab-builds.sh OLD_BUILD NEW_BUILD [TRANSPORT [ADDR [SIZE_MIB [PAIRS]]]] - the
# whole `send` command (recv waiting) of one random image, 4 channels, with
# two builds of rdma-migrate alternated (the first of each pair alternating
# too), every image compared byte for byte; prints each pair, the medians
# and their ratio. For rdma, run it in the soft-RoCE VM:
#   tests/vm/vm-run --mem 3G --share "$PWD" --share OLD -- \
#       "$PWD/tests/bench/ab-builds.sh" OLD "$PWD/build" rdma 10.0.0.1
set -uo pipefail
old=$(cd "$1" && pwd) new=$(cd "$2" && pwd)
TRANSPORT=${3:-tcp} ADDR=${4:-127.0.0.1} MIB=${5:-64} PAIRS=${6:-7}
W=$(mktemp -d "${TMPDIR:-/tmp}/rmig-ab.XXXXXX")
trap 'rm -rf "$W"' EXIT
head -c "${MIB}M" /dev/urandom >"$W/img"

run() { # BUILD: seconds of the whole send
	local rm=$1/tools/rdma-migrate t0 t1 rp
	rm -f "$W/out" "$W/port"
	"$rm" recv --listen "$ADDR:0" --port-file "$W/port" --ram "img=$W/out" --quiet 2>"$W/r.err" &
	rp=$!
	for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.05; done
	t0=$EPOCHREALTIME
	"$rm" send --to "$ADDR:$(cat "$W/port")" --transport "$TRANSPORT" --channels 4 \
		--ram "img=$W/img" --quiet 2>"$W/s.err" || { cat "$W/s.err" >&2; echo fail; }
	t1=$EPOCHREALTIME
	wait "$rp" || cat "$W/r.err" >&2
	cmp -s "$W/img" "$W/out" || { echo "ab: the image differs" >&2; echo fail; }
	python3 -c "print(round($t1 - $t0, 4))"
}

o=() n=()
for i in $(seq "$PAIRS"); do
	if [ $((i % 2)) = 1 ]; then a=$(run "$old"); b=$(run "$new"); else b=$(run "$new"); a=$(run "$old"); fi
	case "$a$b" in *fail*) echo "ab: pair $i failed"; exit 1 ;; esac
	o+=("$a") n+=("$b")
	echo "pair $i: old $a s, new $b s"
done
python3 - "${o[*]}" "${n[*]}" <<'PY'
import statistics as st, sys
o = [float(x) for x in sys.argv[1].split()]
n = [float(x) for x in sys.argv[2].split()]
print("old: median %.3f s (min %.3f, max %.3f)" % (st.median(o), min(o), max(o)))
print("new: median %.3f s (min %.3f, max %.3f)" % (st.median(n), min(n), max(n)))
print("new/old: %.3f (medians), %.3f (median of the pairs' ratios)"
      % (st.median(n) / st.median(o), st.median([b / a for a, b in zip(o, n)])))
PY
