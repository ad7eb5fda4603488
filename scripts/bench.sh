#!/usr/bin/env bash
# Keel's benchmark: what the gateway adds to a call, against the provider
# direct and a plain reverse proxy (nginx), all on 127.0.0.1 in one run.
#
#   scripts/bench.sh                # full run (~12 minutes on 2 cores)
#   BENCH_SECS=3 BENCH_SESSIONS=100000 scripts/bench.sh   # quick look
#
# Installs nginx from Debian if missing, builds release binaries, and then,
# in each of two phases (10k sessions stored, then 1M):
#   * targets: the fake provider direct, nginx proxy_pass (upstream
#     keepalive), Keel with AGENT + X-Conversation-ID (ids cycling over every
#     stored session, so each request reads and rewrites one), Keel without
#     a conversation id;
#   * keel-loadgen at 200 and 1000 RPS (open loop, latency from the intended
#     send time), max throughput at 32 and 128 connections (closed loop), and
#     streaming time to first chunk at 200 RPS;
#   * Route over gRPC alone (control-plane bench `route`);
#   * peak RSS (VmHWM) of every process.
# Then the in-process Route and sidecar parse microbenchmarks. Prints a
# Markdown table; raw JSON lines and logs stay in the run directory.
#
# Env: BENCH_SECS (measured seconds per run, default 10), BENCH_WARMUP
# (default 2), BENCH_SESSIONS (big phase, default 1000000), BENCH_IDS_SMALL
# (default 10000), BENCH_OUT (write the table there too).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECS:-10}
warm=${BENCH_WARMUP:-2}
big=${BENCH_SESSIONS:-1000000}
small=${BENCH_IDS_SMALL:-10000}
source scripts/bench-lib.sh
bench_init bench keel-data bin

# --- what the benchmark needs -------------------------------------------------
ensure_nginx
log "building release binaries"
cargo build -q --release -p keel-control-plane -p keel-data-plane -p keel-testkit --bins
cargo bench -q --no-run -p keel-control-plane --bench route 2>/dev/null
cargo bench -q --no-run -p keel-data-plane --bench parse 2>/dev/null
copy_release_bins keel-control-plane keel-sidecar keel-fake-provider keel-loadgen keel-bench-populate
route_bench() { cargo bench -q -p keel-control-plane --bench route -- "$@"; }

# --- processes ----------------------------------------------------------------
rss() { # rss PHASE NAME PID...
    local phase=$1 name=$2 total=0 kb; shift 2
    for p in "$@"; do kb=$(hwm_kb "$p"); total=$((total + kb)); done
    echo "{\"kind\":\"rss\",\"phase\":\"$phase\",\"process\":\"$name\",\"vmhwm_kb\":$total}" >>"$results"
}

start provider "$bin/keel-fake-provider" --listen 127.0.0.1:0 --no-record
provider_pid=$last_pid
provider=$(addr provider listen)

start_nginx "$provider"
keel_config "$provider"

# A realistic agent turn: system prompt, a few turns, ~2 KB.
python3 - "$run_dir" <<'PY'
import json, sys
d = sys.argv[1]
msgs = [{"role": "system", "content": "You are a careful coding agent. Think step by step, run the tests, and keep changes small. " * 4}]
for i in range(3):
    msgs.append({"role": "user", "content": f"Step {i}: the build fails in module {i} with error E0{i}33; fix it and explain what you changed in two sentences."})
    msgs.append({"role": "assistant", "content": f"I looked at module {i}: the import was missing, so I added it and re-ran cargo build, which now passes. " * 2})
msgs.append({"role": "user", "content": "Now run the whole test suite and summarise the failures."})
body = {"model": "auto", "messages": msgs, "max_tokens": 512}
open(f"{d}/body.json", "w").write(json.dumps(body))
body["stream"] = True
open(f"{d}/body-stream.json", "w").write(json.dumps(body))
PY

# load PHASE TARGET URL IDS TEST ARGS...: one keel-loadgen run, appended to results.
load() {
    local phase=$1 target=$2 url=$3 ids=$4 test=$5; shift 5
    local out
    out=$("$bin/keel-loadgen" --url "$url" --header 'x-router-profile: AGENT' \
        --conversation-ids "$ids" --duration "$secs" --warmup "$warm" --label "$test" "$@") || {
        log "loadgen failed: $phase $target $test"; return 0; }
    echo "{\"kind\":\"load\",\"phase\":\"$phase\",\"target\":\"$target\",\"run\":$out}" >>"$results"
    log "$phase $target $test: $out"
}

suite() { # suite PHASE IDS
    local phase=$1 ids=$2 name url n
    for target in direct nginx keel keel-noconv; do
        case $target in
            direct) url=http://$provider/v1/chat/completions; n=0 ;;
            nginx) url=http://127.0.0.1:$nginx_port/v1/chat/completions; n=0 ;;
            keel) url=http://$sidecar/v1/chat/completions; n=$ids ;;
            keel-noconv) url=http://$sidecar/v1/chat/completions; n=0 ;;
        esac
        load "$phase" "$target" "$url" "$n" rate200 --rate 200 --body-file "$run_dir/body.json"
        load "$phase" "$target" "$url" "$n" rate1000 --rate 1000 --body-file "$run_dir/body.json"
        load "$phase" "$target" "$url" "$n" max32 --connections 32 --body-file "$run_dir/body.json"
        load "$phase" "$target" "$url" "$n" max128 --connections 128 --body-file "$run_dir/body.json"
        load "$phase" "$target" "$url" "$n" stream200 --rate 200 --stream --body-file "$run_dir/body-stream.json"
    done
    # The peak from traffic through the sidecar alone, before the Route
    # benchmark below hammers the control plane directly.
    rss "$phase" "control-plane before the Route benchmark" "$cp_pid"
    local out
    while read -r out; do
        echo "{\"kind\":\"route\",\"phase\":\"$phase\",\"run\":$out}" >>"$results"
        log "$phase route: $out"
    done < <(route_bench --grpc "http://$grpc" --ids "$ids" --secs "$secs" --concurrency 1,32)
    rss "$phase" provider "$provider_pid"
    rss "$phase" nginx $(nginx_pids)
    rss "$phase" control-plane "$cp_pid"
    rss "$phase" sidecar "$sidecar_pid"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_started=$(date +%s)
for phase in "$small" "$big"; do
    log "phase: $phase sessions stored"
    t0=$(date +%s)
    "$bin/keel-bench-populate" --config "$run_dir/keel.toml" --sessions "$phase" >"$run_dir/populate-$phase.out"
    echo "{\"kind\":\"populate\",\"phase\":\"$phase\",\"secs\":$(( $(date +%s) - t0 ))}" >>"$results"
    log "$(cat "$run_dir/populate-$phase.out")"
    start_keel
    suite "$phase" "$phase"
    stop_keel
done

log "microbenchmarks"
route_bench --sessions "$small,$big" --secs "$secs" 2>"$run_dir/route-inprocess.log" |
    while read -r out; do echo "{\"kind\":\"route-inprocess\",\"run\":$out}" >>"$results"; done
cargo bench -q -p keel-data-plane --bench parse 2>/dev/null | tee "$run_dir/parse.txt" >&2

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$results" "$run_dir/parse.txt" "$(nproc)" "$load_before" "$load_after" \
    "$(( $(date +%s) - bench_started ))" "$secs" <<'PY' | tee "${BENCH_OUT:-$run_dir/results.md}"
import json, sys
results, parse_txt, cores, load_before, load_after, took, secs = sys.argv[1:8]
rows = [json.loads(l) for l in open(results) if l.strip()]
phases = []
for r in rows:
    if "phase" in r and r["phase"] not in phases:
        phases.append(r["phase"])
def run(phase, target, test):
    for r in rows:
        if r["kind"] == "load" and r["phase"] == phase and r["target"] == target and r["run"]["label"] == test:
            return r["run"]
    return None
def ms(us): return f"{us / 1000:.2f}"
def plus(us): return ("−" if us < 0 and ms(-us) != "0.00" else "+") + ms(abs(us))
def fmt_sessions(p): return f"{int(p):,}"
print(f"Machine: {cores} cores, load average before {load_before}, after {load_after}; "
      f"{secs} s measured per run; whole run {int(took) // 60} min.\n")
checks = []
for phase in phases:
    print(f"### {fmt_sessions(phase)} sessions stored\n")
    print("| target | p50 / p90 / p99 at 200 RPS (ms) | p50 / p90 / p99 at 1000 RPS (ms) | max RPS, 32 conns | max RPS, 128 conns | stream TTFC p50 / p99 at 200 RPS (ms) | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = {t: run(phase, "direct", t) for t in ["rate200", "rate1000", "max32", "max128", "stream200"]}
    def added(target, test, key):
        r, b = run(phase, target, test), base[test]
        return None if not r or not b else r[key] - b[key]
    for target in ["direct", "nginx", "keel", "keel-noconv"]:
        cells, errors = [], 0
        for test in ["rate200", "rate1000"]:
            r = run(phase, target, test)
            if not r: cells.append("-"); continue
            errors += r["errors"]
            if target == "direct":
                cells.append(" / ".join(ms(r[k]) for k in ["p50_us", "p90_us", "p99_us"]))
            else:
                cells.append(" / ".join(plus(added(target, test, k)) for k in ["p50_us", "p90_us", "p99_us"]))
        for test in ["max32", "max128"]:
            r = run(phase, target, test)
            if r: errors += r["errors"]
            cells.append(f"{r['rps']:,.0f}" if r else "-")
        r = run(phase, "direct" if target == "direct" else target, "stream200")
        if r:
            errors += r["errors"]
            if target == "direct":
                cells.append(f"{ms(r['ttfc_p50_us'])} / {ms(r['ttfc_p99_us'])}")
            else:
                cells.append(f"{plus(added(target, 'stream200', 'ttfc_p50_us'))} / {plus(added(target, 'stream200', 'ttfc_p99_us'))}")
        else:
            cells.append("-")
        label = {"direct": "provider direct (absolute)", "nginx": "nginx proxy_pass (added)",
                 "keel": "Keel AGENT + conversation id (added)", "keel-noconv": "Keel, no conversation id (added)"}[target]
        print(f"| {label} | " + " | ".join(cells) + f" | {errors} |")
    print()
    rss = {r["process"]: r["vmhwm_kb"] for r in rows if r["kind"] == "rss" and r["phase"] == phase}
    order = ["provider", "nginx", "control-plane", "control-plane before the Route benchmark", "sidecar"]
    rss = dict(sorted(rss.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    print("Peak RSS (VmHWM): " + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in rss.items()) + "\n")
    # Targets.
    for test in ["rate1000"]:
        for key in ["p50_us", "p99_us"]:
            k, n = added("keel", test, key), added("nginx", test, key)
            if k is not None and n is not None:
                checks.append((f"{fmt_sessions(phase)}: Keel added {key[:3]} at 1000 RPS {ms(k)} ms <= 2 x nginx {ms(n)} ms", k <= 2 * max(n, 0)))
    for test in ["max32", "max128"]:
        k, n = run(phase, "keel", test), run(phase, "nginx", test)
        if k and n:
            checks.append((f"{fmt_sessions(phase)}: Keel max RPS {test[3:]} conns {k['rps']:,.0f} >= half nginx {n['rps']:,.0f}", k["rps"] >= n["rps"] / 2))
    if "sidecar" in rss:
        checks.append((f"{fmt_sessions(phase)}: sidecar peak RSS {rss['sidecar'] / 1024:.1f} MB < 30 MB", rss["sidecar"] < 30 * 1024))
    if "control-plane" in rss:
        checks.append((f"{fmt_sessions(phase)}: control plane peak RSS {rss['control-plane'] / 1024:.1f} MB < 100 MB", rss["control-plane"] < 100 * 1024))
print("### Route over gRPC alone (closed loop, one channel)\n")
print("| sessions stored | case | calls in flight | p50 (ms) | p99 (ms) | decisions/s |")
print("| --- | --- | --- | --- | --- | --- |")
route = {}
for r in rows:
    if r["kind"] == "route":
        x = r["run"]; route[(r["phase"], x["case"], x["concurrency"])] = x
        print(f"| {fmt_sessions(r['phase'])} | {x['case']} | {x['concurrency']} | {ms(x['p50_us'])} | {ms(x['p99_us'])} | {x['decisions_per_sec']:,.0f} |")
print()
if len(phases) == 2:
    for case in ["grpc retain", "grpc-stream retain"]:
        a, b = route.get((phases[0], case, 1)), route.get((phases[1], case, 1))
        if a and b:
            checks.append((f"Route ({case}) p99 {fmt_sessions(phases[0])} -> {fmt_sessions(phases[1])} sessions: {ms(a['p99_us'])} -> {ms(b['p99_us'])} ms (no growth beyond noise: <= 1.5x + 0.1 ms)",
                           b["p99_us"] <= 1.5 * a["p99_us"] + 100))
print("### Route in process (`RouterState::route`, one caller)\n")
print("| sessions stored | case | p50 (µs) | p99 (µs) | decisions/s |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    if r["kind"] == "route-inprocess":
        x = r["run"]
        print(f"| {fmt_sessions(x['sessions'])} | {x['case'].replace('in-process ', '')} | {x['p50_us']} | {x['p99_us']} | {x['decisions_per_sec']:,.0f} |")
print("\n### Sidecar request work, 200-message history\n\n```")
print(open(parse_txt).read().rstrip())
print("```\n\n### Targets\n")
for text, ok in checks:
    print(f"- [{'x' if ok else ' '}] {text}")
PY
log "raw results and logs: $run_dir"
