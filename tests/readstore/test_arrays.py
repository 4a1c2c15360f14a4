"""Writes of many rows to a SQL view on PostgreSQL as one statement taking columns as arrays:
the same rows as the usual way (one statement per row) and as SQLite, or the usual way itself
where the arrays cannot carry the values."""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from projectionist import App, ApplyContext, Command, Event, Projection, Runtime, UnitOfWork
from projectionist.errors import InvalidMessage
from projectionist.readstore import arrays
from projectionist.readstore.arrays import Arrays
from projectionist.readstore.rows import RowWrites, upsert
from projectionist.readstore.tables import ViewTable
from projectionist.stores import Store
from tests.readstore.test_rows import rows_of, seed

Op = tuple[Any, ...]  # ("put", row) | ("update", key, values) | ("increment", key, deltas)
postgresql = pytest.mark.parametrize("backend", ["postgresql"])
UTC = datetime.UTC


@contextmanager
def array_runs() -> Iterator[list[str]]:
    """The array statements sent in the block, by their first word (and "failed" when the
    database refused them)."""
    ran: list[str] = []
    run = Arrays.run

    def recorded(statement: Arrays, *args: Any) -> bool:
        word = statement.sql.qmark.split()[0]
        try:
            done = run(statement, *args)
        except sa.exc.SQLAlchemyError:
            ran.append(f"{word} failed")
            raise
        if done:
            ran.append(word)
        return done

    with mock.patch.object(Arrays, "run", recorded):
        yield ran


@contextmanager
def the_usual_way() -> Iterator[None]:
    """Rows written as before the arrays: one statement per row."""
    with mock.patch.object(arrays, "run", return_value=False):
        yield


def apply(store: Store, table: sa.Table, ops: list[Op]) -> None:
    """The writes of `ops` as one batch, flushed in one transaction."""
    writes = RowWrites()
    for op in ops:
        if op[0] == "put":
            writes.put(table, op[1])
        elif op[0] == "update":
            writes.update(table, op[1], op[2])
        else:
            writes.increment(table, op[1], op[2])
    with store.write() as connection:
        writes.flush(connection)


def both_ways(store: Store, view: ViewTable, ops: list[Op],
              *seeded: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows written by the arrays (build 1) and the usual way (build 2), which must be the
    same, and the array statements written."""
    tables = [view.physical(1), view.physical(2)]
    with store.schema() as connection:
        for table in tables:
            table.create(connection)
    for table in tables:
        if seeded:
            seed(store, table, *seeded)
    with array_runs() as ran:
        apply(store, tables[0], ops)
    with the_usual_way():
        apply(store, tables[1], ops)
    rows = rows_of(store, tables[0])
    assert rows == rows_of(store, tables[1])
    return rows, ran


def sqlite_rows(tmp_path: Path, view: ViewTable, ops: list[Op],
                *seeded: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows the same batch writes on SQLite."""
    store = Store(f"sqlite:///{tmp_path / 'same.db'}")
    try:
        table = view.physical(3)
        with store.schema() as connection:
            table.create(connection)
        if seeded:
            seed(store, table, *seeded)
        apply(store, table, ops)
        return rows_of(store, table)
    finally:
        store.dispose()


def at(hour: int, tz: datetime.tzinfo | None = None) -> datetime.datetime:
    return datetime.datetime(2024, 5, 17, hour, 30, 15, 123456, tzinfo=tz)


# (column type, values to put, values to set, deltas to add or None)
TYPES: dict[str, tuple[Any, list[Any], list[Any], list[Any] | None]] = {
    "string": (sa.String(16), ["a", "ü€", None, ""], ["b", None], None),
    "text": (sa.Text, ["long " * 50, "x", None, "'quoted\"'"], [None, "y"], None),
    "unicode": (sa.Unicode(8), ["日本", "b", None, "c"], ["d", "e"], None),
    "integer": (sa.Integer, [2**31 - 1, -2, None, 1], [7, None], [3, -1]),
    "biginteger": (sa.BigInteger, [2**62, -1, None, 0], [2**40, 5], [1, -(2**40)]),
    "smallinteger": (sa.SmallInteger, [1, 2, None, -32768], [3, 300], [2, 4]),
    "float": (sa.Float, [1.5, 2, None, -0.25], [3, 0.125], [1, 0.5]),
    "double": (sa.Double, [1e300, 2, None, float("inf")], [1e-300, -1], [2.5, 1]),
    "boolean": (sa.Boolean, [True, False, None, 1], [False, 0], None),
    "numeric": (sa.Numeric(12, 2), [Decimal("1.25"), 3, None, Decimal("-0.5")], [2, None],
                [1, Decimal("0.25")]),
    "datetime": (sa.DateTime, [at(1), at(2), None, at(3)], [at(4), None], None),
    "datetime_tz": (sa.DateTime(timezone=True), [at(1, UTC), None, at(2, UTC), at(23, UTC)],
                    [at(5, datetime.timezone(datetime.timedelta(hours=2))), None], None),
}


@postgresql
@pytest.mark.parametrize("kind", list(TYPES))
def test_puts_updates_and_increments_of_a_type_write_what_row_by_row_writes(
    store: Store, kind: str,
) -> None:
    column_type, puts, sets, deltas = TYPES[kind]
    view = ViewTable("catalogue", f"kind_{kind}", (
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("value", column_type, nullable=True),
        sa.Column("other", column_type, nullable=True),
    ), ())
    seeded = [{"key": f"old{n}", "value": puts[0], "other": puts[1]} for n in range(6)]
    ops: list[Op] = [
        *(("put", {"key": f"new{n}", "value": v, "other": puts[-1 - n]})
          for n, v in enumerate(puts)),
        *(("put", {"key": f"old{n}", "value": v}) for n, v in enumerate(puts[:2])),
        *(("update", {"key": f"old{n + 2}"}, {"value": v}) for n, v in enumerate(sets)),
        *(("update", {"key": f"old{n + 4}"}, {"value": v}) for n, v in enumerate(sets)),
        ("update", {"key": "missing"}, {"value": sets[0]}),
    ]
    if deltas is not None:
        ops += [("increment", {"key": f"new{n}"}, {"other": d})
                for n, d in zip((0, 3), deltas, strict=True)]  # `other` is not None there
        ops += [("increment", {"key": f"old{n + 2}"}, {"other": d}) for n, d in enumerate(deltas)]
        ops += [("increment", {"key": f"added{n}"}, {"value": d}) for n, d in enumerate(deltas)]
    rows, ran = both_ways(store, view, ops, *seeded)
    # The puts of new rows and of existing ones (two shapes), the increments, the updates.
    # Increments: of rows given a value too, and of rows given nothing else (two shapes).
    assert ran == ["INSERT", "INSERT", *(["INSERT", "INSERT"] if deltas else []), "UPDATE"]
    assert len(rows) == 6 + len(puts) + (len(deltas) if deltas is not None else 0)


@postgresql
def test_a_column_of_nulls_only_is_written(store: Store) -> None:
    view = ViewTable("catalogue", "nulls", (
        sa.Column("key", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=True),
        sa.Column("x", sa.Float, nullable=True),
        sa.Column("s", sa.String(4), nullable=True),
        sa.Column("b", sa.Boolean, nullable=True),
    ), ())
    seeded = [{"key": n, "n": n, "x": 1.0, "s": "s", "b": True} for n in range(3)]
    ops: list[Op] = [("put", {"key": n, "n": None, "x": None, "s": None, "b": None})
                     for n in range(3, 6)]
    ops += [("update", {"key": n}, {"n": None, "x": None, "s": None, "b": None})
            for n in range(3)]
    rows, ran = both_ways(store, view, ops, *seeded)
    assert ran == ["INSERT", "UPDATE"]
    assert all(row == {"key": row["key"], "n": None, "x": None, "s": None, "b": None}
               for row in rows)


LEDGER = ViewTable("catalogue", "ledger", (
    sa.Column("region", sa.String(8), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("orders", sa.BigInteger, nullable=False, default=0),
    sa.Column("amount", sa.Float, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("open", sa.Boolean, nullable=True),
), ())


def ledger_ops(count: int, seed_: int) -> list[Op]:
    """A random batch of puts, updates and increments (int and float deltas) on `count` keys
    of a composite primary key."""
    pick = random.Random(seed_)
    ops: list[Op] = []
    for _ in range(count * 3):
        key = {"region": pick.choice("abcdefgh"), "day": pick.randrange(count // 8 + 1)}
        choice = pick.random()
        if choice < 0.2:
            ops.append(("put", {**key, "orders": pick.randrange(100),
                                "amount": pick.choice([1, 2.5, 0.125]),
                                "status": pick.choice(["new", None]), "open": True}))
        elif choice < 0.4:
            ops.append(("update", key, {"status": pick.choice(["paid", None]),
                                        "open": pick.choice([True, False, None])}))
        else:
            ops.append(("increment", key, {"orders": 1, "amount": pick.choice([1, 0.5, 2])}))
    return ops


@postgresql
def test_a_random_batch_on_a_composite_key_writes_what_sqlite_writes(
    store: Store, tmp_path: Path,
) -> None:
    seeded = [{"region": r, "day": d, "orders": 1, "amount": 1.5, "status": "old"}
              for r in "aceg" for d in range(0, 150, 3)]
    ops = ledger_ops(1200, 7)
    rows, ran = both_ways(store, LEDGER, ops, *seeded)
    assert sorted(set(ran)) == ["INSERT", "UPDATE"]
    assert rows == sqlite_rows(tmp_path, LEDGER, ops, *seeded)
    assert len(rows) > 1000  # many rows in each statement


STOCK = ViewTable("catalogue", "stock", (
    sa.Column("sku", sa.String(16), primary_key=True),
    sa.Column("left", sa.Integer, sa.CheckConstraint('"left" >= 0'), nullable=False),
    sa.Column("seen", sa.Integer, nullable=False, default=0),
), ())


@postgresql
def test_increments_of_a_table_with_a_check_update_and_insert_by_arrays(
    store: Store, tmp_path: Path,
) -> None:
    """An upsert is not an update of such a table (`rows._required`): the batch reads which
    rows exist, updates them and inserts the others."""
    seeded = [{"sku": f"s{n}", "left": 5, "seen": 0} for n in range(10)]
    ops: list[Op] = [("increment", {"sku": f"s{n}"}, {"left": -1, "seen": 1}) for n in range(10)]
    ops += [("increment", {"sku": f"n{n}"}, {"left": 2, "seen": 1}) for n in range(10)]
    rows, ran = both_ways(store, STOCK, ops, *seeded)
    assert ran == ["UPDATE", "INSERT"]
    assert rows == sqlite_rows(tmp_path, STOCK, ops, *seeded)
    assert [(row["left"], row["seen"]) for row in rows] == [(2, 1)] * 10 + [(4, 1)] * 10


@postgresql
def test_a_table_with_a_check_that_fails_raises_an_integrity_error(store: Store) -> None:
    table = STOCK.physical(1)
    with store.schema() as connection:
        table.create(connection)
    seed(store, table, *({"sku": f"s{n}", "left": 1, "seen": 0} for n in range(5)))
    with array_runs() as ran, pytest.raises(sa.exc.IntegrityError, match="check"):
        apply(store, table, [("increment", {"sku": f"s{n}"}, {"left": -n}) for n in range(5)])
    assert ran == ["UPDATE failed"]
    assert [row["left"] for row in rows_of(store, table)] == [1] * 5


PLAIN = ViewTable("catalogue", "plain", (
    sa.Column("key", sa.String(8), primary_key=True),
    sa.Column("label", sa.String(8), nullable=True),
    sa.Column("count", sa.Integer, nullable=False, default=0),
), ())


@postgresql
@pytest.mark.parametrize(("row", "error", "why"), [
    ({"label": "far too long"}, sa.exc.DataError, "value too long"),
    ({"count": 2**40}, sa.exc.DataError, "integer out of range"),
    ({"count": None}, sa.exc.IntegrityError, "not-null"),
])
def test_a_bad_row_among_many_raises_the_error_of_sqlalchemy(
    store: Store, row: dict[str, Any], error: type[Exception], why: str,
) -> None:
    """As the usual way does; the store makes a DataError an InvalidMessage."""
    table = PLAIN.physical(1)
    with store.schema() as connection:
        table.create(connection)
    ops: list[Op] = [("put", {"key": f"k{n}", "label": "ok", "count": n}) for n in range(5)]
    ops.append(("put", {"key": "bad", "label": "ok", "count": 1, **row}))
    raised = []
    for way in (array_runs(), the_usual_way()):
        with way, pytest.raises(Exception, match=why) as failure:
            apply(store, table, ops)
        cause = failure.value if isinstance(failure.value, error) else failure.value.__cause__
        assert isinstance(cause, error)
        raised.append(type(failure.value))
    assert raised[0] is raised[1] is (InvalidMessage if error is sa.exc.DataError else error)
    assert rows_of(store, table) == []


@postgresql
def test_an_array_statement_that_fails_is_the_one_sent(store: Store) -> None:
    table = PLAIN.physical(1)
    with store.schema() as connection:
        table.create(connection)
    ops: list[Op] = [("put", {"key": f"k{n}", "label": "ok", "count": n}) for n in range(5)]
    ops.append(("put", {"key": "bad", "label": "far too long", "count": 1}))
    with array_runs() as ran, pytest.raises(InvalidMessage):
        apply(store, table, ops)
    assert ran == ["INSERT failed"]


VARIED = ViewTable("catalogue", "varied", (
    sa.Column("key", sa.String(8), primary_key=True),
    sa.Column("label", sa.String(8), nullable=True),
    sa.Column("count", sa.Integer, nullable=False, default=0),
    sa.Column("x", sa.Float, nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=True),
), ())


@postgresql
@pytest.mark.parametrize("values", [
    [{"label": 5}, {"label": "x"}],  # an int in a string column
    [{"count": True}, {"count": 1}],  # a bool in an integer column
    [{"count": 1.5}, {"count": 1}],  # a float in an integer column
    [{"label": Decimal(1)}, {"label": "x"}],
    [{"x": 2**1100}, {"x": 1.0}],  # an int beyond a float
    [{"x": Decimal("1.5")}, {"x": 1.0}],
    [{"at": at(1)}, {"at": at(2, UTC)}],  # naive and aware
])
def test_values_the_arrays_cannot_carry_go_the_usual_way(
    store: Store, values: list[dict[str, Any]],
) -> None:
    table = VARIED.physical(1)
    with store.schema() as connection:
        table.create(connection)
    ops: list[Op] = [("put", {"key": f"k{n}", "label": "a", "count": 0, "x": 0.5, "at": None,
                              **v}) for n, v in enumerate(values)]
    with array_runs() as ran:
        try:
            apply(store, table, ops)
            outcome: object = rows_of(store, table)
        except Exception as error:
            outcome = type(error)
    assert ran == []
    usual = VARIED.physical(2)
    with store.schema() as connection:
        usual.create(connection)
    with the_usual_way():
        try:
            apply(store, usual, ops)
            assert outcome == rows_of(store, usual)
        except Exception as error:
            assert outcome is type(error)


def _json_default() -> str:
    return "made"


@postgresql
@pytest.mark.parametrize("column", [
    sa.Column("extra", sa.JSON, nullable=True),
    sa.Column("extra", sa.Enum("x", "y", name="extra_kind"), nullable=True),
    sa.Column("extra", sa.String(8), nullable=True, default=_json_default),
    sa.Column("extra", sa.String(8), nullable=True, onupdate="later"),
    sa.Column("extra", sa.String(8, collation="C"), nullable=True),
])
def test_tables_the_arrays_cannot_write_go_the_usual_way(
    store: Store, column: sa.Column[Any],
) -> None:
    view = ViewTable("catalogue", "other", (
        sa.Column("key", sa.String(8), primary_key=True),
        sa.Column("count", sa.Integer, nullable=True),
        column,
    ), ())
    given = {} if column.default is not None or column.onupdate is not None else {"extra": "x"}
    ops: list[Op] = [("put", {"key": f"k{n}", "count": n, **given}) for n in range(3)]
    ops += [("update", {"key": f"k{n}"}, {"count": 9}) for n in range(2)]
    rows, ran = both_ways(store, view, ops)
    assert ran == []
    assert len(rows) == 3


@postgresql
def test_upsert_of_rows_with_one_key_twice_goes_the_usual_way(store: Store) -> None:
    table = PLAIN.physical(1)
    with store.schema() as connection:
        table.create(connection)
    with array_runs() as ran, store.write() as connection:
        upsert(connection, table, [{"key": "a", "label": "first", "count": 1},
                                   {"key": "a", "label": "last", "count": 2}])
    assert ran == []
    assert rows_of(store, table) == [{"key": "a", "label": "last", "count": 2}]


@postgresql
def test_one_row_keeps_the_single_statement(store: Store) -> None:
    table = PLAIN.physical(1)
    with store.schema() as connection:
        table.create(connection)
    with array_runs() as ran:
        apply(store, table, [("put", {"key": "a", "label": "x", "count": 1})])
    assert ran == []
    assert rows_of(store, table) == [{"key": "a", "label": "x", "count": 1}]


# A projection whose batch fails on one row: the runner finds the event and parks it.


class Label(Command):
    key: str
    label: str


class Labelled(Event):
    key: str
    label: str


def labels_app() -> tuple[App, ViewTable]:
    app = App("labels")
    projection = Projection("labels")
    labels = projection.table(
        "labels",
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("times", sa.Integer, nullable=False),
    )

    @projection.on(Labelled)
    def labelled(event: Labelled, ctx: ApplyContext) -> None:
        ctx.put(labels, {"key": event.key, "label": event.label, "times": 0})
        ctx.increment(labels, {"key": event.key}, times=1)

    @app.command(Label)
    def label(command: Label, uow: UnitOfWork) -> None:
        uow.record(f"label-{command.key}", Labelled(key=command.key, label=command.label))

    app.projection(projection)
    return app, labels


@postgresql
def test_a_batch_with_one_bad_row_parks_its_event_and_applies_the_others(
    store_urls: tuple[str, str],
) -> None:
    app, labels = labels_app()
    runtime = Runtime(app, store=store_urls[0], read_store=store_urls[1])
    try:
        runtime.install()
        for n in range(10):
            runtime.execute(Label(key=f"k{n}", label="much too long" if n == 6 else "fine"))
        with array_runs() as ran:
            runtime.catch_up()
        # The whole batch failed, then one event at a time (one row: no arrays) found it.
        assert ran == ["INSERT failed"]
        [parked] = runtime.list_dead_letters("labels")
        assert parked.stream == "label-k6" and parked.reason == "failed"
        assert "value too long" in (parked.error or "")
        table = labels.physical(1)
        with runtime.read_store.read() as connection:
            rows = connection.execute(sa.select(table).order_by(table.c.key)).all()
        assert [tuple(row) for row in rows] == [
            (f"k{n}", "fine", 1) for n in range(10) if n != 6]
    finally:
        runtime.stop()


GAUGES = ViewTable("catalogue", "gauges", (
    sa.Column("reading", sa.Float, primary_key=True),
    sa.Column("seen", sa.Integer, nullable=False),
), ())


@postgresql
def test_keys_python_tells_apart_and_postgresql_does_not_go_the_usual_way(store: Store) -> None:
    """Two NaN keys differ in Python and are one key to PostgreSQL: an array statement would
    change the row twice, which ON CONFLICT refuses."""
    table = GAUGES.physical(1)
    with store.schema() as connection:
        table.create(connection)
    with array_runs() as ran, store.write() as connection:
        upsert(connection, table, [{"reading": float("nan"), "seen": 1},
                                   {"reading": float("nan"), "seen": 2},
                                   {"reading": 1.5, "seen": 3}])
    assert ran == []
    rows = rows_of(store, table)
    assert [row["seen"] for row in rows] == [3, 2]  # NaN sorts last; the last write wins
