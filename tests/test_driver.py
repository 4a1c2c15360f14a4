"""Sql: plain SQL on the driver's cursor, in the caller's transaction, with SQLAlchemy's
errors, on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from projectionist.driver import Sql, markers
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
