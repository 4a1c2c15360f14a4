#!/usr/bin/env bash
# Every benchmark, RUNS times each (default 3), then the medians: the figures of
# docs/performance.md. Results go to bench/results/ (git-ignored).
#   bench/run.sh                 # SQLite and PostgreSQL, orders and http
#   bench/run.sh --peer          # the orders workload only, each round the peer's script and
#                                # then projectionist, back to back; then the ratio table
#   BACKENDS=sqlite bench/run.sh # SQLite only
#   ORDERS=1000 RUNS=1 bench/run.sh
# The peer runs with PEER_PYTHON (default peer/bin/python, a venv with eventsourcing==9.5.6,
# psycopg[binary] and psycopg-pool; see the peer's README) against PostgreSQL as postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
ORDERS=${ORDERS:-5000}
BACKENDS=${BACKENDS:-"sqlite postgresql"}
PG_URL=${PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
PEER_PYTHON=${PEER_PYTHON:-peer/bin/python}
PEER_SCRIPT=${PEER_SCRIPT:-../shared/peers/eventsourcing_orders.py}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/$stamp
mkdir -p "$out"

orders() {  # backend round
    local url=()
    [ "$1" = postgresql ] && url=(--url "$PG_URL" --w8)
    [ "$1" = sqlite ] && url=(--w8)
    projectionist bench orders --backend "$1" "${url[@]}" --orders "$ORDERS" \
        --json "$out/orders-$1-$2.json"
}

if [ "${1:-}" = "--peer" ]; then
    peer_backend=both
    [ "$BACKENDS" = sqlite ] && peer_backend=sqlite
    [ "$BACKENDS" = postgresql ] && peer_backend=postgres
    for run in $(seq 1 "$RUNS"); do
        "$PEER_PYTHON" "$PEER_SCRIPT" --backend "$peer_backend" --orders "$ORDERS" \
            --pg-user postgres --pg-password '' --pg-db postgres --json "$out/peer-$run.json"
        for backend in $BACKENDS; do
            orders "$backend" "$run"
        done
        # The same statements on bare sqlite3 in the same round: how far above the peer
        # anything on SQLite can go on this machine.
        case " $BACKENDS " in *" sqlite "*)
            python bench/floor.py --orders "$ORDERS" --json "$out/floor-$run.json" ;;
        esac
    done
    python bench/compare.py "$out"
    exit 0
fi

for backend in $BACKENDS; do
    url=()
    [ "$backend" = postgresql ] && url=(--url "$PG_URL")
    for run in $(seq 1 "$RUNS"); do
        orders "$backend" "$run"
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
