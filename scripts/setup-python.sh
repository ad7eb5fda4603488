#!/usr/bin/env bash
# Creates .venv at the repo root with the pinned packages of
# tests/compat/requirements.txt. Idempotent and fast when already set up: a
# stamp holds the hash of the requirements and of the Python that made the
# venv, and while it matches, pip is not run at all. On a mismatch the venv is
# made afresh, so nothing left from older pins lingers.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
requirements="$root/tests/compat/requirements.txt"
stamp="$venv/.keel-requirements.sha256"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null; then
    echo "setup-python: $python not found" >&2
    exit 1
fi

want="$( (cat "$requirements"; "$python" -c 'import sys; print(sys.executable, sys.version)') \
    | sha256sum | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

echo "setup-python: installing tests/compat/requirements.txt into .venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$requirements"
# Written last: an interrupted install is redone on the next run.
echo "$want" >"$stamp"
