#!/usr/bin/env bash
# Every benchmark, RUNS times each (default 3), then the medians: the figures of
# docs/performance.md. Results go to bench/results/ (git-ignored).
#   bench/run.sh                 # SQLite and PostgreSQL, orders and http
#   BACKENDS=sqlite bench/run.sh # SQLite only
#   ORDERS=1000 RUNS=1 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
ORDERS=${ORDERS:-5000}
BACKENDS=${BACKENDS:-"sqlite postgresql"}
PG_URL=${PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/$stamp
mkdir -p "$out"

for backend in $BACKENDS; do
    url=()
    [ "$backend" = postgresql ] && url=(--url "$PG_URL")
    for run in $(seq 1 "$RUNS"); do
        projectionist bench orders --backend "$backend" "${url[@]}" --orders "$ORDERS" \
            --json "$out/orders-$backend-$run.json"
    done
    for run in $(seq 1 "$RUNS"); do
        projectionist bench http --backend "$backend" "${url[@]}" \
            --json "$out/http-$backend-$run.json"
    done
done

for backend in $BACKENDS; do
    python bench/median.py "$out"/orders-"$backend"-*.json
    python bench/median.py "$out"/http-"$backend"-*.json
done
