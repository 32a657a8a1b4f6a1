#!/usr/bin/env bash
# cli-file.sh - rdma-migrate save and restore as an operator runs them.
# Usage: cli-file.sh BUILD_DIR
# Every case compares images and device-state files byte for byte, or checks
# exit status and message (and that a refused restore wrote nothing). Ends
# with "N passed, N failed".
set -u
BUILD=$(cd "${1:?build dir}" && pwd)
RM="$BUILD/tools/rdma-migrate"
W=$(mktemp -d "${TMPDIR:-/tmp}/rmig-cli-file.XXXXXX")
trap 'umount "$W/small" 2>/dev/null; umount "$W/huge" 2>/dev/null; rm -rf "$W"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# make_image PATH MiB KIND: random | sparse (random and zero runs) | zero
make_image() {
	local path=$1 mib=$2 kind=$3 i
	: >"$path"
	case $kind in
	random) head -c "${mib}M" /dev/urandom >"$path" ;;
	zero) truncate -s "${mib}M" "$path" ;;
	sparse)
		for ((i = 0; i < mib; i += 4)); do
			if (((i / 4) % 3)); then
				head -c 4M /dev/zero >>"$path"
			else
				head -c 4M /dev/urandom >>"$path"
			fi
		done
		truncate -s "${mib}M" "$path"
		;;
	esac
}

# patch FILE OFFSET HEXBYTES: overwrite bytes in place
patch() {
	printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ---- round trips ----
roundtrip() { # NAME MiB KIND CHANNELS [save/restore args]
	local name=$1 mib=$2 kind=$3 ch=$4
	shift 4
	make_image "$W/$name.a" "$mib" "$kind"
	make_image "$W/$name.b" 3 random
	head -c 100000 /dev/urandom >"$W/$name.dev"
	: >"$W/$name.empty"
	mkdir -p "$W/$name.sd"
	# restore empties what it finds: the destination images start with old data
	head -c 1M /dev/urandom >"$W/$name.a2"
	if "$RM" save --ram "a=$W/$name.a" --ram "b=$W/$name.b" --state "dev=$W/$name.dev" \
		--state "empty=$W/$name.empty" --to "$W/$name.rmig" --channels "$ch" --quiet "$@" \
		2>"$W/$name.err" &&
		"$RM" restore --from "$W/$name.rmig" --ram "a=$W/$name.a2" --ram "b=$W/$name.b2" \
			--state-dir "$W/$name.sd" --channels "$ch" --json "$@" >"$W/$name.json" \
			2>>"$W/$name.err" &&
		cmp -s "$W/$name.a" "$W/$name.a2" && cmp -s "$W/$name.b" "$W/$name.b2" &&
		cmp -s "$W/$name.dev" "$W/$name.sd/dev" && cmp -s "$W/$name.empty" "$W/$name.sd/empty"; then
		ok "$name: $mib MiB $kind + 3 MiB + 2 blobs, $ch channels $*: byte-identical"
	else
		bad "$name: $(cat "$W/$name.err")"
	fi
	rm -rf "$W/$name".*
}
roundtrip rand1 32 random 1
roundtrip rand4 64 random 4 --verify
roundtrip sparse8 64 sparse 8 --verify
roundtrip zero4 16 zero 4
roundtrip direct1 32 random 1 --direct
roundtrip direct8 64 sparse 8 --direct --verify
roundtrip small-extent 16 sparse 3 --extent 64K

# zero pages are holes: the file takes little more room than the data
make_image "$W/h.a" 96 sparse
"$RM" save --ram "a=$W/h.a" --to "$W/h.rmig" --quiet
alloc=$(du -k "$W/h.rmig" | cut -f1)
size=$(stat -c %s "$W/h.rmig")
if [ "$alloc" -lt $((40 * 1024)) ] && [ "$size" -ge $((96 << 20)) ] && [ "$size" -lt $((100 << 20)) ]; then
	ok "holes: 96 MiB, a third of it data: file $size bytes, $alloc KiB allocated"
else
	bad "holes: file $size bytes, $alloc KiB allocated"
fi

# send --to file:PATH is a save too
"$RM" send --to "file:$W/h2.rmig" --ram "a=$W/h.a" --quiet 2>"$W/h2.err" &&
	"$RM" restore --from "$W/h2.rmig" --ram "a=$W/h2.a" --quiet 2>>"$W/h2.err" &&
	cmp -s "$W/h.a" "$W/h2.a" && ok "send --to file:PATH, then restore" ||
	bad "send --to file: $(cat "$W/h2.err")"
rm -f "$W"/h2.*

# hugetlbfs images, when this machine has huge pages to give
huge_case() {
	local mnt=$W/huge
	[ "$(cat /proc/sys/vm/nr_hugepages)" -ge 16 ] 2>/dev/null || echo 16 >/proc/sys/vm/nr_hugepages 2>/dev/null
	if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 12 ] 2>/dev/null ||
		! mkdir -p "$mnt" || ! mount -t hugetlbfs none "$mnt" 2>/dev/null; then
		echo "skip hugetlbfs: no huge pages here (HugePages_Free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo))"
		return
	fi
	make_image "$W/hg.src" 8 sparse
	# hugetlbfs has no write(): fill the source image through a shared mapping
	python3 - "$W/hg.src" "$mnt/hg.src" <<'PY'
import mmap, os, sys
data = open(sys.argv[1], 'rb').read()
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, len(data))
m = mmap.mmap(fd, len(data))
m[:] = data
m.close()
PY
	for d in "" --direct; do
		if "$RM" save --ram "ram=$mnt/hg.src" --to "$W/hg.rmig" --verify --quiet $d 2>"$W/hg.err" &&
			"$RM" restore --from "$W/hg.rmig" --ram "ram=$mnt/hg.dst" --verify --quiet $d \
				2>>"$W/hg.err" && cmp -s "$W/hg.src" "$mnt/hg.dst"; then
			ok "hugetlbfs images (2 MiB pages) $d"
		elif [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 4 ]; then
			echo "skip hugetlbfs $d: the pool ran dry meanwhile (another user?)"
		else
			bad "hugetlbfs $d: $(cat "$W/hg.err")"
		fi
		rm -f "$mnt/hg.dst"
	done
	rm -f "$mnt"/* "$W"/hg.*
	umount "$mnt"
}
huge_case

# ---- refused: exit 2 before anything is touched ----
usage_case() { # EXPECT ARGS...
	local expect=$1
	shift
	"$RM" "$@" >/dev/null 2>"$W/usage.err"
	local rc=$?
	if [ $rc = 2 ] && grep -q -- "$expect" "$W/usage.err"; then
		ok "usage: ${*##*/} -> exit 2 ($expect)"
	else
		bad "usage: $* -> exit $rc: $(cat "$W/usage.err")"
	fi
}
make_image "$W/u.img" 1 random
cp "$W/u.img" "$W/u.copy"
usage_case "overwrite what it reads" save --ram "a=$W/u.img" --to "$W/u.img"
usage_case "overwrite what it reads" save --ram "a=$W/h.a" --state "d=$W/u.img" --to "$W/u.img"
"$RM" save --ram "a=$W/u.img" --to "$W/u.rmig" --quiet
usage_case "empty it before reading it" restore --from "$W/u.rmig" --ram "a=$W/u.rmig"
usage_case "--from and at least one --ram" restore --ram "a=$W/x.img"
usage_case "--to FILE and at least one --ram" save --ram "a=$W/u.img"
usage_case "unknown option '--listen'" restore --from "$W/u.rmig" --ram "a=$W/x.img" --listen h:1
usage_case "empty file name" save --ram "a=$W/u.img" --to file:
cmp -s "$W/u.img" "$W/u.copy" && [ ! -e "$W/x.img" ] && ok "usage errors touched nothing" ||
	bad "usage errors changed an image"

# ---- broken and hostile files: exit 1, the reason, and nothing written ----
# a file of one 259-page block (its bitmaps have bits past the block) and a blob
head -c $((259 * 4096)) /dev/urandom >"$W/g.img"
head -c 5000 /dev/urandom >"$W/g.dev"
"$RM" save --ram "ram=$W/g.img" --state "dev=$W/g.dev" --to "$W/good.rmig" --verify --quiet
GSIZE=$(stat -c %s "$W/good.rmig")
broken_case() { # WHAT EXPECT EDIT-COMMAND... (run on $W/bad.rmig)
	local what=$1 expect=$2
	shift 2
	cp "$W/good.rmig" "$W/bad.rmig"
	"$@"
	rm -rf "$W/bsd" && mkdir "$W/bsd"
	head -c 64K /dev/urandom >"$W/keep.img"
	cp "$W/keep.img" "$W/keep.copy"
	"$RM" restore --from "$W/bad.rmig" --ram "ram=$W/keep.img" --state-dir "$W/bsd" --verify \
		>/dev/null 2>"$W/bad.err"
	local rc=$?
	# the image the file would go to is untouched, no device state was written
	if [ $rc = 1 ] && grep -q -- "$expect" "$W/bad.err" && cmp -s "$W/keep.img" "$W/keep.copy" &&
		[ -z "$(ls -A "$W/bsd")" ]; then
		ok "broken file: $what -> exit 1 ($expect), nothing written"
	else
		bad "broken file: $what -> exit $rc: $(cat "$W/bad.err"; ls "$W/bsd")"
	fi
}
broken_case "cut in half" "truncated" truncate -s $((GSIZE / 2)) "$W/bad.rmig"
broken_case "one byte short" "truncated" truncate -s $((GSIZE - 1)) "$W/bad.rmig"
broken_case "cut inside the header" "shorter than" truncate -s 100 "$W/bad.rmig"
broken_case "empty" "truncated" truncate -s 0 "$W/bad.rmig"
broken_case "wrong magic" "not an rmig save file" patch "$W/bad.rmig" 0 51454d5546494c45
broken_case "another version" "format version 2" patch "$W/bad.rmig" 8 02000000
broken_case "block table edited" "header checksum mismatch" patch "$W/bad.rmig" 144 00000001
broken_case "trailer damaged" "trailer checksum mismatch" patch "$W/bad.rmig" $((GSIZE - 40)) ff
# bit 3 of byte 32 of the present bitmap (at 4096): page 259 of 259
broken_case "bitmap claims a page past the block" "past the block's 259 pages" \
	patch "$W/bad.rmig" $((4096 + 32)) 08
broken_case "a file that is no save" "not an rmig save file" cp "$W/g.dev" "$W/bad.rmig"
broken_case "appended garbage" "past the end of the save" \
	sh -c "head -c 4096 /dev/urandom >>'$W/bad.rmig'"
# the control: the undamaged file restores
rm -f "$W/keep.img"
"$RM" restore --from "$W/good.rmig" --ram "ram=$W/keep.img" --state-dir "$W/bsd" --verify \
	--quiet 2>"$W/good.err" && cmp -s "$W/g.img" "$W/keep.img" && cmp -s "$W/g.dev" "$W/bsd/dev" &&
	ok "the undamaged file restores (the control)" || bad "good file: $(cat "$W/good.err")"
# a file in which a page changed after the save: --verify catches it, and without it passes
cp "$W/good.rmig" "$W/bad.rmig"
patch "$W/bad.rmig" $((2 << 20)) 0000000000000000
# the blob of a restore that failed never lands: what its path held stays
echo ORIGINAL >"$W/bsd/dev"
if ! "$RM" restore --from "$W/bad.rmig" --ram "ram=$W/keep.img" --state-dir "$W/bsd" --verify \
	--quiet 2>"$W/bad.err" && grep -q "digest mismatch in ram block 'ram'" "$W/bad.err" &&
	[ "$(cat "$W/bsd/dev")" = ORIGINAL ] && [ ! -e "$W/bsd/dev.part" ] &&
	"$RM" restore --from "$W/bad.rmig" --ram "ram=$W/keep.img" --state-dir "$W/bsd" --quiet \
		2>>"$W/bad.err" &&
	! cmp -s "$W/g.img" "$W/keep.img" && cmp -s "$W/g.dev" "$W/bsd/dev"; then
	ok "a damaged page: --verify refuses the file, its blob not written; without it the damage passes (the control)"
else
	bad "damaged page: $(cat "$W/bad.err")"
fi
# saved without digests: --verify cannot be honoured
"$RM" save --ram "ram=$W/g.img" --to "$W/nodg.rmig" --quiet
"$RM" restore --from "$W/nodg.rmig" --ram "ram=$W/keep.img" --verify --quiet 2>"$W/bad.err"
[ $? = 1 ] && grep -q "holds no digests" "$W/bad.err" && ok "--verify on a file saved without digests: exit 1" ||
	bad "no digests: $(cat "$W/bad.err")"

# a save killed mid-way leaves a file without the complete mark
make_image "$W/k.img" 64 random
{ RMIG_FAULT=mid-round:kill "$RM" save --ram "ram=$W/k.img" --to "$W/k.rmig" --quiet; } 2>/dev/null
rc=$?
"$RM" restore --from "$W/k.rmig" --ram "ram=$W/k2.img" --quiet 2>"$W/k.err"
if [ $rc = 137 ] && [ -e "$W/k.rmig" ] && grep -q "did not complete" "$W/k.err" && [ ! -e "$W/k2.img" ]; then
	ok "a save killed mid-way: restore refuses it (no complete mark)"
else
	bad "killed save (save exit $rc): $(cat "$W/k.err")"
fi
rm -f "$W"/k*

# a device-state blob named after the save file, restored into the directory
# that holds it: refused, the save file intact (before: replaced by the blob)
make_image "$W/o.img" 4 random
printf 'state bytes' >"$W/o.state"
mkdir -p "$W/od"
"$RM" save --ram "ram=$W/o.img" --state "o.rmig=$W/o.state" --to "$W/od/o.rmig" --quiet
cp "$W/od/o.rmig" "$W/o.copy"
"$RM" restore --from "$W/od/o.rmig" --ram "ram=$W/od/o.img" --state-dir "$W/od" --quiet \
	2>"$W/o.err"
rc=$?
if [ $rc = 1 ] && cmp -s "$W/od/o.rmig" "$W/o.copy" &&
	grep -q "would be written to $W/od/o.rmig, over --from" "$W/o.err"; then
	ok "a blob named after the save file: refused, the file intact"
else
	bad "blob over --from: rc $rc: $(cat "$W/o.err")"
fi
rm -rf "$W"/o.* "$W/od"

# ---- device state that restore could not store: refused before any image is written ----
make_image "$W/ns.img" 2 random
printf 'device bytes' >"$W/ns.dev"
"$RM" save --to "$W/ns.rmig" --ram "ram=$W/ns.img" --state "dev=$W/ns.dev" --quiet 2>/dev/null
make_image "$W/ns.mine" 2 random
cp "$W/ns.mine" "$W/ns.keep"
"$RM" restore --from "$W/ns.rmig" --ram "ram=$W/ns.mine" --quiet 2>"$W/ns.err"
rc=$?
if [ $rc = 1 ] && cmp -s "$W/ns.mine" "$W/ns.keep" &&
	grep -q "the file holds device state 'dev' (1 blob) but no --state-dir was given" "$W/ns.err"; then
	ok "restore of a file with device state, without --state-dir: exit 1 before any image is written"
else
	bad "no --state-dir: exit $rc, image kept: $(cmp "$W/ns.mine" "$W/ns.keep" 2>&1): $(cat "$W/ns.err")"
fi

# ---- a save file in use: the locks that image commands take (flock), held here ----
# (before: two saves to one file both exited 0 and it restored as a mix of
# both; a save --to an image another command read emptied it)
# hold_lock ex|sh FILE: holds FILE's flock in a process of its own ($!) until
# killed, and changes its ctime every millisecond, as a save writing it does
hold_lock() {
	python3 -c 'import fcntl, os, sys, time
f = open(sys.argv[2], "rb")
fcntl.flock(f, fcntl.LOCK_EX if sys.argv[1] == "ex" else fcntl.LOCK_SH)
for _ in range(30000):
    os.utime(sys.argv[2], None)
    time.sleep(0.001)' "$1" "$2" &
}
make_image "$W/lk.img" 4 random
make_image "$W/lk.other" 2 random
"$RM" save --to "$W/lk.rmig" --ram "ram=$W/lk.img" --quiet 2>/dev/null
cp "$W/lk.rmig" "$W/lk.keep"
# another save writing it (held alone): neither a save nor a restore touches it
hold_lock ex "$W/lk.rmig"
lp=$!
sleep 0.3
"$RM" save --to "$W/lk.rmig" --ram "ram=$W/lk.other" --quiet 2>"$W/lk1.err"
rc1=$?
"$RM" restore --from "$W/lk.rmig" --ram "ram=$W/lk.out" --quiet 2>"$W/lk2.err"
rc2=$?
kill "$lp" 2>/dev/null
wait "$lp" 2>/dev/null
# an image a send or save reads (held shared): a save --to it is refused
cp "$W/lk.img" "$W/lk.ro"
hold_lock sh "$W/lk.ro"
lp=$!
sleep 0.3
"$RM" save --to "$W/lk.ro" --ram "ram=$W/lk.other" --quiet 2>"$W/lk3.err"
rc3=$?
kill "$lp" 2>/dev/null
wait "$lp" 2>/dev/null
if [ $rc1 = 1 ] && [ $rc2 = 1 ] && [ $rc3 = 1 ] && cmp -s "$W/lk.rmig" "$W/lk.keep" &&
	cmp -s "$W/lk.ro" "$W/lk.img" && [ ! -e "$W/lk.out" ] &&
	grep -q "in use by another rdma-migrate" "$W/lk1.err" && ! grep -q "removed" "$W/lk1.err" &&
	grep -q "being written by another rdma-migrate" "$W/lk2.err" &&
	grep -q "in use by another rdma-migrate" "$W/lk3.err"; then
	ok "a save file or image in use: save and restore refuse it, nothing changed ($(grep -m1 -o 'in use by another rdma-migrate' "$W/lk1.err"))"
else
	bad "in use: save $rc1 restore $rc2 save-over-image $rc3: $(cat "$W"/lk[123].err)"
fi
# ... and once the lock is gone, both work
"$RM" save --to "$W/lk.rmig" --ram "ram=$W/lk.other" --quiet 2>"$W/lk4.err" &&
	"$RM" restore --from "$W/lk.rmig" --ram "ram=$W/lk.out" --quiet 2>>"$W/lk4.err" &&
	cmp -s "$W/lk.other" "$W/lk.out"
rc=$?
if [ $rc = 0 ]; then
	ok "the same save file, free again: saved and restored byte for byte"
else
	bad "save file free again: $(cat "$W/lk4.err")"
fi

# ---- SIGTERM mid-save: cancelled, the incomplete file removed, ended by the signal ----
make_image "$W/sg.img" 256 random
"$RM" save --to "$W/sg.rmig" --ram "ram=$W/sg.img" --channels 1 --extent 4K 2>"$W/sg.err" &
sp=$!
sleep 0.2
kill -TERM "$sp"
wait "$sp"
rc=$?
if [ $rc = 143 ] && grep -q "interrupted by SIGTERM" "$W/sg.err" && grep -q "removed the incomplete" "$W/sg.err" &&
	[ ! -e "$W/sg.rmig" ]; then
	ok "save killed by SIGTERM: cancelled, the incomplete file removed, exit 143"
elif grep -q "saved .* to the file" "$W/sg.err"; then
	echo "# skip SIGTERM mid-save: the save was complete before the signal came"
else
	bad "SIGTERM mid-save: exit $rc: $(cat "$W/sg.err"; ls -l "$W/sg.rmig" 2>&1)"
fi
rm -f "$W/sg.img"

# ---- a file system that fills up mid-save ----
enospc_case() {
	if ! mkdir -p "$W/small" || ! mount -t tmpfs -o size=8m rmig-cli-file "$W/small" 2>/dev/null; then
		echo "skip ENOSPC: cannot mount a small tmpfs here (needs root)"
		return
	fi
	make_image "$W/big.img" 32 random
	for d in "" --direct; do
		"$RM" save --ram "ram=$W/big.img" --to "$W/small/full.rmig" --quiet $d 2>"$W/full.err"
		local rc=$?
		if [ $rc = 1 ] && grep -q "the file system is full" "$W/full.err" &&
			grep -q "removed the incomplete" "$W/full.err" && [ ! -e "$W/small/full.rmig" ]; then
			ok "ENOSPC mid-save $d: exit 1, a clear error, the incomplete file removed"
		else
			bad "ENOSPC $d: exit $rc: $(cat "$W/full.err"; ls -l "$W/small")"
		fi
	done
	# bench --live --to file: the same (before: the incomplete file stayed, filling the disk)
	"$RM" bench --live --ram-size 16M --to "file:$W/small/live.rmig" --quiet 2>"$W/full.err"
	local rc=$?
	if [ $rc = 1 ] && grep -q "the file system is full" "$W/full.err" &&
		grep -q "removed the incomplete" "$W/full.err" && [ ! -e "$W/small/live.rmig" ]; then
		ok "ENOSPC mid bench --live --to file: exit 1, the incomplete file removed"
	else
		bad "ENOSPC bench --live: exit $rc: $(cat "$W/full.err"; ls -l "$W/small")"
	fi
	umount "$W/small"
}
enospc_case

# ---- bench --live --to file: a running guest saved live ----
"$RM" bench --live --to "file:$W/live.rmig" --ram-size 64M --dirty-rate 512M --downtime 1 \
	--max-rounds 4 --switch-anyway --device-state 64K,1M --json 2>"$W/live.err" >"$W/live.json"
if python3 - "$W/live.json" <<'PY'; then
import json, sys
d = json.load(open(sys.argv[1]))
f = d["file"]
assert d["ok"] and d["verified"] and d["transport"] == "file", d
assert len(d["rounds"]) >= 2 and f["same_every_round"], d
assert f["bytes_each_round"] < (64 << 20) + (4 << 20), f
print("# bench --live to a file: %d rounds, %d bytes each round, %d at completion" %
      (len(d["rounds"]), f["bytes_each_round"], f["bytes_at_completion"]))
PY
	ok "bench --live --to file: verified, the file the same size every round"
else
	bad "bench --live --to file: $(cat "$W/live.err" "$W/live.json")"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
