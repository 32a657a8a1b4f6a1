#!/usr/bin/env bash
# mkinitramfs.sh OUT.cpio.gz - the migration test guest's initramfs: static
# busybox, the static workload (workload.c, built here with cc -static -O2)
# and an /init that mounts proc, sys and dev, prints a banner and execs the
# workload on the console. The workload's arguments come from the kernel
# command line: every wl.KEY=VALUE there becomes KEY=VALUE (wl.mib=32
# wl.rate=2000 -> workload mib=32 rate=2000).
#
# The result is cached: OUT is rebuilt only when workload.c, this script or
# busybox is newer than it (or RMIG_VMIG_REBUILD=1). Builds of the same OUT
# run one at a time (flock) and OUT is replaced atomically.
#
# Environment: CC (default cc), BUSYBOX (default: the first static busybox
# among /bin/busybox, /usr/bin/busybox).
# Exit: 0 built or up to date; 1 a build step failed; 2 usage.
set -euo pipefail

[ $# = 1 ] || { echo "usage: mkinitramfs.sh OUT.cpio.gz" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/workload.c
cc=${CC:-cc}

busybox=${BUSYBOX:-}
if [ -z "$busybox" ]; then
	for b in /bin/busybox /usr/bin/busybox; do
		[ -x "$b" ] || continue
		# a dynamic busybox would need its libraries in the initramfs
		if ! LC_ALL=C file -L "$b" 2>/dev/null | grep -q dynamically; then
			busybox=$b
			break
		fi
	done
fi
if [ -z "$busybox" ] || [ ! -x "$busybox" ]; then
	echo "mkinitramfs.sh: no static busybox (apt-get install busybox-static)" >&2
	exit 1
fi

outdir=$(dirname "$out")
mkdir -p "$outdir"
out=$(cd "$outdir" && pwd)/$(basename "$out")

uptodate() {
	[ -s "$out" ] && [ "${RMIG_VMIG_REBUILD:-0}" != 1 ] &&
		[ ! "$src" -nt "$out" ] && [ ! "${BASH_SOURCE[0]}" -nt "$out" ] &&
		[ ! "$(readlink -f "$busybox")" -nt "$out" ]
}
uptodate && exit 0

exec 9>"$out.lock"
flock 9
uptodate && exit 0 # built by whoever held the lock

work=$(mktemp -d "${TMPDIR:-/tmp}/vmig-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp}

"$cc" -static -O2 -Wall -Wextra -o "$root/bin/workload" "$src" || {
	echo "mkinitramfs.sh: building the workload failed (static glibc: apt-get install libc6-dev)" >&2
	exit 1
}
strip "$root/bin/workload" 2>/dev/null || true
cp "$busybox" "$root/bin/busybox"
for a in sh mount umount mkdir cat echo sleep ls ps free poweroff reboot sync uname grep sed tr stty dmesg; do
	ln -s busybox "$root/bin/$a"
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
args=""
for tok in $(cat /proc/cmdline); do
	case $tok in
	wl.*=*) args="$args ${tok#wl.}" ;;
	esac
done
avail=$(sed -n 's/^MemAvailable: *\([0-9]*\).*/\1/p' /proc/meminfo)
echo "VMIG GUEST kernel=$(uname -r) memavail_kib=$avail workload:$args"
exec /bin/workload $args </dev/console >/dev/console 2>&1
echo "VMIG GUEST exec /bin/workload failed"
poweroff -f
EOF
chmod 755 "$root/init"

tmp=$out.tmp.$$
trap 'rm -rf "$work" "$tmp"' EXIT
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 >"$tmp")
mv -f "$tmp" "$out"
echo "mkinitramfs.sh: built $out ($(stat -c %s "$out") bytes)" >&2
