#!/usr/bin/env bash
# Replays the labelled divergence corpus through the detector; fails on any
# false positive on a healthy conversation or recall below the threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p keel-control-plane --bin keel-divergence-eval
