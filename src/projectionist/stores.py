"""Database connections: engines from URLs, write and read transactions, error translation."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, OperationalError

from . import wire
from .driver import Sql
from .engines import NO_BEGIN, create_engine, in_memory, redact
from .errors import InvalidMessage, StoreUnavailable
from .turnstile import Turnstile

_PG_IDLE = 0  # libpq's PQTRANS_IDLE: no transaction open
SCHEMA_LOCK_KEY = 7_311_201_001
"""The advisory lock of schema changes: an arbitrary constant that every process agrees on."""


class Store:
    """One database: an engine, plus write and read transactions suited to its dialect."""

    def __init__(
        self, url: str, *, pool_size: int = 5, timeout_s: float = 10.0, durable: bool = True
    ) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, timeout_s=timeout_s, durable=durable)
        self.dialect = self.engine.dialect.name
        # The kept writer, one transaction at a time under its lock. SQLite admits one writer
        # at a time; queueing writers here is far cheaper than SQLite's busy handler, which
        # sleeps in steps of up to 100 ms, so every SQLite write takes it (a pool checkout
        # costs more than a small write). On PostgreSQL, `write(kept=True)` (psycopg 3).
        self._writer_lock = threading.Lock()
        self._always_kept = self.is_sqlite
        self._keeps = self._always_kept or self.engine.dialect.driver == "psycopg"
        self._writer: Connection | None = None
        self._writer_driver: Any = None  # its driver's connection, which begins and commits
        self._writer_pid: int | None = None  # on PostgreSQL, its backend's process id
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        file_sqlite = self.is_sqlite and not in_memory(url)
        self._turnstile: Turnstile | None = None  # the writers of other processes take turns
        if file_sqlite:
            self._turnstile = Turnstile(sa.engine.make_url(url).database or "", timeout_s=timeout_s)
            weakref.finalize(self, self._turnstile.close)
        # A file-backed SQLite store keeps one read connection per thread: a read is a few
        # microseconds of SQLite, and a pool checkout and check-in cost many times that. They
        # come from an engine of their own, with no pool: a server's threads may outnumber
        # any pool, and a thread waiting for a pooled connection would wait for a timeout.
        self._readers = threading.local() if file_sqlite else None
        self._reader_engine = (
            create_engine(url, pool_size=0, timeout_s=timeout_s, durable=durable, pooled=False)
            if self._readers is not None
            else None
        )
        self._reader_connections: dict[int, tuple[threading.Thread, Connection]] = {}
        self._readers_lock = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self, *, kept: bool = False) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends without error.

        `kept`: on PostgreSQL (psycopg 3), for callers that write one at a time (a group
        commit's leader), the transaction runs on one connection kept for them, not a pooled
        one: a pool checkout and check-in, with SQLAlchemy's begin and commit, cost more CPU
        than a small command. SQLite always writes on its one kept connection.
        """
        if not (self._always_kept or (kept and self._keeps)):
            with (
                translate_errors(self.url),
                self.engine.connect() as connection,
                connection.begin(),
            ):
                yield connection
            return
        with self._writer_lock:
            try:
                with translate_errors(self.url):
                    writer = self._writer
                    if writer is None or writer.invalidated:  # by SQLAlchemy, with the pool
                        writer = self._open_writer()
                    driver = self._writer_driver
                    self._begin(writer, driver)
                    try:
                        yield writer
                        self._commit(writer, driver)
                    except BaseException as error:
                        self._rollback(writer, driver)
                        if isinstance(error, self._driver_error):  # the COMMIT's
                            dbapi = self._driver_error
                            raise sa.exc.DBAPIError.instance("COMMIT", (), error, dbapi) from error
                        raise
            except StoreUnavailable:
                self._close_writer()  # a lost or locked store: the next write connects anew
                raise

    def writes_from(self, backend_pid: int) -> bool:
        """Whether a PostgreSQL backend is this store's kept writer: the commits of a group
        commit, which this process hands to its own projectors in memory."""
        return backend_pid == self._writer_pid

    def _begin(self, writer: Connection, driver: Any) -> None:
        if not self.is_sqlite:
            return  # psycopg begins at the first statement
        if self._turnstile is None:
            driver.execute("BEGIN IMMEDIATE")  # in memory: no other process
        else:
            self._turnstile.begin(driver, writer.connection.info)

    def _commit(self, writer: Connection, driver: Any) -> None:
        if self.is_sqlite:
            driver.commit()
        else:
            wire.send_held(driver)
            if driver.info.transaction_status != _PG_IDLE:  # not committed with a statement
                driver.commit()
            # Known once it has committed: a NOTIFY of the connection's earlier, pooled life
            # (not handed over in memory) is then surely read.
            self._writer_pid = driver.info.backend_pid
        self._check_writer(writer)

    def _rollback(self, writer: Connection, driver: Any) -> None:
        with contextlib.suppress(self._driver_error):
            if not self.is_sqlite:
                wire.drop_held(driver)
            driver.rollback()
        self._check_writer(writer)

    def _check_writer(self, writer: Connection) -> None:
        transaction = writer.get_transaction()
        if transaction is None or not transaction.is_active or writer.in_nested_transaction():
            self._close_writer()  # SQLAlchemy gave up on it, or a savepoint was left open

    @contextmanager
    def schema(self) -> Iterator[Connection]:
        """A write transaction that holds the schema lock, so concurrent starts do not clash."""
        with self.write() as connection:
            if not self.is_sqlite:
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a read transaction (one consistent snapshot)."""
        if self._readers is None:
            with (
                translate_errors(self.url),
                self.engine.connect() as connection,
                connection.begin(),
            ):
                yield connection
            return
        reader: Connection | None = getattr(self._readers, "connection", None)
        try:
            with translate_errors(self.url):
                if reader is None:
                    reader = self._readers.connection = self._new_reader()
                with reader.begin():
                    yield reader
        except StoreUnavailable:
            self._readers.connection = None
            if reader is not None:
                with contextlib.suppress(Exception):
                    reader.close()
            raise

    @contextmanager
    def single(self) -> Iterator[Connection]:
        """A connection for a single statement that reads, without a transaction around it: one
        statement sees one snapshot by itself, and PostgreSQL is spared BEGIN and COMMIT."""
        with translate_errors(self.url), self.engine.connect() as connection:
            if self.is_sqlite:
                # The driver commits each statement itself when no BEGIN is sent; changing the
                # isolation level would leave the pooled connection in the driver's legacy mode.
                yield connection.execution_options(**{NO_BEGIN: True})
            else:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def _new_reader(self) -> Connection:
        """This thread's read connection; those of threads that ended are closed."""
        assert self._reader_engine is not None
        reader = self._reader_engine.connect()
        with self._readers_lock:
            ended = [
                key
                for key, (thread, _connection) in self._reader_connections.items()
                if not thread.is_alive()
            ]
            closing = [self._reader_connections.pop(key)[1] for key in ended]
            self._reader_connections[threading.get_ident()] = (threading.current_thread(), reader)
        for connection in closing:
            with contextlib.suppress(Exception):  # already broken
                connection.close()
        return reader

    def fetch(self, statement: Sql, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one reading statement, at its own snapshot, outside any transaction."""
        with self.single() as connection:
            return statement.rows(connection, params)

    def dispose(self) -> None:
        with self._writer_lock:
            self._close_writer()
        with self._readers_lock:
            readers, self._reader_connections = self._reader_connections, {}
            if self._readers is not None:
                self._readers = threading.local()
        for _thread, reader in readers.values():
            with contextlib.suppress(Exception):  # already broken
                reader.close()
        if self._reader_engine is not None:
            self._reader_engine.dispose()
        self.engine.dispose()

    def _open_writer(self) -> Connection:
        """The writer: to SQLAlchemy, one endless transaction with no BEGIN (`write` begins and
        ends the real ones on the driver: SQLAlchemy's begin and commit cost microseconds)."""
        writer = self.engine.connect()
        if self.is_sqlite:
            writer = writer.execution_options(**{NO_BEGIN: True})
        writer.begin()
        self._writer_driver = writer.connection.dbapi_connection
        self._writer = writer
        return writer

    def _close_writer(self) -> None:
        self._writer_driver = self._writer_pid = None
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # already broken: the pool discards it
                if self._turnstile is not None:
                    writer.invalidate()  # its busy timeout is off (turnstile.py): not for reuse
                writer.close()

    def __repr__(self) -> str:
        return f"Store({redact(self.url)!r})"


def default_read_store(store_url: str) -> str:
    """A separate SQLite file beside a SQLite write store; the same database otherwise."""
    if store_url.startswith("sqlite:///") and not store_url.endswith(":memory:"):
        path = Path(store_url.removeprefix("sqlite:///"))
        return "sqlite:///" + str(path.with_name(f"{path.stem}-read{path.suffix or '.db'}"))
    return store_url


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turns a lost or refused connection into StoreUnavailable, and a value the database
    cannot hold (NUL in text, a number out of range) into InvalidMessage."""
    try:
        yield
    except DataError as error:
        raise InvalidMessage(
            f"a value cannot be stored or compared: {first_line(error.orig)}"
        ) from error
    except sa.exc.TimeoutError as error:  # every pooled connection is in use
        raise StoreUnavailable(f"the store {redact(url)} is busy: no free connection") from error
    except OverflowError as error:  # sqlite3: an integer beyond 64 bits
        raise InvalidMessage(f"a value cannot be stored or compared: {error}") from error
    except OperationalError as error:
        if _is_sqlite_lock(error) or _is_lock_conflict(error):
            raise StoreUnavailable(
                f"the store {redact(url)} is busy: {first_line(error.orig)}"
            ) from error
        if error.connection_invalidated or _is_connection_error(error):
            raise StoreUnavailable(
                f"the store {redact(url)} is unavailable: {first_line(error.orig)}"
            ) from error
        raise
    except sqlite3.OperationalError as error:  # Store.write's own BEGIN, COMMIT or ROLLBACK
        state = "busy" if "database is locked" in str(error) else "unavailable"
        raise StoreUnavailable(f"the store {redact(url)} is {state}: {error}") from error


MISSING_TABLE_ERRORS = (sa.exc.ProgrammingError, OperationalError)
"""What a read raises on a table that no process has created yet."""


def missing_table(error: sa.exc.DBAPIError) -> bool:
    """True for a read of a table that does not exist (or no longer does)."""
    return getattr(error.orig, "sqlstate", None) == "42P01" or "no such table" in str(error.orig)


def first_line(error: object) -> str:
    """The first line of an error's message (driver messages run to several)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _is_sqlite_lock(error: OperationalError) -> bool:
    return "database is locked" in str(error.orig)


def is_lock_conflict(error: BaseException) -> bool:
    """True for a StoreUnavailable caused by a deadlock or a serialization failure."""
    cause = error.__cause__
    return (
        isinstance(error, StoreUnavailable)
        and isinstance(cause, OperationalError)
        and _is_lock_conflict(cause)
    )


def _is_lock_conflict(error: OperationalError) -> bool:
    # PostgreSQL's deadlock_detected and serialization_failure: nothing was written, and the
    # same request may succeed when retried.
    return getattr(error.orig, "sqlstate", None) in ("40P01", "40001")


def _is_connection_error(error: OperationalError) -> bool:
    text = str(error.orig).lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "server closed",
            "terminating",
            "could not connect",
            "timeout",
            "unable to open database",
            "the database system is",
        )
    )
