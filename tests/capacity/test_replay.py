"""Replay rates: measured by the runner, stored in the read store, read by any process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from projectionist import ProjectionStatus, Runtime
from projectionist.readstore.checkpoints import Checkpoints
from projectionist.readstore.replay import MIN_RUN_EVENTS, ReplayMeter, ReplayRates
from projectionist.stores import Store
from projectionist_bench.rebuild import seed_shop_log
from tests.capacity.conftest import BATCH, EVENTS, shop


def by_name(runtime: Runtime) -> dict[str, ProjectionStatus]:
    return {row.name: row for row in runtime.status() if row.active}


def test_a_rebuild_records_a_rate_that_another_process_reads(
    seeded: tuple[str, str],
) -> None:
    write, read = seeded
    projector = shop(write, read, roles="projector")
    try:
        build = projector.rebuild("order_summary")
        assert projector.projector is not None
        projector.projector.run_until_serving("order_summary", build.generation)
    finally:
        projector.stop()
    # A query-only process: it never ran a batch, and reads what the projector stored.
    watcher = shop(write, read, roles="query")
    try:
        row = by_name(watcher)["order_summary"]
    finally:
        watcher.stop()
    assert row.generation == build.generation
    assert row.replay_events_per_s is not None and row.replay_events_per_s > 0
    assert row.head == EVENTS
    assert row.rebuild_eta_s == round(EVENTS / row.replay_events_per_s, 3)
    body = row.to_json()
    assert body["replay_events_per_s"] == row.replay_events_per_s
    assert body["rebuild_eta_s"] == row.rebuild_eta_s
    assert "progress" not in body  # a serving build


def test_live_batches_record_no_rate(schema_store_urls: tuple[str, str]) -> None:
    write, read = schema_store_urls
    runtime = shop(write, read)
    try:
        runtime.install()
        seed_shop_log(runtime, 30, None)  # fewer than a run of replay
        runtime.catch_up()
        row = by_name(runtime)["order_summary"]
    finally:
        runtime.stop()
    assert row.position == 30
    assert row.replay_events_per_s is None and row.rebuild_eta_s is None


def test_a_rebuild_in_progress_shows_its_progress_and_time_left(
    seeded: tuple[str, str],
) -> None:
    write, read = seeded
    runtime = shop(write, read, roles="projector")
    try:
        build = runtime.rebuild("daily_sales")
        assert runtime.projector is not None
        runtime.projector.step_build("daily_sales", build.generation)  # one batch of several
        rows = {(row.name, row.generation): row for row in runtime.status()}
    finally:
        runtime.stop()
    new = rows[("daily_sales", build.generation)]
    serving = next(r for (name, _), r in rows.items() if name == "daily_sales" and r.active)
    assert not new.active and new.position == BATCH
    assert new.progress == round(BATCH / EVENTS, 4)
    # Its own rate is stored after a few seconds of replay; until then, the serving build's.
    assert new.replay_events_per_s == serving.replay_events_per_s
    assert new.replay_events_per_s is not None
    assert new.remaining_s == round((EVENTS - BATCH) / new.replay_events_per_s, 3)
    body = new.to_json()
    assert body["progress"] == new.progress and body["remaining_s"] == new.remaining_s


@pytest.fixture
def rates(backend: str, make_store_url: Callable[[str], str]) -> ReplayRates:
    store = Store(make_store_url(backend))
    Checkpoints(store).install()
    return ReplayRates(store)


def test_a_run_of_batches_is_measured_from_its_first_batch_to_the_one_that_caught_up(
    rates: ReplayRates,
) -> None:
    checkpoints = Checkpoints(rates.store)
    build = checkpoints.serving("things", 1, lambda g: [f"things_g{g}"])
    meter = ReplayMeter(rates, "things", build.generation, every_s=3600.0)
    meter.batch(5, 0.5, caught_up=True)  # live traffic: not a replay
    assert stored(rates) == {}
    meter.batch(1000, 0.5, caught_up=False)
    assert stored(rates) == {}  # stored every hour here, or when the run ends
    meter.batch(500, 0.25, caught_up=True)
    assert stored(rates) == {("things", build.generation): (1500, 0.75, 2000.0)}
    meter.batch(MIN_RUN_EVENTS, 1.0, caught_up=True)  # a new run, as large as a replay
    assert stored(rates) == {("things", build.generation): (MIN_RUN_EVENTS, 1.0, 100.0)}
    rates.store.dispose()


def test_a_long_run_stores_its_rate_as_it_goes(rates: ReplayRates) -> None:
    build = Checkpoints(rates.store).serving("things", 1, lambda g: [f"things_g{g}"])
    meter = ReplayMeter(rates, "things", build.generation, every_s=0.0)
    meter.batch(1000, 2.0, caught_up=False)
    assert stored(rates) == {("things", build.generation): (1000, 2.0, 500.0)}
    rates.store.dispose()


def test_the_rates_of_dropped_builds_are_forgotten(rates: ReplayRates) -> None:
    checkpoints = Checkpoints(rates.store)
    old = checkpoints.serving("things", 1, lambda g: [f"things_g{g}"])
    rates.record("things", old.generation, 1000, 1.0)
    new = checkpoints.start_build("things", 1, lambda g: [f"things_g{g}"])
    checkpoints.swap("things", new.generation)
    rates.record("things", new.generation, 2000, 1.0)
    assert stored(rates) == {("things", new.generation): (2000, 1.0, 2000.0)}
    rates.store.dispose()


def stored(rates: ReplayRates) -> dict[tuple[str, int], tuple[int, float, float]]:
    with rates.store.read() as connection:
        found = rates.all(connection)
    return {key: (r.events, r.seconds, r.events_per_s) for key, r in found.items()}
