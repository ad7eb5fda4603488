#!/usr/bin/env bash
# The compatibility suite: the official OpenAI and Anthropic Python SDKs, a
# Python gRPC client generated from proto/, and real agent harnesses (Claude
# Code, the OpenAI Agents SDK) against the real control plane, sidecar and
# fake providers. Needs the binaries in target/debug (run
# `cargo build --workspace --bins` first). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$root/scripts/setup-python.sh"
# The real Claude Code CLI for test_harness_claude_code.py (pinned, from npm);
# KEEL_SKIP_CLAUDE_CODE=1 leaves it out (those tests are then skipped).
if [[ -z "${KEEL_CLAUDE_BIN:-}" && "${KEEL_SKIP_CLAUDE_CODE:-}" != 1 ]]; then
    KEEL_CLAUDE_BIN="$("$root/scripts/setup-claude-code.sh")"
    export KEEL_CLAUDE_BIN
fi
cd "$root/tests/compat"
export PYTHONDONTWRITEBYTECODE=1
exec "$root/.venv/bin/python" -m pytest -q "$@"
