#!/usr/bin/env bash
# Keel's agent-shaped benchmark, beside scripts/bench.sh: many conversations
# each taking sequential turns (tool call, tool result, next turn), histories
# growing from ~3 KB to ~200 KB, streamed, against the provider direct, nginx
# proxy_pass and Keel (AGENT profile, X-Conversation-ID) in one run.
#
#   scripts/bench-agent.sh                 # 3 runs at 1000 RPS + max RPS (~4 min)
#   AGENT_SECS=2 AGENT_RUNS=1 scripts/bench-agent.sh   # smoke test
#
# Reports, per run: latency p50/p99/p99.9 (direct absolute, nginx and Keel as
# added over direct), Keel's degraded answers (must be 0) and 429s, the
# sidecar's own time per request by step (parse, features, fingerprint,
# route, prepare; means from its keel_sidecar_step_duration histograms; the
# rest of its own time to the response head, keel_sidecar_overhead less the
# steps: accept, body, forward), the CPU time the sidecar and the control
# plane spent per request (from /proc, warm-up included), and across runs
# the spread of Keel's added p99; then max RPS (closed loop) of
# nginx and Keel. Raw JSON lines, metrics and logs stay in the run directory.
#
# Env: AGENT_SECS (measured seconds per run, default 20), AGENT_WARMUP (3),
# AGENT_RUNS (3), AGENT_RATE (1000), AGENT_TURNS (40 turns per
# conversation), AGENT_CONVERSATIONS (2000 at once), AGENT_CONNECTIONS (32,
# the max-RPS test), AGENT_OUT (write the table there too).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${AGENT_SECS:-20}
warm=${AGENT_WARMUP:-3}
runs=${AGENT_RUNS:-3}
rate=${AGENT_RATE:-1000}
turns=${AGENT_TURNS:-40}
convs=${AGENT_CONVERSATIONS:-2000}
conns=${AGENT_CONNECTIONS:-32}
source scripts/bench-lib.sh
bench_init bench-agent keel-data bin

ensure_nginx
log "building release binaries"
cargo build -q --release -p keel-control-plane -p keel-data-plane -p keel-testkit --bins
copy_release_bins keel-control-plane keel-sidecar keel-fake-provider keel-loadgen


start provider "$bin/keel-fake-provider" --listen 127.0.0.1:0 --no-record
provider=$(addr provider listen)

start_nginx "$provider"
keel_config "$provider"
start_keel

# One conversation's turns: a coding agent reading files, editing, running
# tests; each turn adds a tool call and its result (~4.8 KB), streamed.
python3 - "$run_dir/turns" "$turns" <<'PY'
import json, os, sys
out, turns = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
code = "".join(f"    line_{i} = compute(x, y) + {i}  # keep the invariant of step {i}\n" for i in range(70))
tools = [{"type": "function", "function": {"name": n, "description": f"{n} in the repository.",
          "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}
         for n in ["read_file", "str_replace_editor", "run_tests", "grep"]]
msgs = [{"role": "system", "content": "You are a coding agent. Use the tools to fix the repository; keep changes small and run the tests after every edit. " * 12},
        {"role": "user", "content": "The test suite fails after the last refactor of src/core; find the cause, fix it and show the passing run."}]
for t in range(turns):
    body = {"model": "auto", "messages": msgs, "tools": tools, "max_tokens": 1024, "stream": True,
            "stream_options": {"include_usage": True}}
    open(f"{out}/turn-{t:03}.json", "w").write(json.dumps(body))
    name = ["read_file", "str_replace_editor", "run_tests"][t % 3]
    args = {"path": f"src/core/mod_{t}.py"}
    result = {"read_file": code, "str_replace_editor": "The file has been edited. " * 8,
              "run_tests": f"FAILED tests/test_core.py::test_{t} - AssertionError\n" * 20 + f"3 failed, 40 passed in 1.{t}s"}[name]
    msgs = msgs + [
        {"role": "assistant", "content": f"Step {t}: next I {name} on mod_{t}.", "tool_calls": [
            {"id": f"call_{t}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]},
        {"role": "tool", "tool_call_id": f"call_{t}", "content": result + code[:3000]},
    ]
sizes = [os.path.getsize(f"{out}/turn-{t:03}.json") for t in range(turns)]
print(f"{turns} turns, {sizes[0] // 1024} KB to {sizes[-1] // 1024} KB, mean {sum(sizes) // len(sizes) // 1024} KB", file=sys.stderr)
PY

# The sidecar's metrics, and the CPU ticks (user + system) of the sidecar
# and the control plane so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metrics() {
    curl -s "http://$sidecar/metrics" >"$run_dir/$1.metrics"
    echo "$(cpu_ticks "$sidecar_pid") $(cpu_ticks "$cp_pid")" >"$run_dir/$1.cpu"
}
load() { # load RUN TARGET URL TEST ARGS...
    local run=$1 target=$2 url=$3 test=$4; shift 4
    local out
    out=$("$bin/keel-loadgen" --url "$url" --header 'x-router-profile: AGENT' \
        --turns-dir "$run_dir/turns" --conversations "$convs" --id-prefix "agent-$test-$run-" \
        --stream --duration "$secs" --warmup "$warm" --label "$test" "$@") || {
        log "loadgen failed: $run $target $test"; return 0; }
    echo "{\"run\":$run,\"target\":\"$target\",\"result\":$out}" >>"$results"
    log "run $run $target $test: $out"
}
urls=(direct "http://$provider/v1/chat/completions" nginx "http://127.0.0.1:$nginx_port/v1/chat/completions"
      keel "http://$sidecar/v1/chat/completions")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
    for i in 0 2 4; do
        target=${urls[$i]} url=${urls[$((i + 1))]}
        [[ $target == keel ]] && metrics "before-$run"
        load "$run" "$target" "$url" "rate$rate" --rate "$rate"
        [[ $target == keel ]] && metrics "after-$run"
    done
done
for i in 0 2 4; do
    load 0 "${urls[$i]}" "${urls[$((i + 1))]}" "max$conns" --connections "$conns"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$run_dir" "$results" "$runs" "$rate" "$conns" "$(nproc)" "$load_before" "$load_after" "$secs" "$(getconf CLK_TCK)" <<'PY' | tee "${AGENT_OUT:-$run_dir/results.md}"
import json, re, sys
d, results, runs, rate, conns, cores, lb, la, secs, ticks = sys.argv[1:11]
ticks = float(ticks)
runs = int(runs)
rows = [json.loads(l) for l in open(results) if l.strip()]
def get(run, target, test):
    for r in rows:
        if r["run"] == run and r["target"] == target and r["result"]["label"] == test:
            return r["result"]
def ms(us): return f"{us / 1000:.2f}"
def plus(us): return ("+" if us >= 0 else "−") + ms(abs(us))
def cpu(path):
    try:
        return [int(x) for x in open(path).read().split()]
    except (OSError, ValueError):
        return None
def steps(path):
    out = {}
    try:
        text = open(path).read()
    except OSError:
        return out
    for kind in ["sum", "count"]:
        for m in re.finditer(r'keel_sidecar_step_duration_seconds_' + kind + r'\{step="(\w+)"\} ([0-9.e+-]+)', text):
            out.setdefault(m.group(1), {})[kind] = float(m.group(2))
    return out
def overhead(path):
    """keel_sidecar_overhead_seconds: sum, count and cumulative buckets."""
    out = {"sum": 0.0, "count": 0.0, "buckets": []}
    try:
        text = open(path).read()
    except OSError:
        return out
    for kind in ["sum", "count"]:
        m = re.search(r"^keel_sidecar_overhead_seconds_" + kind + r" ([0-9.e+-]+)$", text, re.M)
        if m:
            out[kind] = float(m.group(1))
    for m in re.finditer(r'^keel_sidecar_overhead_seconds_bucket\{le="([0-9.e+-]+)"\} ([0-9.e+-]+)$', text, re.M):
        out["buckets"].append((float(m.group(1)), float(m.group(2))))
    return out
print(f"Machine: {cores} cores, load average before {lb}, after {la}; {secs} s measured per run; "
      f"agent turns streamed, histories ~3 KB to ~200 KB.\n")
print(f"### Fixed {rate} RPS\n")
print("| run | direct p50 / p99 / p99.9 (ms) | nginx added p50 / p99 | Keel added p50 / p99 / p99.9 | Keel degraded | Keel 429 | errors (direct / nginx / Keel) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
test = f"rate{rate}"
added_p99 = []
checks = []
for run in range(1, runs + 1):
    dr, ng, kl = (get(run, t, test) for t in ["direct", "nginx", "keel"])
    if not (dr and ng and kl):
        print(f"| {run} | missing | | | | | |"); continue
    a = {k: kl[k] - dr[k] for k in ["p50_us", "p99_us", "p999_us"]}
    n = {k: ng[k] - dr[k] for k in ["p50_us", "p99_us"]}
    added_p99.append(a["p99_us"])
    print(f"| {run} | {ms(dr['p50_us'])} / {ms(dr['p99_us'])} / {ms(dr['p999_us'])} | {plus(n['p50_us'])} / {plus(n['p99_us'])} | "
          f"{plus(a['p50_us'])} / {plus(a['p99_us'])} / {plus(a['p999_us'])} | {kl['degraded']} | {kl['shed_429']} | "
          f"{dr['errors']} / {ng['errors']} / {kl['errors']} |")
    checks.append((f"run {run}: Keel added p50 {ms(a['p50_us'] - n['p50_us'])} ms over nginx's (target <= 0.25 ms)", a["p50_us"] - n["p50_us"] <= 250))
    checks.append((f"run {run}: Keel added p99 {ms(a['p99_us'] - n['p99_us'])} ms over nginx's (target <= 1 ms)", a["p99_us"] - n["p99_us"] <= 1000))
    checks.append((f"run {run}: degraded answers {kl['degraded']} (target 0)", kl["degraded"] == 0))
if added_p99:
    print(f"\nKeel added p99 across runs: {ms(min(added_p99))} – {ms(max(added_p99))} ms (spread {ms(max(added_p99) - min(added_p99))} ms)\n")
print("### The sidecar's own time per request, by step (mean µs over the run)\n")
print("| run | parse | features | fingerprint | route (incl. waiting) | prepare | rest (accept, body, forward) | own time to response head: mean / p99 bucket | CPU per request: sidecar / control plane |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for run in range(1, runs + 1):
    b, a = steps(f"{d}/before-{run}.metrics"), steps(f"{d}/after-{run}.metrics")
    cells = []
    stepped = 0.0
    for s in ["parse", "features", "fingerprint", "route", "prepare"]:
        ds = a.get(s, {}).get("sum", 0) - b.get(s, {}).get("sum", 0)
        dc = a.get(s, {}).get("count", 0) - b.get(s, {}).get("count", 0)
        cells.append(f"{ds / dc * 1e6:.0f}" if dc else "-")
        stepped += ds / dc if dc else 0
    ob, oa = overhead(f"{d}/before-{run}.metrics"), overhead(f"{d}/after-{run}.metrics")
    n = oa["count"] - ob["count"]
    if n:
        mean = (oa["sum"] - ob["sum"]) / n
        p99 = next((le for le, c in oa["buckets"] if c - dict(ob["buckets"]).get(le, 0) >= 0.99 * n), None)
        cells.append(f"{(mean - stepped) * 1e6:.0f}")
        cells.append(f"{mean * 1e6:.0f} / ≤ {p99 * 1e3:g} ms" if p99 is not None else f"{mean * 1e6:.0f} / -")
    else:
        cells += ["-", "-"]
    cb, ca = cpu(f"{d}/before-{run}.cpu"), cpu(f"{d}/after-{run}.cpu")
    if n and cb and ca:
        per = [(y - x) / ticks / n * 1e6 for x, y in zip(cb, ca)]
        cells.append(f"{per[0]:.0f} / {per[1]:.0f} µs")
    else:
        cells.append("-")
    print(f"| {run} | " + " | ".join(cells) + " |")
print(f"\n### Max RPS, closed loop, {conns} connections\n")
print("| target | RPS | p50 / p99 (ms) | errors | degraded | 429 |")
print("| --- | --- | --- | --- | --- | --- |")
mx = {}
for t in ["direct", "nginx", "keel"]:
    r = get(0, t, f"max{conns}")
    if r:
        mx[t] = r["rps"]
        print(f"| {t} | {r['rps']:,.0f} | {ms(r['p50_us'])} / {ms(r['p99_us'])} | {r['errors']} | {r.get('degraded', 0)} | {r.get('shed_429', 0)} |")
if "keel" in mx and "nginx" in mx:
    checks.append((f"Keel max RPS {mx['keel']:,.0f} >= a third of nginx's {mx['nginx']:,.0f}", mx["keel"] >= mx["nginx"] / 3))
print("\n### Targets\n")
for text, ok in checks:
    print(f"- [{'x' if ok else ' '}] {text}")
PY
log "raw results and logs: $run_dir"
