#!/usr/bin/env bash
# The compatibility suite: the official OpenAI and Anthropic Python SDKs and a
# Python gRPC client generated from proto/ against the real control plane,
# sidecar and fake providers. Needs the binaries in target/debug (run
# `cargo build --workspace --bins` first). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$root/scripts/setup-python.sh"
cd "$root/tests/compat"
export PYTHONDONTWRITEBYTECODE=1
exec "$root/.venv/bin/python" -m pytest -q "$@"
