"""RowWrites: puts, updates and increments of SQL views, folded per row, written at flush."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from projectionist.driver import Compiled
from projectionist.errors import ConfigurationError
from projectionist.readstore.arrays import Arrays
from projectionist.readstore.rows import RowWrites, upsert
from projectionist.readstore.tables import ViewTable
from projectionist.stores import Store

COUNTS = ViewTable("catalogue", "counts", (
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False, default=0),
    sa.Column("total", sa.Float, nullable=False, default=0.0),
    sa.Column("label", sa.String(64), nullable=True),
), (("label",),))
PAIRS = ViewTable("catalogue", "pairs", (
    sa.Column("a", sa.String(16), primary_key=True),
    sa.Column("b", sa.Integer, primary_key=True),
    sa.Column("hits", sa.Integer, nullable=False, default=0),
), ())


@pytest.fixture
def counts(store: Store) -> sa.Table:
    table = COUNTS.physical(1)
    with store.schema() as connection:
        table.create(connection)
        PAIRS.physical(1).create(connection)
    return table


@pytest.fixture
def pairs(counts: sa.Table) -> sa.Table:
    return PAIRS.physical(1)


def created(store: Store, view: ViewTable) -> sa.Table:
    """Build 1 of the view's table, created in the store."""
    table = view.physical(1)
    with store.schema() as connection:
        table.create(connection)
    return table


def rows_of(store: Store, table: sa.Table) -> list[dict[str, Any]]:
    with store.read() as connection:
        result = connection.execute(sa.select(table).order_by(*table.primary_key.columns))
        return [dict(row._mapping) for row in result]


def flush(store: Store, writes: RowWrites) -> None:
    with store.write() as connection:
        writes.flush(connection)


def seed(store: Store, table: sa.Table, *rows: dict[str, Any]) -> None:
    with store.write() as connection:
        connection.execute(sa.insert(table), list(rows))


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements run in the block, through SQLAlchemy, compiled once and run on the
    driver's cursor (an executemany counts once), or taking the rows as arrays."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split()[0].upper())

    run_many = Compiled.run_many

    def run_many_recorded(compiled: Compiled, *args: Any, **kwargs: Any) -> None:
        seen.append(compiled.sql.split()[0].upper())
        run_many(compiled, *args, **kwargs)

    by_arrays = Arrays.run

    def by_arrays_recorded(statement: Arrays, *args: Any) -> bool:
        ran = by_arrays(statement, *args)
        if ran:
            seen.append(statement.sql.qmark.split()[0].upper())
        return ran

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        with (mock.patch.object(Compiled, "run_many", run_many_recorded),
              mock.patch.object(Arrays, "run", by_arrays_recorded)):
            yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)


def test_writes_reach_the_table_only_at_flush(store: Store, counts: sa.Table) -> None:
    writes = RowWrites()
    writes.put(counts, {"stream": "s", "count": 1, "total": 1.0})
    writes.increment(counts, {"stream": "t"}, {"count": 1})
    assert rows_of(store, counts) == []
    flush(store, writes)
    assert [row["stream"] for row in rows_of(store, counts)] == ["s", "t"]


def test_flush_forgets_what_it_wrote(store: Store, counts: sa.Table) -> None:
    writes = RowWrites()
    writes.increment(counts, {"stream": "s"}, {"count": 1})
    flush(store, writes)
    flush(store, writes)
    assert rows_of(store, counts)[0]["count"] == 1


def test_put_inserts_and_replaces_whole_rows(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 5, "total": 2.5, "label": "old"})
    writes = RowWrites()
    writes.put(counts, {"stream": "s", "count": 1, "total": 0.5, "label": None})
    writes.put(counts, {"stream": "t", "count": 2, "total": 1.5, "label": "new"})
    flush(store, writes)
    assert rows_of(store, counts) == [
        {"stream": "s", "count": 1, "total": 0.5, "label": None},
        {"stream": "t", "count": 2, "total": 1.5, "label": "new"},
    ]


def test_the_last_put_of_a_row_wins(store: Store, counts: sa.Table) -> None:
    writes = RowWrites()
    writes.put(counts, {"stream": "s", "count": 1, "total": 0.0})
    writes.put(counts, {"stream": "s", "count": 9, "total": 0.0, "label": "last"})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 9, "total": 0.0, "label": "last"}]


def test_update_sets_columns_of_an_existing_row_only(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 5, "total": 2.5, "label": "old"})
    writes = RowWrites()
    writes.update(counts, {"stream": "s"}, {"label": "new"})
    writes.update(counts, {"stream": "missing"}, {"label": "none"})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 5, "total": 2.5, "label": "new"}]


def test_increment_adds_to_an_existing_row(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 5, "total": 2.5, "label": "kept"})
    writes = RowWrites()
    writes.increment(counts, {"stream": "s"}, {"count": 2, "total": 0.25})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 7, "total": 2.75, "label": "kept"}]


def test_increment_creates_a_missing_row_with_defaults_for_other_columns(
    store: Store, counts: sa.Table,
) -> None:
    writes = RowWrites()
    writes.increment(counts, {"stream": "s"}, {"count": 3})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 3, "total": 0.0, "label": None}]


def test_increments_of_one_row_fold_into_one(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 1, "total": 0.0})
    writes = RowWrites()
    for _ in range(5):
        writes.increment(counts, {"stream": "s"}, {"count": 1})
        writes.increment(counts, {"stream": "new"}, {"count": 2})
    flush(store, writes)
    assert [(row["stream"], row["count"]) for row in rows_of(store, counts)] == [
        ("new", 10), ("s", 6)]


def test_increment_after_put_adds_to_the_put_value(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 100, "total": 0.0})
    writes = RowWrites()
    writes.put(counts, {"stream": "s", "count": 1, "total": 1.0, "label": "put"})
    writes.increment(counts, {"stream": "s"}, {"count": 2, "total": 0.5})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 3, "total": 1.5, "label": "put"}]


def test_update_after_increment_sets_the_column(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 100, "total": 0.0})
    writes = RowWrites()
    writes.increment(counts, {"stream": "s"}, {"count": 2, "total": 1.0})
    writes.update(counts, {"stream": "s"}, {"count": 7})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 7, "total": 1.0, "label": None}]


def test_increment_after_update_adds_to_the_set_value(store: Store, counts: sa.Table) -> None:
    seed(store, counts, {"stream": "s", "count": 100, "total": 0.0})
    writes = RowWrites()
    writes.update(counts, {"stream": "s"}, {"count": 7, "label": "set"})
    writes.increment(counts, {"stream": "s"}, {"count": 2})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 9, "total": 0.0, "label": "set"}]


def test_update_after_put_changes_the_put_row(store: Store, counts: sa.Table) -> None:
    writes = RowWrites()
    writes.put(counts, {"stream": "s", "count": 1, "total": 1.0})
    writes.update(counts, {"stream": "s"}, {"label": "later"})
    flush(store, writes)
    assert rows_of(store, counts) == [{"stream": "s", "count": 1, "total": 1.0, "label": "later"}]


def test_a_composite_primary_key_is_incremented_and_created(
    store: Store, pairs: sa.Table,
) -> None:
    seed(store, pairs, {"a": "x", "b": 1, "hits": 10})
    writes = RowWrites()
    for a, b in [("x", 1), ("x", 2), ("x", 1), ("y", 1)]:
        writes.increment(pairs, {"a": a, "b": b}, {"hits": 1})
    flush(store, writes)
    assert rows_of(store, pairs) == [
        {"a": "x", "b": 1, "hits": 12}, {"a": "x", "b": 2, "hits": 1},
        {"a": "y", "b": 1, "hits": 1}]


def test_a_batch_writes_each_kind_with_one_statement_per_table(
    store: Store, counts: sa.Table,
) -> None:
    seed(store, counts, *({"stream": f"s{n}", "count": 0, "total": 0.0} for n in range(20)))
    writes = RowWrites()
    for n in range(200):
        writes.increment(counts, {"stream": f"s{n % 20}"}, {"count": 1})
    for n in range(20):
        writes.put(counts, {"stream": f"p{n}", "count": n, "total": 0.0})
    with statements(store) as seen:
        flush(store, writes)
    # The puts' upsert, then the increments' upsert (every other column has a default, so
    # a missing row can be created by the same statement): no read of which rows exist.
    assert seen == ["INSERT", "INSERT"]
    assert sum(row["count"] for row in rows_of(store, counts)) == 200 + sum(range(20))


TALLIES = ViewTable("catalogue", "tallies", (
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("seen", sa.Integer, nullable=False),
    sa.Column("spent", sa.Integer, nullable=False),
), ())


def test_an_increment_short_of_a_new_rows_columns_reads_which_rows_exist(
    store: Store, counts: sa.Table,
) -> None:
    tallies = created(store, TALLIES)
    seed(store, tallies, {"key": "old", "seen": 1, "spent": 5},
         {"key": "older", "seen": 2, "spent": 0})
    writes = RowWrites()
    writes.increment(tallies, {"key": "old"}, {"spent": 10})  # no "seen": cannot create
    writes.increment(tallies, {"key": "older"}, {"spent": 1})
    writes.increment(tallies, {"key": "new"}, {"seen": 1, "spent": 0})  # can
    with statements(store) as seen:
        flush(store, writes)
    assert seen == ["INSERT", "SELECT", "UPDATE"]
    assert rows_of(store, tallies) == [
        {"key": "new", "seen": 1, "spent": 0}, {"key": "old", "seen": 1, "spent": 15},
        {"key": "older", "seen": 2, "spent": 1}]
    # The same increment of a missing row breaks the column's NOT NULL: the batch fails.
    writes.increment(tallies, {"key": "missing"}, {"spent": 10})
    with pytest.raises(sa.exc.IntegrityError):
        flush(store, writes)


def test_a_write_without_the_primary_key_is_refused(counts: sa.Table) -> None:
    writes = RowWrites()
    with pytest.raises(ConfigurationError, match=r"primary key \(stream\)"):
        writes.put(counts, {"count": 1})
    with pytest.raises(ConfigurationError, match="stream"):
        writes.increment(counts, {"label": "x"}, {"count": 1})


def test_a_write_of_an_unknown_column_is_refused(counts: sa.Table) -> None:
    writes = RowWrites()
    with pytest.raises(ConfigurationError, match="no column colour"):
        writes.update(counts, {"stream": "s"}, {"colour": "red"})
    with pytest.raises(ConfigurationError, match="no column hits"):
        writes.increment(counts, {"stream": "s"}, {"hits": 1})


def test_upsert_inserts_and_replaces_rows_of_different_shapes(
    store: Store, counts: sa.Table,
) -> None:
    seed(store, counts, {"stream": "s", "count": 5, "total": 2.5, "label": "old"},
         {"stream": "k", "count": 1, "total": 1.0, "label": "keep"})
    with store.write() as connection:
        upsert(connection, counts, [
            {"stream": "s", "count": 6, "total": 3.0},
            {"stream": "t", "count": 1, "total": 0.0, "label": "new"},
            {"stream": "k"},
        ])
    assert rows_of(store, counts) == [
        {"stream": "k", "count": 1, "total": 1.0, "label": "keep"},
        {"stream": "s", "count": 6, "total": 3.0, "label": "old"},
        {"stream": "t", "count": 1, "total": 0.0, "label": "new"},
    ]


STOCK = ViewTable("catalogue", "stock", (
    sa.Column("sku", sa.String(16), primary_key=True),
    sa.Column("left", sa.Integer, sa.CheckConstraint("\"left\" >= 0"), nullable=False,
              default=0),
), ())


def test_an_increment_of_a_table_with_a_check_acts_as_an_update_of_the_row(
    store: Store, counts: sa.Table,
) -> None:
    """An upsert would check the row it proposes (left = -1) before finding the conflict."""
    stock = created(store, STOCK)
    seed(store, stock, {"sku": "x", "left": 5})
    writes = RowWrites()
    writes.increment(stock, {"sku": "x"}, {"left": -1})
    writes.increment(stock, {"sku": "new"}, {"left": 2})
    flush(store, writes)
    assert rows_of(store, stock) == [{"sku": "new", "left": 2}, {"sku": "x", "left": 4}]


def test_an_increment_by_nothing_creates_a_missing_row_and_leaves_one_that_exists(
    store: Store, counts: sa.Table,
) -> None:
    seed(store, counts, {"stream": "s", "count": 3, "total": 1.5})
    writes = RowWrites()
    writes.increment(counts, {"stream": "s"}, {})
    writes.increment(counts, {"stream": "new"}, {})
    flush(store, writes)
    assert rows_of(store, counts) == [
        {"stream": "new", "count": 0, "total": 0.0, "label": None},
        {"stream": "s", "count": 3, "total": 1.5, "label": None}]


def test_one_row_short_of_a_new_rows_columns_is_updated_or_inserted_by_one_statement(
    store: Store, counts: sa.Table,
) -> None:
    """On PostgreSQL, a batch's only such row costs no read of whether it exists: one
    statement updates it, or inserts it where the update found none."""
    tallies = created(store, TALLIES)
    seed(store, tallies, {"key": "old", "seen": 1, "spent": 5})
    writes = RowWrites()
    writes.increment(tallies, {"key": "old"}, {"spent": 10})  # no "seen": cannot create
    with statements(store) as seen:
        flush(store, writes)
    assert seen == (["WITH"] if store.dialect == "postgresql" else ["SELECT", "UPDATE"])
    writes.update(tallies, {"key": "old"}, {"seen": 3})
    writes.increment(tallies, {"key": "old"}, {"spent": 1})
    flush(store, writes)
    assert rows_of(store, tallies) == [{"key": "old", "seen": 3, "spent": 16}]
    # A missing row: the insert breaks the NOT NULL of the column left out, as a read first
    # and an insert would.
    writes.increment(tallies, {"key": "missing"}, {"spent": 10})
    with pytest.raises(sa.exc.IntegrityError):
        flush(store, writes)
    writes = RowWrites()
    writes.increment(tallies, {"key": "new"}, {"seen": 2})
    writes.update(tallies, {"key": "new"}, {"spent": 7})
    flush(store, writes)
    assert rows_of(store, tallies) == [
        {"key": "new", "seen": 2, "spent": 7}, {"key": "old", "seen": 3, "spent": 16}]


def test_one_row_of_a_table_with_a_check_is_updated_or_inserted_under_its_check(
    store: Store, counts: sa.Table,
) -> None:
    stock = created(store, STOCK)
    seed(store, stock, {"sku": "x", "left": 5})
    for sku, delta in (("x", -1), ("new", 2)):
        writes = RowWrites()
        writes.increment(stock, {"sku": sku}, {"left": delta})
        flush(store, writes)
    assert rows_of(store, stock) == [{"sku": "new", "left": 2}, {"sku": "x", "left": 4}]
    writes = RowWrites()
    writes.increment(stock, {"sku": "x"}, {"left": -5})  # the updated row breaks the check
    with pytest.raises(sa.exc.IntegrityError):
        flush(store, writes)
    writes = RowWrites()
    writes.increment(stock, {"sku": "other"}, {"left": -1})  # so does the inserted one
    with pytest.raises(sa.exc.IntegrityError):
        flush(store, writes)
    assert rows_of(store, stock) == [{"sku": "new", "left": 2}, {"sku": "x", "left": 4}]


PROFILES = ViewTable("catalogue", "profiles", (
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("visits", sa.Integer, nullable=False),
    sa.Column("settings", sa.JSON, nullable=True),
    sa.Column("score", sa.Integer, sa.CheckConstraint("score >= 0"), nullable=False,
              server_default="0"),
), ())


def test_one_row_updated_or_inserted_sends_values_as_their_column_types_do(
    store: Store, counts: sa.Table,
) -> None:
    profiles = created(store, PROFILES)
    seed(store, profiles, {"key": "a", "visits": 1, "settings": {"x": 0}, "score": 0})
    writes = RowWrites()
    writes.update(profiles, {"key": "a"}, {"settings": {"x": 1, "y": [1, 2]}})
    writes.increment(profiles, {"key": "a"}, {"visits": 1})
    flush(store, writes)
    writes = RowWrites()
    writes.increment(profiles, {"key": "b"}, {"visits": 2})
    writes.update(profiles, {"key": "b"}, {"settings": {"new": True}})
    flush(store, writes)
    assert rows_of(store, profiles) == [
        {"key": "a", "visits": 2, "settings": {"x": 1, "y": [1, 2]}, "score": 0},
        {"key": "b", "visits": 2, "settings": {"new": True}, "score": 0}]
    # A Python-side default of a column the row leaves out: a read, then SQLAlchemy's insert.
    ratings = created(store, RATINGS)
    writes = RowWrites()
    writes.increment(ratings, {"key": "r"}, {"stars": 2})
    with statements(store) as seen:
        flush(store, writes)
    assert seen == ["SELECT", "INSERT"]
    assert rows_of(store, ratings) == [{"key": "r", "stars": 2, "note": "none"}]


RATINGS = ViewTable("catalogue", "ratings", (
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("stars", sa.Integer, sa.CheckConstraint("stars >= 0"), nullable=False),
    sa.Column("note", sa.String(16), nullable=False, default="none"),
), ())
