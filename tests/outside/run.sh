#!/usr/bin/env bash
# run.sh BUILD_DIR - build and run outside.c as a library user would: install
# BUILD_DIR into a staging directory (meson install --destdir), compile
# outside.c against that install with the flags from its rmig.pc (nothing
# from the source tree), check that the program loads the staged librmig, and
# run it. The last line is "outside: 1 passed, 0 failed" or
# "outside: 0 passed, 1 failed"; the exit status is 0 only for the first.
# RMIG_OUTSIDE_NO_REBUILD=1: meson install --no-rebuild (meson test sets it:
# the build is done, and a nested ninja must not run). CC: the compiler
# (default cc; meson test passes the build's own).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# The program finds librmig by its rpath alone (meson test points
# LD_LIBRARY_PATH at the build directory, which would win).
unset LD_LIBRARY_PATH

fail() {
	echo "outside: $*" >&2
	echo "outside: 0 passed, 1 failed"
	exit 1
}

if [ $# -ne 1 ] || [ ! -f "$1/build.ninja" ]; then
	fail "usage: $0 BUILD_DIR (a configured meson build directory)"
fi
build=$(cd "$1" && pwd)

stage=$(mktemp -d "${TMPDIR:-/tmp}/rmig-outside.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$stage"' EXIT

args=(install -C "$build" --destdir "$stage" --quiet)
[ "${RMIG_OUTSIDE_NO_REBUILD:-0}" = 1 ] && args+=(--no-rebuild)
if ! log=$(meson "${args[@]}" 2>&1); then
	echo "$log" >&2
	fail "meson install into $stage failed"
fi

# The staged rmig.pc, wherever the build's libdir put it.
pc=$(find "$stage" -name rmig.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no rmig.pc under $stage"
[ -f "$(find "$stage" -name rmig.h | head -n 1)" ] || fail "no rmig.h under $stage"

# PKG_CONFIG_PATH finds the staged rmig.pc (system directories stay searched,
# for its Requires.private); PKG_CONFIG_SYSROOT_DIR puts the staging directory
# in front of its -I and -L paths (and of the Requires.private packages'
# -I paths, which then name directories that do not exist: harmless).
pkgconf() {
	PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
		PKG_CONFIG_SYSROOT_DIR="$stage" pkg-config "$@"
}
flags=$(pkgconf --cflags --libs rmig) || fail "pkg-config --cflags --libs rmig failed"
libdir=$(pkgconf --libs-only-L rmig | tr ' ' '\n' | sed -n 's/^-L//p' | grep -F "$stage" | head -n 1)
if [ -z "$libdir" ] || [ ! -e "$libdir/librmig.so" ]; then
	fail "pkg-config's -L ($flags) does not name the staged librmig.so"
fi
echo "outside: pkg-config --cflags --libs rmig: $flags"

# A sanitized build's library needs its runtime in the program too.
san=$(meson introspect --buildoptions "$build" |
	python3 -c '
import json, sys
v = next((o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"), "none")
print(",".join(v) or "none" if isinstance(v, list) else v)  # a list in newer meson') ||
	fail "meson introspect --buildoptions $build failed"
sanflags=()
[ "$san" != none ] && sanflags=("-fsanitize=$san")

exe="$stage/outside"
# shellcheck disable=SC2086 # $flags is a list of words
if ! ${CC:-cc} -std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -pthread "${sanflags[@]}" \
	-o "$exe" "$here/outside.c" $flags -Wl,-rpath,"$libdir"; then
	fail "compiling outside.c against the staged install failed"
fi

# It must load the staged library, not one installed on this machine.
loaded=$(ldd "$exe" | awk '$1 ~ /^librmig\.so/ { print $3 }')
case "$loaded" in
"$libdir"/*) ;;
*) fail "outside loads librmig from '$loaded', not from $libdir" ;;
esac

"$exe"
rc=$?
[ $rc -eq 0 ] || fail "outside exited with status $rc"
echo "outside: 1 passed, 0 failed"
