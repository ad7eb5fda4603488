#!/usr/bin/env bash
# Replays the generated divergence corpus and the development set of real agent
# conversations through the real sidecar fingerprinting and session codec; prints
# recall / false positives / delay per set and action format and fails below the
# targets (recall >= 90%, no false positive, median delay <= 2 assistant turns).
# The generated corpus must also match its scripts (a drift check).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p keel-divergence-tools --bin keel-divergence-eval -- "$@"
