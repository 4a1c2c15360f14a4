#!/usr/bin/env bash
# The test command: what the tests need beyond Python packages (Debian's Chromium, for the
# dashboard tests), the package with its dev extras, then pytest (arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y --no-install-recommends chromium \
        || { "${sudo[@]}" apt-get update \
             && "${sudo[@]}" apt-get install -y --no-install-recommends chromium; }
fi

pip install -e '.[dev]'
exec pytest "$@"
