#!/usr/bin/env bash
# Installs redis-server (Debian's package) for the tests of the Redis session
# store, when it is missing. Idempotent: nothing is done while
# `redis-server` is on the PATH (or REDIS_SERVER names one).
set -euo pipefail

if [[ -n "${REDIS_SERVER:-}" && -x "${REDIS_SERVER}" ]] || command -v redis-server >/dev/null; then
    exit 0
fi

sudo=""
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "setup-redis: redis-server is missing and neither root nor sudo is available;" \
            "install Debian's redis-server package" >&2
        exit 1
    fi
    sudo="sudo"
fi
echo "setup-redis: installing Debian's redis-server" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system service on 6379; the tests run their own
# servers on ephemeral ports and do not need it.
command -v redis-server >/dev/null
