#!/usr/bin/env bash
# Installs what the console's browser test needs: Debian's chromium (apt) and
# Playwright for Python in .venv-ui (from tests/ui/requirements.txt).
# Playwright drives /usr/bin/chromium; `playwright install` (which downloads
# a browser build of its own) is never run. Idempotent and fast when set up:
# apt is not called while chromium is there, and pip not while the stamp
# (hash of the requirements and of the Python) matches.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-ui"
requirements="$root/tests/ui/requirements.txt"
stamp="$venv/.keel-requirements.sha256"
python="${PYTHON:-python3}"

if ! command -v chromium >/dev/null; then
    echo "setup-browser: installing chromium (apt)" >&2
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core >/dev/null
fi

want="$( (cat "$requirements" "$root/tests/compat/requirements.txt"; "$python" -c 'import sys; print(sys.executable, sys.version)') \
    | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
echo "setup-browser: installing tests/ui/requirements.txt into .venv-ui" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$requirements"
# Written last: an interrupted install is redone on the next run.
echo "$want" >"$stamp"
