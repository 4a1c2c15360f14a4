"""Sql statements that share a round trip with their transaction's BEGIN or COMMIT (on
PostgreSQL, `projectionist.wire`), and the same calls on SQLite: the transaction's bounds and
errors are those of running the statements one by one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from projectionist import wire
from projectionist.driver import Compiled, Sql
from projectionist.stores import Store

INSERT = Sql("INSERT INTO things (name, size) VALUES (?, ?)")
INSERT_RETURNING = Sql("INSERT INTO things (name, size) VALUES (?, ?) RETURNING name, size")
NAMES = Sql("SELECT name FROM things ORDER BY name")


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


def names(store: Store) -> list[str]:
    with store.read() as connection:
        return [name for (name,) in NAMES.rows(connection)]


def test_a_statement_that_opens_the_transaction_is_undone_with_it(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as connection:
        assert INSERT.run(connection, ("b", 2)) == 1
        assert NAMES.rows(connection) == [("a",), ("b",)]
        raise RuntimeError("the caller gives up")
    assert names(store) == ["a"]


def test_the_last_statement_commits_with_the_transaction(store: Store) -> None:
    with store.write() as connection:
        INSERT.run(connection, ("b", 2))
        rows = INSERT_RETURNING.rows(connection, ("c", 3), last=True)
        assert rows == [("c", 3)]
    assert names(store) == ["a", "b", "c"]
    with store.write() as connection:  # the connection goes on as usual
        INSERT.run(connection, ("d", 4))
    assert names(store) == ["a", "b", "c", "d"]


def test_a_last_statement_that_fails_commits_nothing(store: Store) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.write() as connection:
        INSERT.run(connection, ("b", 2))
        INSERT_RETURNING.rows(connection, ("a", 5), last=True)  # a duplicate key
    assert names(store) == ["a"]
    with pytest.raises(sa.exc.IntegrityError), store.write() as connection:
        INSERT_RETURNING.rows(connection, ("e", -1), last=True)  # the CHECK, opening and last
    assert names(store) == ["a"]


def test_a_failed_opening_statement_leaves_the_connection_usable(store: Store) -> None:
    for _ in range(3):
        with pytest.raises(sa.exc.IntegrityError), store.write() as connection:
            INSERT.run(connection, ("a", 1))
        with store.write() as connection:
            assert NAMES.rows(connection) == [("a",)]


def test_values_and_rows_keep_their_types(store: Store) -> None:
    select = Sql("SELECT ?, ?, ?, ?, ?")
    values = ("text", 7, 2.5, None, True)
    with store.read() as connection:
        assert select.rows(connection, values) == [values]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_transaction_keeps_its_isolation_level(store: Store) -> None:
    level = Sql("SELECT current_setting('transaction_isolation')")
    with store.engine.connect().execution_options(
        isolation_level="REPEATABLE READ"
    ) as connection, connection.begin():
        driver = connection.connection.driver_connection
        assert wire.usable(driver, commit=False)  # this statement carries the BEGIN
        assert level.rows(connection) == [("repeatable read",)]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_statement_inside_an_open_transaction_goes_the_usual_way(store: Store) -> None:
    with store.write() as connection:
        driver = connection.connection.driver_connection
        INSERT.run(connection, ("b", 2))
        assert not wire.usable(driver, commit=False)
        assert wire.usable(driver, commit=True)
        INSERT_RETURNING.rows(connection, ("c", 3), last=True)
        assert names(store) == ["a", "b", "c"]  # committed before the block ends


def test_statements_prepared_on_the_server_outlive_a_rollback(store: Store) -> None:
    """Run often, a statement is prepared on the server (on PostgreSQL); a rolled-back
    transaction makes psycopg deallocate every prepared statement, and the next runs of the
    statement prepare it again."""
    for round_ in range(3):
        for n in range(8):  # past psycopg's threshold for preparing
            with store.write() as connection:
                INSERT.run(connection, (f"r{round_}-{n}", n))
                INSERT_RETURNING.rows(connection, (f"s{round_}-{n}", n), last=True)
        with pytest.raises(sa.exc.IntegrityError), store.write() as connection:
            INSERT.run(connection, ("a", 1))
    assert len(names(store)) == 1 + 3 * 8 * 2


# Writes held on a PostgreSQL connection (`wire.hold`: a projection's row writes,
# `UnitOfWork.write`) and sent with the next statement or the COMMIT: the transaction sees
# them, keeps them or loses them exactly as if they had been run one by one.

THINGS = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("size", sa.Integer),
)
GROW = Sql("UPDATE things SET size = size + 1 WHERE name = ? RETURNING size")


def hold(connection: sa.Connection, name: str, size: int) -> None:
    insert = Compiled(sa.insert(THINGS), connection.dialect, ("name", "size"))
    insert.run_many(connection, [{"name": name, "size": size}], hold=True)
    assert wire.holds(connection.connection.driver_connection)


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


@pytest.mark.parametrize("backend", ["postgresql"])
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


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_statement_after_held_writes_sees_them(store: Store) -> None:
    with store.write() as connection:
        hold(connection, "b", 2)
        query = sa.text("SELECT name FROM things ORDER BY name")
        assert list(connection.execute(query).scalars()) == ["a", "b"]  # SQLAlchemy's
        hold(connection, "c", 3)
        assert NAMES.rows(connection) == [("a",), ("b",), ("c",)]  # a cursor's, in the transaction
    assert names(store) == ["a", "b", "c"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_held_writes_commit_with_their_transaction_when_nothing_follows(store: Store) -> None:
    with store.write() as connection:
        hold(connection, "b", 2)
    assert names(store) == ["a", "b"]


@pytest.mark.parametrize("backend", ["postgresql"])
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


@pytest.mark.parametrize("backend", ["postgresql"])
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
