#!/usr/bin/env bash
# The console in a real browser: Debian's chromium driven by Playwright for
# Python (installed by scripts/setup-browser.sh) against the real binaries.
# Needs them in target/debug (run `cargo build --workspace --bins` first).
# Extra arguments go to pytest; KEEL_SCREENSHOTS=DIR saves each page as PNG.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$root/scripts/setup-browser.sh"
cd "$root/tests/ui"
export PYTHONDONTWRITEBYTECODE=1
exec "$root/.venv-ui/bin/python" -m pytest -q "$@"
