"""Statements run on the database driver's own cursor, inside a SQLAlchemy transaction.

For a point read, building and running a SQLAlchemy statement costs several times the
database's own work. The framework's hottest statements (a query's checkpoint and document
reads, the log's append) and, through `UnitOfWork.sql`, a command handler's own, are plain SQL
written once with `?` markers and run on the driver's cursor of the same connection, in the
same transaction. Errors are raised as SQLAlchemy's, so the translations of
`stores.translate_errors` and `stores.missing_table` apply unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import wire


class Sql:
    """One statement, written once with `?` markers, run in the form each driver takes.

    Every `?` is a parameter marker, and `%` is refused (psycopg reads it as one): pass a
    literal `?` or `%` (a LIKE pattern) as a parameter.
    """

    __slots__ = ("format", "format_text", "qmark")

    def __init__(self, sql: str, *, binary: bool = False) -> None:
        """`binary`: psycopg sends the values in binary form (`%b`), much cheaper for arrays
        than text, which it escapes character by character."""
        if "%" in sql:
            raise ValueError("driver SQL must not contain '%': psycopg reads it as a marker")
        self.qmark = sql
        self.format_text = sql.replace("?", "%s")
        self.format = sql.replace("?", "%b") if binary else self.format_text

    def rows(
        self, connection: Connection, params: Sequence[Any] = (), *, last: bool = False
    ) -> list[Any]:
        """Every row the statement returns, as the driver's tuples.

        `last`: nothing follows the statement in its transaction, so on PostgreSQL the COMMIT
        goes in the same round trip (`wire`); the transaction has committed when this returns,
        and the caller's commit sends nothing more.
        """
        rows: list[Any] = self._execute(connection, params, "rows", last)
        return rows

    def run(self, connection: Connection, params: Sequence[Any] = ()) -> int:
        """Runs a statement that returns no rows; how many rows it changed."""
        count: int = self._execute(connection, params, "count", False)
        return count

    def run_many(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Runs the statement once per row of parameters (an insert of many rows)."""
        if rows:
            self._execute(connection, rows, "many", False)

    def hold(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Runs the statement once per row of parameters, its results unread: on PostgreSQL
        they go with the transaction's next statement or its COMMIT (`wire.hold`), and their
        errors surface there; elsewhere they run now."""
        driver: Any = connection.connection.driver_connection
        if connection.dialect.driver == "psycopg" and wire.can_hold(driver):
            with driver_errors(connection, self.format, rows):  # a value psycopg cannot send
                for params in rows:
                    wire.hold(driver, self.format, params)
        elif len(rows) == 1:
            self._execute(connection, rows[0], "count", False)
        else:
            self.run_many(connection, rows)

    def _execute(self, connection: Connection, params: Sequence[Any], mode: str, last: bool) -> Any:
        dialect = connection.dialect
        if dialect.paramstyle == "qmark":
            sql = self.qmark
        elif dialect.driver == "psycopg" and mode != "many":  # `%b` is psycopg's (3) alone
            sql = self.format
            driver = connection.connection.driver_connection
            if wire.usable(driver, commit=last):
                with driver_errors(connection, sql, params):
                    rows, count = wire.execute(driver, sql, params, commit=last)
                return count if mode == "count" else rows or []
        else:
            sql = self.format_text
        with driver_cursor(connection, sql, params) as cursor:
            if mode == "many":
                cursor.executemany(sql, params)
                return None
            cursor.execute(sql, params)
            if mode == "count":
                return cursor.rowcount
            return cursor.fetchall() if cursor.description is not None else []


@contextmanager
def driver_errors(connection: Connection, sql: str, params: Any) -> Iterator[None]:
    """The driver's errors in the block raised as SQLAlchemy's (`sql` and `params` go into
    their message)."""
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as error:
        sql = getattr(error, "projectionist_sql", sql)  # a held write's (wire.hold)
        raise sa.exc.DBAPIError.instance(sql, params, error, dbapi_error) from error


@contextmanager
def driver_cursor(connection: Connection, sql: str, params: Any) -> Iterator[Any]:
    """A cursor of the connection's driver, closed after the block; the driver's errors in it
    raised as SQLAlchemy's. Held writes (`wire.hold`) go first."""
    dbapi_error = connection.dialect.loaded_dbapi.Error
    send_held(connection)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi_error as error:
        raise sa.exc.DBAPIError.instance(sql, params, error, dbapi_error) from error
    finally:
        cursor.close()


_RUN_MANY_DRIVERS = frozenset({"pysqlite", "psycopg"})


class Compiled:
    """A SQLAlchemy statement compiled once for a dialect and run on the driver's cursor with
    many rows of named parameters: SQLAlchemy's per-row work (building parameters, then the
    type processors) is done here as a plain loop with the same processors."""

    __slots__ = ("markers", "named", "names", "processors", "sql", "usable")

    def __init__(
        self,
        statement: Any,
        dialect: sa.engine.Dialect,
        column_keys: Sequence[str] | None = None,
    ) -> None:
        compiled = statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
        )
        self.sql: str = compiled.string
        positions = compiled.positiontup
        self.names: tuple[str, ...] = tuple(positions if positions is not None else compiled.binds)
        # The dialect's own form of each type, as SQLAlchemy's execution would process it.
        self.processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.names
        )
        self.named = positions is None  # psycopg's markers are named: mappings, not tuples
        # A named marker is written escaped when the name has characters it cannot hold.
        escaped = getattr(compiled, "escaped_bind_names", None) or {}
        self.markers = tuple(escaped.get(name, name) for name in self.names)
        # Other drivers (psycopg2's batches) run many rows faster through SQLAlchemy.
        self.usable = dialect.driver in _RUN_MANY_DRIVERS

    def covers(self, row: Mapping[str, Any]) -> bool:
        """Whether `row` has every parameter and the driver is one this runs many rows on
        well: not when SQLAlchemy would add a parameter itself (a column's Python-side
        default), which only its own execution does."""
        return self.usable and all(name in row for name in self.names)

    def run_many(
        self, connection: Connection, rows: Sequence[dict[str, Any]], *, hold: bool = False
    ) -> None:
        """Runs the statement once per row of named parameters (each `covers`). `hold`: the
        statement's result is not needed; on PostgreSQL one row may go with the next
        statement (`wire.hold`)."""
        pairs = tuple(zip(self.names, self.processors, strict=True))
        params: list[Any] = [
            [row[name] if process is None else process(row[name]) for name, process in pairs]
            for row in rows
        ]
        if self.named:
            params = [dict(zip(self.markers, values, strict=True)) for values in params]
        if len(params) == 1 and connection.dialect.driver == "psycopg":
            # One row: psycopg's executemany pipelines, dearer than one statement, and the
            # statement that opens a transaction goes with its BEGIN.
            driver = connection.connection.driver_connection
            if hold and wire.can_hold(driver):
                with driver_errors(connection, self.sql, params[0]):
                    wire.hold(driver, self.sql, params[0])
                return
            if wire.usable(driver, commit=False):
                with driver_errors(connection, self.sql, params[0]):
                    wire.execute(driver, self.sql, params[0], commit=False)
                return
        with driver_cursor(connection, self.sql, params) as cursor:
            if len(params) == 1:
                cursor.execute(self.sql, params[0])
            else:
                cursor.executemany(self.sql, params)


def send_held(connection: Connection) -> None:
    """Sends the writes held on the connection (`Sql.hold`), if any."""
    driver: Any = connection.connection.driver_connection
    if wire.holds(driver):
        with driver_errors(connection, "(held writes)", ()):
            wire.send_held(driver)


def drop_held(connection: Connection) -> None:
    """Forgets the writes held on the connection (`Sql.hold`), unsent."""
    wire.drop_held(connection.connection.driver_connection)


def guard_held_writes(engine: sa.engine.Engine) -> None:
    """On a PostgreSQL engine: writes held on a connection (`wire.hold`) go before any
    statement SQLAlchemy runs there and before its COMMIT; a rollback, or the pool's reset of
    a connection given back, drops them."""

    def before_statement(connection: Connection, *_args: Any) -> None:
        driver = connection.connection.driver_connection
        if wire.holds(driver):
            wire.send_held(driver)  # SQLAlchemy raises its errors as its own

    def dropped(connection: Connection, *_args: Any) -> None:
        try:
            driver = connection.connection.driver_connection
        except sa.exc.SQLAlchemyError:  # lost, or never connected: nothing of it to drop
            return
        wire.drop_held(driver)

    def reset(driver_connection: Any, *_args: Any) -> None:
        wire.drop_held(driver_connection)

    sa.event.listen(engine, "before_cursor_execute", before_statement)
    sa.event.listen(engine, "commit", send_held)
    sa.event.listen(engine, "rollback", dropped)
    sa.event.listen(engine, "rollback_savepoint", dropped)  # held since the savepoint: undone
    sa.event.listen(engine, "reset", reset)


def markers(count: int) -> str:
    """`?, ?, ?` for a list of `count` values."""
    return ", ".join("?" * count)
