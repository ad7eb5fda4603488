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

# start_nginx PROVIDER: nginx proxy_pass to PROVIDER (host:port), upstream
# keepalive, config in the run dir, in the foreground, loopback only; waits
# until it answers. Sets $nginx_port and $nginx_pid.
start_nginx() {
    local provider=$1
    nginx_port=$(free_port)
    mkdir -p "$run_dir/nginx"
    cat >"$run_dir/nginx/nginx.conf" <<NGINX
daemon off;
master_process on;
worker_processes auto;
user root;
pid $run_dir/nginx/nginx.pid;
error_log $run_dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 8m;
    client_body_buffer_size 512k;
    client_body_temp_path $run_dir/nginx/body;
    proxy_temp_path $run_dir/nginx/proxy;
    fastcgi_temp_path $run_dir/nginx/fastcgi;
    uwsgi_temp_path $run_dir/nginx/uwsgi;
    scgi_temp_path $run_dir/nginx/scgi;
    upstream provider { server $provider; keepalive 256; }
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
NGINX
    "$nginx_bin" -c "$run_dir/nginx/nginx.conf" -p "$run_dir/nginx" 2>"$run_dir/nginx/stderr.log" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$nginx_port/healthz" && return 0
        sleep 0.1
    done
    log "nginx did not answer:"; cat "$run_dir/nginx/stderr.log" >&2; exit 1
}
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid" || true); }

# keel_config PROVIDER: $run_dir/keel.toml (loopback listeners, store in the
# run dir, the bench catalog pointing at PROVIDER) and the catalog's keys.
keel_config() {
    cat >"$run_dir/keel.toml" <<TOML
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[store]
path = "$run_dir/keel-data"

TOML
    sed "s#http://127.0.0.1:9/v1#http://$1/v1#" control-plane/benches/catalog.toml >>"$run_dir/keel.toml"
    export KEEL_KEY_ALPHA_MAIN=bench-key KEEL_KEY_ALPHA_BACKUP=bench-key-2
}

# start_keel / stop_keel: the control plane on keel.toml and a sidecar in
# front of it. Sets $cp_pid, $grpc, $sidecar_pid, $sidecar.
start_keel() {
    start control-plane "$bin/keel-control-plane" --config "$run_dir/keel.toml"
    cp_pid=$last_pid
    grpc=$(addr control-plane grpc)
    start sidecar "$bin/keel-sidecar" --listen 127.0.0.1:0 \
        --control-plane "http://$grpc" --default-model strong-1
    sidecar_pid=$last_pid
    sidecar=$(addr sidecar listen)
}
stop_keel() { stop "$sidecar_pid"; stop "$cp_pid"; }
