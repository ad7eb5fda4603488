#!/usr/bin/env bash
# Starts a working Keel gateway on this machine: the control plane (with its
# embedded sled store) and a sidecar on 127.0.0.1:8080.
#
#   scripts/gateway.sh                 # demo: a local fake provider + examples/keel.toml
#   scripts/gateway.sh my-keel.toml    # your config; export KEEL_KEY_<REF> for its keys
#
# Env: KEEL_LISTEN (sidecar address, default 127.0.0.1:8080), KEEL_PROFILE_BUILD
# (cargo profile, default release). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${KEEL_PROFILE_BUILD:-release}
listen=${KEEL_LISTEN:-127.0.0.1:8080}
config=${1:-}
run_dir=$(mktemp -d -t keel-gateway.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

flag=(--profile "$build")
[[ $build == debug ]] && flag=()
echo "building keel ($build)..." >&2
cargo build -q "${flag[@]}" -p keel-control-plane -p keel-data-plane -p keel-testkit --bins
bin="target/$build"

# Starts "$@" in the background and waits for its one-line ready message.
start() {
    local name=$1; shift
    "$@" >"$run_dir/$name.out" 2>"$run_dir/$name.log" &
    pids+=($!)
    for _ in $(seq 1 300); do
        if grep -q ' ready ' "$run_dir/$name.out" 2>/dev/null; then
            cat "$run_dir/$name.out" >&2
            return 0
        fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "$name failed to start:" >&2; cat "$run_dir/$name.log" >&2; exit 1
        fi
        sleep 0.1
    done
    echo "$name did not become ready" >&2; exit 1
}
addr() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$run_dir/$1.out"; }

if [[ -z $config ]]; then
    start fake-provider "$bin/keel-fake-provider" --listen 127.0.0.1:18080
    config=$run_dir/keel.toml
    sed "s#./keel-data#$PWD/keel-data#" examples/keel.toml >"$config"
    export KEEL_KEY_ALPHA_MAIN=${KEEL_KEY_ALPHA_MAIN:-demo-key-main}
    export KEEL_KEY_ALPHA_BACKUP=${KEEL_KEY_ALPHA_BACKUP:-demo-key-backup}
    echo "demo mode: fake provider on 127.0.0.1:18080, sessions in ./keel-data" >&2
fi

start control-plane "$bin/keel-control-plane" --config "$config"
start sidecar "$bin/keel-sidecar" --listen "$listen" \
    --control-plane "http://$(addr control-plane grpc)" \
    --default-model "${KEEL_DEFAULT_MODEL:-strong-1}"
cat >&2 <<MSG

keel is up: sidecar http://$(addr sidecar listen)  control plane grpc=$(addr control-plane grpc) http=$(addr control-plane http)
logs in $run_dir. Try:
  curl -s http://$(addr sidecar listen)/v1/chat/completions -H 'content-type: application/json' \\
    -H 'X-Conversation-ID: demo-1' -H 'X-Router-Profile: AGENT' \\
    -d '{"model":"auto","messages":[{"role":"user","content":"hello"}]}'
MSG
wait -n "${pids[@]}"
