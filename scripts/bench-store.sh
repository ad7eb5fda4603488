#!/usr/bin/env bash
# The session store's benchmark, beside scripts/bench.sh: `Route` over gRPC
# (p50/p99 and decisions per second, unary and RouteStream, 1 and 32 calls in
# flight) against one control plane on sled, one on Redis, and two replicas
# on one Redis (the calls spread over both); and the store's memory per
# session.
#
#   scripts/bench-store.sh                                   # 1M sessions
#   BENCH_SESSIONS=20000 BENCH_SECS=3 scripts/bench-store.sh # quick look
#
# Redis runs as the README's deployment asks: AOF with `appendfsync always`
# (every pin on disk before it is acknowledged). Memory per session: Redis's
# `used_memory` growth over the fill, divided by the sessions (session hash
# plus its one-record timeline); sled's on-disk size likewise, and the
# control plane's peak RSS for both.
#
# Env: BENCH_SESSIONS (default 1000000), BENCH_SECS (measured seconds per
# case, default 5), BENCH_OUT (write the table there too), BENCH_FSYNC
# (`always`, the default, or `everysec` with `durability = "best-effort"`: what
# the fsync per write costs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

n=${BENCH_SESSIONS:-1000000}
secs=${BENCH_SECS:-5}
fsync=${BENCH_FSYNC:-always}
durability=strict
[[ "$fsync" == always ]] || durability=best-effort
source scripts/bench-lib.sh
bench_init bench-store sled redis bin

scripts/setup-redis.sh
log "building release binaries"
cargo build -q --release -p keel-control-plane --bins
cargo bench -q --no-run -p keel-control-plane --bench route 2>/dev/null
copy_release_bins keel-control-plane keel-bench-populate

note() { echo "$1" >>"$results"; }

# A control-plane config: store table $1.
config() {
    cat <<TOML
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[store]
$1

TOML
cat "$repo/control-plane/benches/catalog.toml"
}

# bench SETUP URLS: the route bench against the control planes at URLS.
bench() {
    cargo bench -q -p keel-control-plane --bench route -- \
        --grpc "$2" --ids "$n" --secs "$secs" --concurrency 1,32 |
        while read -r line; do echo "{\"setup\":\"$1\",${line#\{}"; done >>"$results"
}

# --- sled --------------------------------------------------------------------
config "path = \"$run_dir/sled\"" >"$run_dir/sled.toml"
log "sled: filling $n sessions"
"$bin/keel-bench-populate" --config "$run_dir/sled.toml" --sessions "$n" >&2
start cp-sled "$bin/keel-control-plane" --config "$run_dir/sled.toml"
cp=$last_pid
log "sled: Route"
bench sled "http://$(addr cp-sled grpc)"
note "{\"kind\":\"memory\",\"setup\":\"sled\",\"store_bytes\":$(du -sb "$run_dir/sled" | cut -f1),\"cp_hwm_kb\":$(hwm_kb "$cp")}"
stop "$cp"

# --- Redis ---------------------------------------------------------------------
port=$(free_port)
mkdir -p "$run_dir/redis"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "$fsync" \
    --dir "$run_dir/redis" >"$run_dir/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 1 100); do
    [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
done
used() { redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
config "backend = \"redis\"
redis_url = \"redis://127.0.0.1:$port/0\"
durability = \"$durability\"" >"$run_dir/redis.toml"
before=$(used)
log "redis: filling $n sessions"
"$bin/keel-bench-populate" --config "$run_dir/redis.toml" --sessions "$n" --threads 8 >&2
after=$(used)
note "{\"kind\":\"memory\",\"setup\":\"redis\",\"store_bytes\":$((after - before)),\"redis_hwm_kb\":$(hwm_kb "$redis_pid")}"
start cp-redis-1 "$bin/keel-control-plane" --config "$run_dir/redis.toml"
cp1=$last_pid
url1="http://$(addr cp-redis-1 grpc)"
log "redis, one replica: Route"
bench "redis 1 replica" "$url1"
note "{\"kind\":\"memory\",\"setup\":\"redis 1 replica\",\"cp_hwm_kb\":$(hwm_kb "$cp1")}"
start cp-redis-2 "$bin/keel-control-plane" --config "$run_dir/redis.toml"
url2="http://$(addr cp-redis-2 grpc)"
log "redis, two replicas: Route"
bench "redis 2 replicas" "$url1,$url2"
stop "$cp1"

# --- table ----------------------------------------------------------------------
python3 - "$results" "$n" <<'PY' | tee "${BENCH_OUT:-/dev/null}"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
print(f"Route over gRPC, {n} pinned sessions stored\n")
print("| store | case | in flight | p50 µs | p99 µs | decisions/s |")
print("|---|---|---:|---:|---:|---:|")
for r in rows:
    if "case" in r:
        print(f"| {r['setup']} | {r['case']} | {r['concurrency']} | {r['p50_us']} | {r['p99_us']} | {r['decisions_per_sec']:.0f} |")
print("\n| store | bytes per session | process peak RSS |")
print("|---|---:|---|")
for r in rows:
    if r.get("kind") == "memory" and "store_bytes" in r:
        rss = r.get("cp_hwm_kb") or r.get("redis_hwm_kb")
        who = "control plane" if "cp_hwm_kb" in r else "redis-server"
        print(f"| {r['setup']} | {r['store_bytes'] / n:.0f} | {who} {rss / 1024:.0f} MB |")
    elif r.get("kind") == "memory":
        print(f"| {r['setup']} | (in Redis) | control plane {r['cp_hwm_kb'] / 1024:.0f} MB |")
PY
log "raw results: $results"
