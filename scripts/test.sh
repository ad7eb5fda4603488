#!/usr/bin/env bash
# Runs every test: Rust unit and end-to-end tests (the e2e tests start the
# real binaries, so they are built first), then the compatibility suite with
# the official OpenAI/Anthropic SDKs and a generated Python gRPC client.
# The session store's contract tests and tests/replicas.rs need redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Redis store's tests run a real redis-server (Debian's package).
scripts/setup-redis.sh
cargo build --workspace --bins
cargo test --workspace
if [[ -x scripts/test-divergence.sh ]]; then
    scripts/test-divergence.sh
fi
if [[ -x scripts/test-codex.sh ]]; then
    scripts/test-codex.sh
fi
if [[ -x scripts/test-compat.sh ]]; then
    scripts/test-compat.sh
fi
if [[ -x scripts/test-ui.sh ]]; then
    scripts/test-ui.sh
fi
