"""Bytes on disk and rows of a build's tables, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from projectionist.readstore import storage
from projectionist.readstore.storage import Cached, Footprint, measure_tables
from projectionist.stores import Store
from projectionist_bench.rebuild import seed_shop_log
from tests.capacity.conftest import EVENTS, shop
from tests.helpers import wait_for

notes = sa.Table(
    "capacity_notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("ix_capacity_notes_text", "text"),
)


def add_notes(store: Store, first: int, count: int) -> None:
    with store.write() as connection:
        connection.execute(
            sa.insert(notes), [{"id": i, "text": f"note {i} " + "x" * 200} for i in
                               range(first, first + count)])


def footprint(store: Store) -> Footprint:
    with store.read() as connection:
        return measure_tables(connection, [notes.name])


@pytest.fixture
def store(backend: str, make_store_url: Callable[[str], str]) -> Store:
    made = Store(make_store_url(backend))
    with made.schema() as connection:
        notes.create(connection)
    return made


def test_storage_bytes_grow_when_rows_are_added(store: Store) -> None:
    add_notes(store, 0, 10)
    small = footprint(store)
    add_notes(store, 10, 3000)
    large = footprint(store)
    store.dispose()
    assert small == Footprint(small.storage_bytes, 10, False)
    assert small.storage_bytes > 0
    assert large.rows == 3010 and not large.rows_estimated
    # 3,000 rows of 200 bytes and more, in the table and again in its index.
    assert large.storage_bytes > small.storage_bytes + 2 * 3000 * 200


def test_rows_past_the_bound_are_estimated(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_notes(store, 1, 50)
    if not store.is_sqlite:
        with store.write() as connection:
            connection.exec_driver_sql(f"ANALYZE {notes.name}")  # what autovacuum does
    monkeypatch.setattr(storage, "COUNT_BOUND", 10)
    monkeypatch.setattr(storage, "POSTGRES_COUNT_BOUND", 10)
    measured = footprint(store)
    store.dispose()
    assert measured.rows_estimated
    assert measured.rows == 50  # the highest rowid on SQLite, reltuples on PostgreSQL


def test_a_table_that_does_not_exist_counts_as_empty(store: Store) -> None:
    with store.read() as connection:
        measured = measure_tables(connection, ["capacity_nothing_here"])
    store.dispose()
    assert measured == Footprint(0, 0, False)


def test_sqlite_without_dbstat_shares_out_the_pages_in_use(
    make_store_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite = Store(make_store_url("sqlite"))
    with sqlite.schema() as connection:
        notes.create(connection)
    add_notes(sqlite, 0, 2000)
    with sqlite.read() as connection:
        assert storage.has_dbstat(connection)  # this Python's SQLite has it
        exact = measure_tables(connection, [notes.name])
        monkeypatch.setattr(storage, "has_dbstat", lambda _connection: False)
        shared = measure_tables(connection, [notes.name])
        page_size = int(connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)
        pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    sqlite.dispose()
    # The only table with rows holds every page in use; dbstat counts it more exactly.
    assert 0 < shared.storage_bytes <= pages * page_size
    assert shared.storage_bytes >= exact.storage_bytes // 2


def test_a_build_in_status_grows_with_its_read_model(
    schema_store_urls: tuple[str, str],
) -> None:
    write, read = schema_store_urls
    runtime = shop(write, read)
    try:
        runtime.install()
        seed_shop_log(runtime, 30, None)
        runtime.catch_up()
        before = {row.name: row for row in runtime.status()}["order_summary"]
        seed_shop_log(runtime, EVENTS, None, first_order=10)
        runtime.catch_up()
        runtime.statuses.footprints.refresh()  # not the figures of a few seconds ago
        after = {row.name: row for row in runtime.status()}["order_summary"]
    finally:
        runtime.stop()
    assert before.rows == 10 and after.rows == 10 + EVENTS // 3
    assert before.storage_bytes is not None and after.storage_bytes is not None
    assert after.storage_bytes > before.storage_bytes


def test_cached_figures_are_served_stale_while_a_thread_measures_anew() -> None:
    measured: list[int] = []

    def measure() -> int:
        measured.append(len(measured))
        return len(measured)

    cached = Cached(measure, ttl_s=0.0)
    assert cached.get() == 1  # nothing known: measured in the caller's thread
    assert cached.get() == 1  # stale: the last figures at once, while a thread measures
    wait_for(lambda: cached.get() >= 2, what="a measurement in the background")


def test_rows_of_a_table_filled_moments_ago_are_estimated_near_their_count(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_notes(store, 1, 3000)  # no ANALYZE: PostgreSQL may have no statistics of it yet
    monkeypatch.setattr(storage, "COUNT_BOUND", 500)
    monkeypatch.setattr(storage, "POSTGRES_COUNT_BOUND", 500)
    measured = footprint(store)
    store.dispose()
    assert measured.rows_estimated
    assert 2700 <= measured.rows <= 3300


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_slow_measurement_is_taken_again_only_after_ten_times_as_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(storage, "time", clock)
    taken: list[float] = []

    def measure() -> int:
        taken.append(clock.now)
        clock.now += 1.0  # a measurement of one second
        return len(taken)

    cached = Cached(measure, ttl_s=5.0)
    assert cached.get() == 1
    clock.now += 9.0  # past the TTL, but not ten times the measurement
    assert cached.get() == 1
    assert len(taken) == 1  # no measurement started
    clock.now += 1.5
    assert cached.get() == 1  # the last figures, while a thread measures anew
    wait_for(lambda: len(taken) == 2, what="a measurement in the background")
