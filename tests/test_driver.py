"""Sql: plain SQL on the driver's cursor, in the caller's transaction, with SQLAlchemy's
errors, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from projectionist.driver import Compiled, Sql, markers
from projectionist.stores import Store, missing_table


@pytest.fixture
def store(schema_store_urls: tuple[str, str]) -> Iterator[Store]:
    store = Store(schema_store_urls[0])
    with store.schema() as connection:
        connection.exec_driver_sql("CREATE TABLE things (name TEXT PRIMARY KEY, size INTEGER)")
        connection.exec_driver_sql("INSERT INTO things VALUES ('a', 1), ('b', 2), ('c', 3)")
    yield store
    store.dispose()


def test_rows_with_markers_on_each_backend(store: Store) -> None:
    statement = Sql(
        f"SELECT name, size FROM things WHERE name IN ({markers(2)}) ORDER BY name"
    )
    with store.read() as connection:
        assert statement.rows(connection, ("a", "c")) == [("a", 1), ("c", 3)]
        assert statement.rows(connection, ("x", "y")) == []


def test_runs_inside_the_callers_transaction(store: Store) -> None:
    count = Sql("SELECT count(*) FROM things")
    with store.write() as connection:
        connection.exec_driver_sql("INSERT INTO things VALUES ('d', 4)")
        assert count.rows(connection) == [(4,)]  # sees the transaction's own write
        connection.rollback()
    with store.read() as connection:
        assert count.rows(connection) == [(3,)]


def test_a_missing_table_is_sqlalchemys_error(store: Store) -> None:
    statement = Sql("SELECT doc FROM no_such_documents WHERE key = ?")
    with pytest.raises(sa.exc.DBAPIError) as raised, store.read() as connection:
        statement.rows(connection, ("k",))
    assert missing_table(raised.value)


def test_percent_signs_are_refused() -> None:
    with pytest.raises(ValueError, match="'%'"):
        Sql("SELECT 1 WHERE 'a' LIKE '%'")


# Compiled: a SQLAlchemy statement compiled once, run on the driver's cursor

typed = sa.Table(
    "typed_things",
    sa.MetaData(),
    sa.Column("name", sa.String(16), primary_key=True),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("ratio", sa.Float, nullable=False),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("seen", sa.Integer, nullable=False, default=0),
    sa.Column("opens", sa.Time, nullable=True),
    sa.Column("unit price", sa.Integer, nullable=True),
)


def test_compiled_rows_are_stored_as_sqlalchemy_stores_them(store: Store) -> None:
    """The dialect's own type processors apply (SQLite keeps times and datetimes as text of
    SQLAlchemy's form, so a query by value finds them), and a column name that a marker
    cannot hold is escaped."""
    at = datetime(2026, 11, 29, 12, 30, 15, 250_000)
    on_the_second = datetime(2026, 11, 29, 12, 0)
    rows = [
        {"name": "a", "flag": True, "at": at, "ratio": 1, "price": Decimal("9.99"), "seen": 2,
         "opens": time(9, 30), "unit price": 7},
        {"name": "b", "flag": False, "at": on_the_second, "ratio": 0.5,
         "price": Decimal("0.10"), "seen": 0, "opens": None, "unit price": None},
    ]
    with store.write() as connection:
        typed.create(connection)
        insert = Compiled(sa.insert(typed), connection.dialect, list(rows[0]))
        assert insert.covers(rows[0])
        insert.run_many(connection, rows)
    with store.read() as connection:
        found = [dict(r._mapping) for r in connection.execute(sa.select(typed).order_by("name"))]
        by_value = connection.execute(
            sa.select(typed.c.name).where(typed.c.at == on_the_second)
        ).scalars().all()
    assert found == rows
    assert by_value == ["b"]


def test_compiled_needs_every_parameter_and_raises_sqlalchemys_errors(store: Store) -> None:
    row = {"name": "a", "flag": True, "at": datetime(2026, 1, 1), "ratio": 1.0,
           "price": Decimal(1)}
    with store.write() as connection:
        typed.create(connection)
        insert = Compiled(sa.insert(typed), connection.dialect, [*row, "seen"])
        assert not insert.covers(row), "seen has a Python-side default only SQLAlchemy adds"
        insert.run_many(connection, [{**row, "seen": 1}])
    with pytest.raises(sa.exc.IntegrityError), store.write() as connection:
        insert.run_many(connection, [{**row, "seen": 2}])
