#!/usr/bin/env bash
# Runs the real Codex CLI (`codex exec`) through a real control plane and
# sidecar against scripted fake providers of each kind (OpenAI Chat Completions
# and Anthropic Messages by translation, a native Responses provider): a
# multi-step, tool-using task. Needs the binaries in target/debug (run
# `cargo build --workspace --bins` first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

KEEL_CODEX_BIN="$("$root/scripts/setup-codex.sh")"
export KEEL_CODEX_BIN
cd "$root"
exec cargo test --test codex_cli -- --ignored --test-threads 1 "$@"
