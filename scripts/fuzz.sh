#!/usr/bin/env bash
# fuzz.sh [SECONDS] - build the libFuzzer targets with clang, ASan and UBSan
# (build-fuzz), then run each for SECONDS (default 15) over its committed
# corpus in tests/fuzz/corpus. New inputs go to a scratch folder, not the
# tree. Ends with "fuzz: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
		-Db_lundef=false -Dwerror=true >/dev/null || { echo "fuzz: 0 passed, 1 failed (configure)"; exit 1; }
fi
log=$(ninja -C "$dir" 2>&1) || { echo "$log"; echo "fuzz: 0 passed, 1 failed (build)"; exit 1; }
pass=0
fail=0
scratch=$(mktemp -d "${TMPDIR:-/tmp}/rmig-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
for exe in "$dir"/tests/fuzz/fuzz_*; do
	[ -f "$exe" ] && [ -x "$exe" ] || continue
	t=$(basename "$exe")
	t=${t#fuzz_}
	mkdir -p "$scratch/$t"
	if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		"$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$scratch/$t-" "$scratch/$t" "tests/fuzz/corpus/$t" >"$scratch/$t.log" 2>&1; then
		pass=$((pass + 1))
		echo "ok   fuzz $t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$scratch/$t.log" | awk '{print $2}') runs in ${secs}s, $(ls "tests/fuzz/corpus/$t" | wc -l) seeds, clean"
	else
		fail=$((fail + 1))
		echo "FAIL fuzz $t"
		tail -40 "$scratch/$t.log"
		ls "$scratch"/"$t"-* 2>/dev/null
	fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
