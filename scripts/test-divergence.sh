#!/usr/bin/env bash
# Replays the generated divergence corpus and the development set of real agent
# conversations (../shared/divergence-dev beside the checkout, KEEL_DIVERGENCE_DEV) through the real sidecar fingerprinting and
# session codec; prints recall / false positives / delay per set, action format and
# source, and fails on any false positive on a healthy conversation, a median delay
# above 2 assistant turns, or recall below the floor, per set and per action format.
#
# The floor is the issue's target, 90 % recall, per set and per action format (text and
# tool calls are checked separately); the development set reaches text 13/14, tool calls
# 7/7 (README, "Loop detection", says which loop is missed and why).
# The generated corpus is also checked against its scripts (keel-divergence-tools tests).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p keel-divergence-tools --bin keel-divergence-corpus -- --check
cargo run -q -p keel-divergence-tools --bin keel-divergence-eval -- --min-recall 0.9 "$@"
