#!/usr/bin/env bash
# The console with many stored sessions: fills a sled store with
# keel-bench-populate (10,000 conversations of tenant `small` on
# `small-1`, then N of the default tenant on `strong-1`, newer), starts the
# real control plane on it and times /ui/ pages with curl (5 runs each,
# ms), then prints the control plane's RSS. Not part of scripts/test.sh;
# a shared machine gives the order of magnitude, not a benchmark.
#
#   scripts/measure-console.sh                       # 1M sessions (debug build)
#   CONSOLE_SESSIONS=20000 scripts/measure-console.sh
#   CONSOLE_PROFILE=release scripts/measure-console.sh
#
# The store (~1.2 GB for 1M) is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${CONSOLE_SESSIONS:-990000}
profile=${CONSOLE_PROFILE:-debug}
flag=(); [[ "$profile" == release ]] && flag=(--release)
cargo build -q "${flag[@]}" -p keel-control-plane --bin keel-control-plane --bin keel-bench-populate
bin=${CARGO_TARGET_DIR:-target}/$profile
run=$(mktemp -d -t keel-console.XXXXXX)
cp_pid=
cleanup() { [[ -n "$cp_pid" ]] && kill "$cp_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
{ printf '[server]\ngrpc_listen = "127.0.0.1:0"\nhttp_listen = "127.0.0.1:0"\n\n[store]\npath = "%s/sled"\n\n' "$run"
  cat control-plane/benches/catalog.toml; } >"$run/cp.toml"
"$bin/keel-bench-populate" --config "$run/cp.toml" --sessions 10000 --id-prefix small- --model small-1 --tenant small
"$bin/keel-bench-populate" --config "$run/cp.toml" --sessions "$n"
echo "store: $(du -sh "$run/sled" | cut -f1)"
started=$(date +%s%N)
"$bin/keel-control-plane" --config "$run/cp.toml" >"$run/cp.out" 2>"$run/cp.log" &
cp_pid=$!
for _ in $(seq 1 600); do grep -q ' ready ' "$run/cp.out" 2>/dev/null && break; sleep 0.1; done
echo "ready in $(( ($(date +%s%N) - started) / 1000000 )) ms"
http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$run/cp.out")
ms() { curl -s -o /dev/null -w '%{time_total}' "http://$http$1" | awk '{printf "%.0f", $1 * 1000}'; }
id=bench-$((n / 8))
cursor=$(curl -sf "http://$http/ui/" | grep -o 'cursor=[0-9a-f]*' | head -1)
small_cursor=$(curl -sf "http://$http/ui/?model=small-1" | grep -o 'cursor=[0-9a-f]*' | head -1)
for page in "first page|/ui/" "next page (cursor)|/ui/?$cursor" \
    "filter profile=AGENT|/ui/?profile=AGENT" \
    "filter model=small-1 (all older than N others)|/ui/?model=small-1" \
    "its next page (cursor)|/ui/?model=small-1&$small_cursor" \
    "filter tenant=small|/ui/?tenant=small" \
    "filter profile=AGENT + model=small-1|/ui/?profile=AGENT&model=small-1" \
    "filter nudged (bounded scan, none match)|/ui/?nudged=1" \
    "search by id|/ui/?q=$id" "a conversation|/ui/conversation?id=$id" \
    "spend|/ui/spend"; do
    runs=""
    for _ in 1 2 3 4 5; do runs="$runs $(ms "${page#*|}")"; done
    echo "${page%%|*}:$runs ms"
done
grep -E 'VmRSS|VmHWM' "/proc/$cp_pid/status"
