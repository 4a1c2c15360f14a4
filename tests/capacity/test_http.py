"""Capacity over HTTP: the fields of /projections, the series of /metrics, the samples of the
dashboard's throughput plot; on a real uvicorn server."""

from __future__ import annotations

import re

from projectionist.http.operations import LagHistory
from projectionist_bench.rebuild import seed_shop_log
from tests.capacity.conftest import EVENTS, shop
from tests.lifecycle.support import InProcessServer

CAPACITY_FIELDS = {"storage_bytes", "rows", "rows_estimated", "replay_events_per_s",
                   "rebuild_eta_s"}


def series(metrics: str, name: str) -> dict[str, float]:
    """The samples of one metric, by their label text."""
    found = {}
    for line in metrics.splitlines():
        matched = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if matched:
            found[matched.group(1) or ""] = float(matched.group(2))
    return found


def test_projections_and_metrics_carry_the_capacity_figures(seeded: tuple[str, str]) -> None:
    write, read = seeded
    runtime = shop(write, read, roles="command,query")
    try:
        with InProcessServer(runtime) as server:
            listed = server.http.get("/projections")
            metrics = server.http.get("/metrics").text
    finally:
        runtime.stop()
    assert listed.status_code == 200, listed.text
    rows = {row["name"]: row for row in listed.json()}
    orders = rows["order_summary"]
    assert set(orders) >= CAPACITY_FIELDS
    assert orders["rows"] == EVENTS // 3 and orders["rows_estimated"] is False
    assert orders["storage_bytes"] > 0
    assert orders["replay_events_per_s"] > 0
    assert orders["rebuild_eta_s"] == round(EVENTS / orders["replay_events_per_s"], 3)

    labels = '{projection="order_summary",version="2"}'
    assert series(metrics, "projectionist_projection_storage_bytes")[labels] == (
        orders["storage_bytes"])
    assert series(metrics, "projectionist_projection_rebuild_eta_seconds")[labels] == (
        orders["rebuild_eta_s"])
    assert series(metrics, "projectionist_log_events") == {"": EVENTS}
    assert series(metrics, "projectionist_log_bytes")[""] > 0


def test_a_query_only_process_reports_no_log_series(seeded: tuple[str, str]) -> None:
    write, read = seeded
    runtime = shop(write, read, roles="query")
    try:
        with InProcessServer(runtime) as server:
            metrics = server.http.get("/metrics").text
    finally:
        runtime.stop()
    assert "projectionist_log_events" not in metrics  # it never opens the write store
    assert series(metrics, "projectionist_projection_storage_bytes")


def test_the_history_samples_the_events_each_build_applied_per_second(
    schema_store_urls: tuple[str, str],
) -> None:
    write, read = schema_store_urls
    runtime = shop(write, read)
    try:
        runtime.install()
        history = LagHistory(runtime)
        history.sample()
        seed_shop_log(runtime, 300, None)
        runtime.catch_up()
        history.sample()
    finally:
        runtime.stop()
    first, second = history.samples
    assert first["events_per_s"] == {}
    elapsed = second["t"] - first["t"]
    assert second["positions"]["order_summary"] == 300
    assert second["events_per_s"]["order_summary"] == round(300 / elapsed, 1)
