# Shared by scripts/bench.sh, bench-store.sh and bench-agent.sh (sourced):
# a run directory, processes started and waited for, the release binaries.
#
#   bench_init NAME [DIR...]   run dir `keel-NAME.XXXXXX` ($run_dir, $results),
#                              `log` prefixed NAME; on exit every started
#                              process is killed and DIRs (in the run dir) go.

bench_init() {
    bench_name=$1; shift
    bench_scratch=("$@")
    run_dir=$(mktemp -d -t "keel-$bench_name.XXXXXX")
    results=$run_dir/results.jsonl
    : >"$results"
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Results and logs stay; stores (GBs at 1M sessions) and binaries go.
    for d in "${bench_scratch[@]}"; do rm -rf "${run_dir:?}/$d"; done
}

log() { echo "$bench_name: $*" >&2; }

# nginx from Debian when missing; sets $nginx_bin.
ensure_nginx() {
    if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
        log "installing nginx (Debian)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2 ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2
    fi
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
}

# copy_release_bins NAME...: copies into $run_dir/bin (sets $bin), so a
# concurrent build cannot swap a binary between the phases.
copy_release_bins() {
    bin=$run_dir/bin
    mkdir -p "$bin"
    for b in "$@"; do cp "${CARGO_TARGET_DIR:-target}/release/$b" "$bin/"; done
}

# start NAME CMD...: runs CMD, waits for its ' ready ' line; sets $last_pid.
start() {
    local name=$1; shift
    "$@" >"$run_dir/$name.out" 2>"$run_dir/$name.log" &
    last_pid=$!
    pids+=("$last_pid")
    for _ in $(seq 1 300); do
        grep -q ' ready ' "$run_dir/$name.out" 2>/dev/null && return 0
        if ! kill -0 "$last_pid" 2>/dev/null; then
            log "$name failed to start:"; cat "$run_dir/$name.log" >&2; exit 1
        fi
        sleep 0.1
    done
    log "$name did not become ready"; exit 1
}
addr() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$run_dir/$1.out"; }
stop() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
