#!/usr/bin/env bash
# The code checks CI holds: ruff (lint and format), mypy --strict, and the size of modules and
# functions in src/. Needs the dev extras (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

ruff check src bench examples tests
ruff format --check src
mypy
python scripts/check_sizes.py src
