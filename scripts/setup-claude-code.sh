#!/usr/bin/env bash
# Installs Claude Code (the real CLI, pinned) from npm into .cache/claude-code
# for the agent-harness tests, and prints the path of its `claude` binary.
# Idempotent and fast when already set up: a stamp holds the pinned version
# and the platform, and while it matches, npm is not run at all.
#
# Since 2.1 the npm package ships the CLI as a native binary in a
# per-platform optional dependency (@anthropic-ai/claude-code-linux-x64, ...)
# that its postinstall links into place; both come from the npm registry, no
# other download. The package asks for node >= 22 but the native binary does
# not run on node, so npm's engine warning on older nodes is harmless.
set -euo pipefail

version="2.1.332"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.cache/claude-code"
stamp="$prefix/.keel-stamp"
want="$version $(uname -s)-$(uname -m)"

bin() {
    local main="$prefix/node_modules/.bin/claude"
    if "$main" --version >/dev/null 2>&1; then
        echo "$main"
        return
    fi
    # The postinstall did not link the binary (scripts disabled): use the
    # platform package's own copy.
    local native
    native="$(ls "$prefix"/node_modules/@anthropic-ai/claude-code-*/claude 2>/dev/null | head -n1)"
    [[ -n "$native" ]] && "$native" --version >/dev/null 2>&1 && echo "$native"
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && path="$(bin)"; then
    echo "$path"
    exit 0
fi

if ! command -v npm >/dev/null; then
    echo "setup-claude-code: npm not found" >&2
    exit 1
fi
echo "setup-claude-code: installing @anthropic-ai/claude-code@$version into .cache/claude-code" >&2
rm -rf "$prefix"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$version" >&2
path="$(bin)" || {
    echo "setup-claude-code: the installed claude does not run" >&2
    exit 1
}
# Written last: an interrupted install is redone on the next run.
echo "$want" >"$stamp"
echo "$path"
