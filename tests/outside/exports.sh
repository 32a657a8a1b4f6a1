#!/usr/bin/env bash
# exports.sh LIBRMIG_SO RMIG_H - the shared library exports exactly the
# functions rmig.h declares RMIG_API, each at version RMIG_0.1
# (core/librmig.map), and nothing else but the version node.
set -uo pipefail

[ $# -eq 2 ] || { echo "usage: $0 LIBRMIG_SO RMIG_H" >&2; exit 2; }
so=$1 hdr=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

sed -n 's/^RMIG_API [^(]*[ *]\(rmig_[a-z0-9_]*\)(.*/\1/p' "$hdr" | sort >"$tmp/api"
[ -s "$tmp/api" ] || { echo "exports: no RMIG_API declarations in $hdr" >&2; exit 1; }
nm -D --defined-only "$so" | awk '{ print $3 }' | sort >"$tmp/dyn" ||
	{ echo "exports: nm -D $so failed" >&2; exit 1; }
sed 's/$/@@RMIG_0.1/' "$tmp/api" >"$tmp/want"
echo RMIG_0.1 >>"$tmp/want"
sort -o "$tmp/want" "$tmp/want"
if ! diff -u "$tmp/want" "$tmp/dyn"; then
	echo "exports: $so's dynamic symbols differ from rmig.h's API (- missing, + extra)" >&2
	exit 1
fi
echo "exports: $(wc -l <"$tmp/api") functions, all at RMIG_0.1, nothing else"
