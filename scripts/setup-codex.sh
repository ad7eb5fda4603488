#!/usr/bin/env bash
# Installs the pinned OpenAI Codex CLI (npm `@openai/codex`, which ships its native
# binary inside the npm packages: nothing is downloaded at run time) into
# .tools/codex at the repo root. Idempotent and fast when already set up: a stamp
# holds the pinned version, and while it matches npm is not run at all. Prints the
# path of the `codex` launcher.
set -euo pipefail

# The Codex CLI version the harness test runs; bump it here.
CODEX_VERSION="0.171.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.tools/codex"
stamp="$dir/.keel-codex-version"
bin="$dir/node_modules/.bin/codex"

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$CODEX_VERSION" ]]; then
    echo "$bin"
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "setup-codex: npm not found (install Node.js 18+)" >&2
    exit 1
fi
echo "setup-codex: installing @openai/codex@$CODEX_VERSION into .tools/codex" >&2
rm -rf "$dir"
mkdir -p "$dir"
npm install --silent --no-audit --no-fund --no-save --prefix "$dir" \
    "@openai/codex@$CODEX_VERSION" >&2
"$bin" --version >&2
# Written last: an interrupted install is redone on the next run.
echo "$CODEX_VERSION" >"$stamp"
echo "$bin"
