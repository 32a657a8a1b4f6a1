#!/usr/bin/env bash
# demo.sh - set up, build, and run one real migration between two endpoints on
# this machine: a 1 GiB memory image (random data and long zero runs) moved by
# `rdma-migrate send` to `rdma-migrate recv` over 4 TCP channels, verified end
# to end, then compared byte for byte. Both ends share a key.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh build
RM=build/tools/rdma-migrate
W=$(mktemp -d)
recv=
# Keeps the script's exit status. Under set -e a bare `kill $(jobs -p)` with
# no job left (the success path) fails and turns success into exit 2.
cleanup() {
	local rc=$?
	[ -z "$recv" ] || kill "$recv" 2>/dev/null || true # recv still runs: a failed demo
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT

echo "demo: making a 1 GiB image (random data and zero runs) in $W"
for i in $(seq 0 63); do
	if ((i % 2)); then head -c 16M /dev/zero; else head -c 16M /dev/urandom; fi
done >"$W/guest.img"

# both ends hold the same key: only this source can write into the image
(umask 077 && head -c 32 /dev/urandom >"$W/key")
"$RM" recv --listen 127.0.0.1:0 --port-file "$W/port" --ram "ram=$W/guest-dst.img" \
	--key-file "$W/key" &
recv=$!
for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.05; done
"$RM" send --to "127.0.0.1:$(cat "$W/port")" --ram "ram=$W/guest.img" --channels 4 \
	--transport auto --verify --key-file "$W/key"
wait "$recv"
recv=
cmp "$W/guest.img" "$W/guest-dst.img"
echo "demo: destination image is byte-identical to the source"
