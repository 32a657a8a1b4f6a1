# guest.sh - a bash library (source it) that boots the live-migration test
# guest: this host's kernel, an initramfs with busybox and the workload
# (workload.c: pages with checksums, rewritten at a set rate; commands on the
# serial console), under QEMU with TCG, 1 vCPU, its RAM in a shared file.
#
#   . tests/vmig/guest.sh
#   trap guest_stop_all EXIT
#   guest_start src "$GUEST_SHM/src.ram" 128
#   guest_wait_progress src 60
#   guest_start_incoming dst "$GUEST_SHM/dst.ram" 128
#   guest_qmp dst '{"execute":"migrate-incoming","arguments":{"uri":"tcp:127.0.0.1:4444"}}'
#   guest_qmp src '{"execute":"migrate","arguments":{"uri":"tcp:127.0.0.1:4444"}}'
#   guest_migrate_wait dst 60
#   guest_verify dst 60
#
# Functions (all return non-zero on failure, with the reason on stderr):
#   guest_start NAME MEMFILE MIB [QEMU ARGS...]
#       Starts QEMU in the background; returns once its QMP socket is up.
#       Must run in the calling shell (not in $(...) or a pipeline): it sets
#         ${NAME}_pid      QEMU's pid          ${NAME}_qmp     QMP socket
#         ${NAME}_serial   serial socket       ${NAME}_log     serial console log
#         ${NAME}_qemulog  QEMU's stdout/err   ${NAME}_memfile MEMFILE
#         ${NAME}_mib      MIB                 ${NAME}_t0      $EPOCHREALTIME at start
#       NAME must be a shell identifier. MEMFILE is the guest RAM
#       (memory-backend-file, share=on, id ram0): QEMU creates it if missing
#       and keeps the contents of an existing file.
#   guest_start_incoming NAME MEMFILE MIB [QEMU ARGS...]
#       The same machine with -incoming defer: a migration destination.
#   guest_serial_cmd NAME CMD TIMEOUT_S [PATTERN]
#       Sends CMD to the workload and prints its reply line (the first line
#       matching PATTERN, an extended regex; by default the reply CMD gets:
#       VERIFY OK|FAIL, COUNTER, PAUSED, RESUMED, RATE, PONG or ERR).
#   guest_wait_progress NAME TIMEOUT_S
#       Waits for a PROGRESS line printed after the call began; prints it.
#   guest_counter NAME [TIMEOUT_S]     prints the workload's counter (a number)
#   guest_verify NAME [TIMEOUT_S]      prints the VERIFY line; 0 only on VERIFY OK
#   guest_qmp NAME JSON|COMMAND        one QMP command; prints the reply line;
#                                      0 on "return", 1 on "error"
#   guest_runstate NAME                prints query-status's status
#   guest_migrate_wait NAME TIMEOUT_S [STATE,...]
#       Polls query-migrate on NAME until STATE (default completed), failed or
#       cancelled; prints the status; 0 only when it is one of STATEs.
#   guest_corrupt_memfile MEMFILE N
#       Overwrites 64 bytes inside N of the workload's pages found in a guest
#       RAM file; prints "CORRUPTED <n> first=<index> ...".
#   guest_stale_memfile OLDFILE MEMFILE N
#       Copies back into MEMFILE the older version, from OLDFILE (an earlier
#       RAM file of the same guest), of N workload pages: stale pages, as a
#       migration that lost dirty pages leaves; prints "STALE <n> first=...".
#   guest_stop NAME                    kills that guest's QEMU
#   guest_stop_all                     kills every QEMU started here; removes
#                                      GUEST_DIR and GUEST_SHM (unless GUEST_KEEP=1)
#   guest_print_logs [LINES]           each guest's console log and QEMU log tail
#   guest_free_port                    prints a free TCP port on 127.0.0.1
#
# Globals: GUEST_DIR (sockets, logs: a fresh temp dir), GUEST_SHM (a fresh
# dir in /dev/shm for RAM files); both are made when this file is sourced
# (and again by the next guest_start after guest_stop_all removed them),
# GUEST_NAMES (the guests started), GUEST_KERNEL, GUEST_INITRD.
# Settings (environment, read at each start):
#   GUEST_QEMU          qemu-system-x86_64
#   GUEST_WL_MIB        the workload's MiB (default 32)
#   GUEST_WL_RATE       pages rewritten a second (default 2000)
#   GUEST_WL_PROGRESS_MS  PROGRESS interval (default 1000)
#   GUEST_WL_SEED       content seed (default 1)
#   GUEST_APPEND        more kernel command line
#   GUEST_KERNEL_IMAGE  a kernel to boot instead of the host's own
# The source and the destination of a migration must get the same settings
# (and the same MIB): the command lines then match, as QEMU requires.
#
# The host's Debian kernel needs at least 96 MiB of guest RAM (its image
# alone reaches 74 MiB: 64 MiB does not boot; guest_start refuses less); the
# workload gets about MIB - 80 MiB (96: 16, 128: 48; more and the guest dies
# out of memory, QEMU exits and guest_wait_progress says so at once). It is booted through its PVH entry from an
# uncompressed vmlinux cached in ${RMIG_VM_CACHE:-~/.cache/rmig-vm} (as
# tests/vm/vm-run does): no BIOS, no decompression; about 2-3 s to the first
# PROGRESS line. When the vmlinux cannot be extracted, the bzImage is booted
# instead (slower, and needs more RAM to decompress).

GUEST_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_CTL=$GUEST_LIB_DIR/vmigctl.py
GUEST_NAMES=()
GUEST_DIR=${GUEST_DIR:-}
GUEST_SHM=${GUEST_SHM:-}
GUEST_KERNEL=${GUEST_KERNEL:-}
GUEST_INITRD=${GUEST_INITRD:-}

_guest_err() { echo "guest.sh: $*" >&2; }

_guest_kernel() {
	local kver="" v img cache vmlinux off
	if [ -n "${GUEST_KERNEL_IMAGE:-}" ]; then
		GUEST_KERNEL=$GUEST_KERNEL_IMAGE
		return 0
	fi
	for v in $(for img in /boot/vmlinuz-*; do echo "${img#/boot/vmlinuz-}"; done | sort -V); do
		[ -r "/boot/vmlinuz-$v" ] && kver=$v
	done
	[ -r "/boot/vmlinuz-$(uname -r)" ] && kver=$(uname -r)
	[ -n "$kver" ] || { _guest_err "no readable /boot/vmlinuz-* (install linux-image-amd64; run as root)"; return 1; }
	img=/boot/vmlinuz-$kver
	cache=${RMIG_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmig-vm}
	vmlinux=$cache/vmlinux-$kver
	if [ ! -s "$vmlinux" ] && mkdir -p "$cache"; then
		off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$img" 2>/dev/null | head -1 | cut -d: -f1 || true)
		if [ -n "$off" ]; then
			tail -c +$((off + 1)) "$img" | xz -dc 2>/dev/null >"$vmlinux.tmp.$$" || true
			# an ELF: the PVH entry is usable
			if [ "$(head -c 4 "$vmlinux.tmp.$$" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; then
				mv -f "$vmlinux.tmp.$$" "$vmlinux"
			fi
		fi
		rm -f "$vmlinux.tmp.$$"
	fi
	if [ -s "$vmlinux" ]; then
		GUEST_KERNEL=$vmlinux
	else
		_guest_err "warning: no vmlinux could be extracted from $img; booting the bzImage (slower, needs more RAM)"
		GUEST_KERNEL=$img
	fi
}

_guest_dirs() {
	if [ -z "$GUEST_DIR" ] || [ ! -d "$GUEST_DIR" ]; then
		# short: unix socket paths are limited to 107 bytes
		GUEST_DIR=$(mktemp -d /tmp/vmig.XXXXXX) || return 1
	fi
	if [ -z "$GUEST_SHM" ] || [ ! -d "$GUEST_SHM" ]; then
		GUEST_SHM=$(mktemp -d /dev/shm/vmig.XXXXXX 2>/dev/null || mktemp -d "$GUEST_DIR/shm.XXXXXX") || return 1
	fi
}

_guest_init() {
	command -v "${GUEST_QEMU:-qemu-system-x86_64}" >/dev/null || { _guest_err "no ${GUEST_QEMU:-qemu-system-x86_64}"; return 1; }
	command -v python3 >/dev/null || { _guest_err "no python3"; return 1; }
	_guest_dirs || return 1
	if [ -z "$GUEST_KERNEL" ]; then
		_guest_kernel || return 1
	fi
	local cache=${RMIG_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmig-vm}
	GUEST_INITRD=$cache/vmig-initramfs.cpio.gz
	"$GUEST_LIB_DIR/mkinitramfs.sh" "$GUEST_INITRD" || { _guest_err "building the initramfs failed"; return 1; }
}

_guest_check_name() {
	[[ ${1:-} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { _guest_err "bad guest name '${1:-}' (a shell identifier)"; return 1; }
}

# the append line: the same for a source and its destination
_guest_append() {
	printf '%s' "console=ttyS0 panic=-1 loglevel=3 rdinit=/init nokaslr tsc=reliable mitigations=off"
	printf ' wl.mib=%s wl.rate=%s wl.progress_ms=%s wl.seed=%s' "${GUEST_WL_MIB:-32}" \
		"${GUEST_WL_RATE:-2000}" "${GUEST_WL_PROGRESS_MS:-1000}" "${GUEST_WL_SEED:-1}"
	[ -n "${GUEST_APPEND:-}" ] && printf ' %s' "$GUEST_APPEND"
	return 0
}

_guest_launch() {
	local name=$1 memfile=$2 mib=$3 incoming=$4
	shift 4
	_guest_check_name "$name" || return 1
	[[ $mib =~ ^[1-9][0-9]*$ ]] || { _guest_err "guest_start $name: MIB '$mib' is not a number"; return 1; }
	[ -n "$memfile" ] || { _guest_err "guest_start $name: no MEMFILE"; return 1; }
	local p
	for p in "${GUEST_NAMES[@]}"; do
		[ "$p" = "$name" ] && { _guest_err "guest_start: a guest named $name was started already"; return 1; }
	done
	if [ -z "${GUEST_KERNEL_IMAGE:-}" ] && ((mib < 96)); then
		_guest_err "guest_start $name: $mib MiB is too small for the host's kernel (its image alone reaches 74 MiB): use 96 or more"
		return 1
	fi
	if [ -z "${GUEST_KERNEL_IMAGE:-}" ] && ((${GUEST_WL_MIB:-32} > mib - 80)); then
		_guest_err "warning: guest_start $name: a ${GUEST_WL_MIB:-32} MiB workload may not fit in $mib MiB (about MIB - 80 does)"
	fi
	_guest_init || return 1
	local dir=$GUEST_DIR
	local qmp=$dir/$name.qmp serial=$dir/$name.serial log=$dir/$name.console.log
	local qemulog=$dir/$name.qemu.log pidfile=$dir/$name.pid
	rm -f "$qmp" "$serial" "$log" "$qemulog" "$pidfile"
	# shellcheck disable=SC2054 # commas inside QEMU's option values
	local args=(-accel tcg -cpu qemu64 -smp 1 -m "$mib" -nodefaults -no-user-config -display none
		-no-reboot -name "vmig-$name"
		-machine pc,memory-backend=ram0
		-object "memory-backend-file,id=ram0,size=${mib}M,mem-path=$memfile,share=on"
		-kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$(_guest_append)"
		-chardev "socket,id=ser0,path=$serial,server=on,wait=off,logfile=$log,logappend=on"
		-serial chardev:ser0
		-qmp "unix:$qmp,server=on,wait=off"
		-pidfile "$pidfile")
	((incoming)) && args+=(-incoming defer)
	args+=("$@")
	local pre=()
	# QEMU dies with this shell even when it is killed
	setpriv --help 2>/dev/null | grep -q pdeathsig && pre=(setpriv --pdeathsig KILL --)
	printf '%q ' "${pre[@]}" "${GUEST_QEMU:-qemu-system-x86_64}" "${args[@]}" >"$dir/$name.cmdline"
	echo >>"$dir/$name.cmdline"
	local t0=$EPOCHREALTIME
	"${pre[@]}" "${GUEST_QEMU:-qemu-system-x86_64}" "${args[@]}" </dev/null >"$qemulog" 2>&1 &
	local pid=$!
	GUEST_NAMES+=("$name")
	printf -v "${name}_pid" %s "$pid"
	printf -v "${name}_qmp" %s "$qmp"
	printf -v "${name}_serial" %s "$serial"
	printf -v "${name}_log" %s "$log"
	printf -v "${name}_qemulog" %s "$qemulog"
	printf -v "${name}_memfile" %s "$memfile"
	printf -v "${name}_mib" %s "$mib"
	printf -v "${name}_t0" %s "$t0"
	local i
	for ((i = 0; i < 600; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			_guest_err "QEMU for $name exited at once: $(tail -5 "$qemulog" 2>/dev/null)"
			return 1
		fi
		[ -S "$qmp" ] && [ -S "$serial" ] && return 0
		sleep 0.05
	done
	_guest_err "QEMU for $name: no QMP socket after 30 s"
	return 1
}

guest_start() {
	[ $# -ge 3 ] || { _guest_err "usage: guest_start NAME MEMFILE MIB [QEMU ARGS...]"; return 1; }
	_guest_launch "$1" "$2" "$3" 0 "${@:4}"
}

guest_start_incoming() {
	[ $# -ge 3 ] || { _guest_err "usage: guest_start_incoming NAME MEMFILE MIB [QEMU ARGS...]"; return 1; }
	_guest_launch "$1" "$2" "$3" 1 "${@:4}"
}

_guest_var() { # NAME FIELD
	_guest_check_name "$1" || return 1
	local v="${1}_$2"
	[ -n "${!v:-}" ] || { _guest_err "no guest named $1"; return 1; }
	printf '%s' "${!v}"
}

guest_serial_cmd() {
	[ $# -ge 3 ] || { _guest_err "usage: guest_serial_cmd NAME CMD TIMEOUT_S [PATTERN]"; return 1; }
	local sock pattern=${4:-}
	sock=$(_guest_var "$1" serial) || return 1
	if [ -z "$pattern" ]; then
		case $2 in
		verify) pattern='^VERIFY (OK|FAIL)' ;;
		counter) pattern='^COUNTER [0-9]+' ;;
		pause) pattern='^PAUSED' ;;
		resume) pattern='^RESUMED' ;;
		rate*) pattern='^RATE ' ;;
		ping) pattern='^PONG' ;;
		*) pattern='^[A-Z]+ ' ;;
		esac
		pattern="$pattern|^ERR |^WORKLOAD FATAL"
	fi
	python3 "$GUEST_CTL" serial "$sock" "$2" "$pattern" "$3"
}

guest_wait_progress() {
	[ $# -ge 2 ] || { _guest_err "usage: guest_wait_progress NAME TIMEOUT_S"; return 1; }
	local log pid off
	log=$(_guest_var "$1" log) || return 1
	pid=$(_guest_var "$1" pid) || return 1
	off=$(stat -c %s "$log" 2>/dev/null || echo 0)
	python3 "$GUEST_CTL" wait-log "$log" '^PROGRESS [0-9]+ [0-9]+' "$off" "$2" "$pid"
}

guest_counter() {
	local line
	line=$(guest_serial_cmd "$1" counter "${2:-30}") || return 1
	[[ $line =~ ^COUNTER\ ([0-9]+) ]] || { _guest_err "$1: unexpected reply '$line'"; return 1; }
	echo "${BASH_REMATCH[1]}"
}

guest_verify() {
	local line
	line=$(guest_serial_cmd "$1" verify "${2:-60}") || return 1
	echo "$line"
	[[ $line == "VERIFY OK "* ]]
}

guest_qmp() {
	[ $# -ge 2 ] || { _guest_err "usage: guest_qmp NAME JSON|COMMAND"; return 1; }
	local sock
	sock=$(_guest_var "$1" qmp) || return 1
	python3 "$GUEST_CTL" qmp "$sock" "$2" "${3:-30}"
}

guest_runstate() {
	local sock
	sock=$(_guest_var "$1" qmp) || return 1
	python3 "$GUEST_CTL" qmp-status "$sock"
}

guest_migrate_wait() {
	[ $# -ge 2 ] || { _guest_err "usage: guest_migrate_wait NAME TIMEOUT_S [STATE,...]"; return 1; }
	local sock
	sock=$(_guest_var "$1" qmp) || return 1
	python3 "$GUEST_CTL" migrate-wait "$sock" "$2" "${3:-completed}"
}

guest_corrupt_memfile() {
	[ $# = 2 ] || { _guest_err "usage: guest_corrupt_memfile MEMFILE N"; return 1; }
	python3 "$GUEST_CTL" corrupt "$1" "$2"
}

guest_stale_memfile() {
	[ $# = 3 ] || { _guest_err "usage: guest_stale_memfile OLDFILE MEMFILE N"; return 1; }
	python3 "$GUEST_CTL" stale "$1" "$2" "$3"
}

guest_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_guest_kill() { # PID: only a child of this shell (a pid never reused), TERM then KILL
	local pid=$1 i ppid
	[ -n "$pid" ] || return 0
	ppid=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)
	[ "$ppid" = "$BASHPID" ] || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 40; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

guest_stop() {
	local pid
	pid=$(_guest_var "$1" pid) || return 1
	_guest_kill "$pid"
	printf -v "${1}_pid" %s "" # stopped: never signalled again
}

guest_print_logs() {
	local n=${1:-40} name v
	for name in "${GUEST_NAMES[@]}"; do
		v=${name}_log
		echo "---- $name: serial console (${!v}), last $n lines ----"
		tail -n "$n" "${!v}" 2>/dev/null | tr -d '\r'
		v=${name}_qemulog
		if [ -s "${!v}" ]; then
			echo "---- $name: QEMU ----"
			tail -n "$n" "${!v}"
		fi
	done
}

guest_stop_all() {
	local name v
	for name in "${GUEST_NAMES[@]}"; do
		v=${name}_pid
		_guest_kill "${!v:-}"
	done
	if [ "${GUEST_KEEP:-0}" != 1 ]; then
		[ -n "$GUEST_DIR" ] && rm -rf "$GUEST_DIR"
		[ -n "$GUEST_SHM" ] && rm -rf "$GUEST_SHM"
		GUEST_DIR="" GUEST_SHM=""
	fi
	for name in "${GUEST_NAMES[@]}"; do
		unset "${name}_pid" "${name}_qmp" "${name}_serial" "${name}_log" "${name}_qemulog" \
			"${name}_memfile" "${name}_mib" "${name}_t0"
	done
	GUEST_NAMES=()
	return 0
}

# the directories exist from the start: "$GUEST_SHM/src.ram" is usable at once
_guest_dirs
