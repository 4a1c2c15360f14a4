"""Writes held on a PostgreSQL connection (`wire.hold`, a projection's row writes) and sent with
the next statement or the COMMIT: the transaction sees them, keeps them or loses them exactly
as if they had been run one by one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from projectionist import wire
from projectionist.driver import Compiled, Sql
from projectionist.stores import Store

THINGS = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("size", sa.Integer),
)
NAMES = Sql("SELECT name FROM things ORDER BY name")
GROW = Sql("UPDATE things SET size = size + 1 WHERE name = ? RETURNING size")


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(schema_store_urls: tuple[str, str]) -> Iterator[Store]:
    store = Store(schema_store_urls[0])
    with store.schema() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE things (name TEXT PRIMARY KEY, size INTEGER CHECK (size >= 0))"
        )
        connection.exec_driver_sql("INSERT INTO things VALUES ('a', 1)")
    yield store
    store.dispose()


def hold(connection: sa.Connection, name: str, size: int) -> None:
    insert = Compiled(sa.insert(THINGS), connection.dialect, ("name", "size"))
    insert.run_many(connection, [{"name": name, "size": size}], hold=True)
    assert wire.holds(connection.connection.driver_connection)


def names(store: Store) -> list[str]:
    with store.read() as connection:
        return [name for (name,) in NAMES.rows(connection)]


@pytest.fixture
def round_trips() -> Iterator[list[int]]:
    """Counts the pipelines wire sends (each one round trip)."""
    counted: list[int] = []
    exchange = wire._exchange

    def counting(pgconn: Any, sends: Any) -> Any:
        counted.append(len(sends))
        return exchange(pgconn, sends)

    with mock.patch.object(wire, "_exchange", counting):
        yield counted


def test_held_writes_go_with_the_last_statement_and_its_commit(
    store: Store, round_trips: list[int]
) -> None:
    with store.write() as connection:
        hold(connection, "b", 2)
        hold(connection, "c", 3)
        assert GROW.rows(connection, ("b",), last=True) == [(3,)]
    # BEGIN, the two writes, the update and COMMIT: one round trip.
    assert round_trips == [5]
    assert names(store) == ["a", "b", "c"]


def test_a_statement_after_held_writes_sees_them(store: Store) -> None:
    with store.write() as connection:
        hold(connection, "b", 2)
        query = sa.text("SELECT name FROM things ORDER BY name")
        assert list(connection.execute(query).scalars()) == ["a", "b"]  # SQLAlchemy's
        hold(connection, "c", 3)
        assert NAMES.rows(connection) == [("a",), ("b",), ("c",)]  # a cursor's, in the transaction
    assert names(store) == ["a", "b", "c"]


def test_held_writes_commit_with_their_transaction_when_nothing_follows(store: Store) -> None:
    with store.write() as connection:
        hold(connection, "b", 2)
    assert names(store) == ["a", "b"]


def test_a_rollback_drops_held_writes(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as connection:
        NAMES.rows(connection)
        hold(connection, "b", 2)
        raise RuntimeError("the caller gives up")
    # The pool's next transaction on that connection sends nothing of them.
    for _ in range(3):
        with store.write() as connection:
            assert not wire.holds(connection.connection.driver_connection)
            assert NAMES.rows(connection) == [("a",)]


def test_a_held_write_that_fails_fails_its_transaction_and_names_its_own_statement(
    store: Store,
) -> None:
    with pytest.raises(sa.exc.IntegrityError) as failed, store.write() as connection:
        hold(connection, "b", 2)
        hold(connection, "a", 5)  # a duplicate key
        GROW.rows(connection, ("b",), last=True)
    assert "INSERT INTO things" in str(failed.value.statement)
    assert "duplicate key" in str(failed.value.orig)
    assert names(store) == ["a"]
    with pytest.raises(sa.exc.IntegrityError), store.write() as connection:
        hold(connection, "e", -1)  # the CHECK, found at the commit
    assert names(store) == ["a"]
    with store.write() as connection:  # the connection goes on as usual
        hold(connection, "f", 6)
    assert names(store) == ["a", "f"]
