"""Engines from store URLs: the driver, its pool and the session settings of each backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool, StaticPool

from .driver import guard_held_writes
from .errors import ConfigurationError

NO_BEGIN = "projectionist_no_begin"
"""An execution option: SQLAlchemy's begin sends no BEGIN on this SQLite connection."""


def redact(url: str) -> str:
    """The URL without its password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def in_memory(url: str) -> bool:
    database = sa.engine.make_url(url).database or ""
    return database in ("", ":memory:")


def create_engine(
    url: str, *, pool_size: int, timeout_s: float, durable: bool, pooled: bool = True
) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{url!r} is not a store URL; use sqlite:///path.db or"
            " postgresql+psycopg://user:password@host/database"
        ) from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _create_sqlite_engine(
                parsed, timeout_s=timeout_s, durable=durable, pooled=pooled
            )
        if backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = sa.create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=timeout_s,
                # No pre-ping (a round trip per checkout): a lost connection fails one
                # request, which SQLAlchemy turns into a refresh of the whole pool.
                connect_args={
                    "connect_timeout": max(1, int(min(timeout_s, 3.0))),
                    # Every wait is bounded: a lock held too long or a stuck statement ends
                    # in a clear error (503) rather than a hung request. The URL's own options
                    # (a search_path...) follow, or this argument would drop them.
                    "options": f"-c lock_timeout={int(timeout_s * 1000)}"
                    f" -c statement_timeout={int(timeout_s * 6000)}"
                    f" -c idle_in_transaction_session_timeout={int(timeout_s * 6000)}"
                    # A read store apart from the write store holds what the log can rebuild,
                    # each build's checkpoint in the same transaction as its rows: like
                    # SQLite's synchronous=NORMAL there, a crash may lose its last commits,
                    # never half of one, and the projector applies those events again.
                    + ("" if durable else " -c synchronous_commit=off")
                    + "".join(f" {o}" for o in _url_options(parsed)),
                },
            )
            guard_held_writes(engine)
            return engine
    except NoSuchModuleError as error:
        raise ConfigurationError(f"no driver for {redact(url)}: {error}") from None
    raise ConfigurationError(
        f"unsupported store {backend!r} in {redact(url)}; projectionist supports sqlite and"
        " postgresql"
    )


def _url_options(url: sa.engine.URL) -> tuple[str, ...]:
    options = url.query.get("options", ())
    return (options,) if isinstance(options, str) else tuple(options)


def _create_sqlite_engine(
    url: sa.engine.URL, *, timeout_s: float, durable: bool, pooled: bool = True
) -> Engine:
    database = url.database or ""
    memory = database in ("", ":memory:")
    if not memory:
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigurationError(f"the folder {parent} for the SQLite store does not exist")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool
    elif not pooled:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=8, max_overflow=16, pool_timeout=timeout_s)
    engine = sa.create_engine(url, **kwargs)
    busy_ms = int(timeout_s * 1000)

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # BEGIN: the "begin" event and Store.write
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(NO_BEGIN):
            return  # Store.single (each statement its own transaction) and Store.write
        # Straight to the driver: SQLAlchemy's own execution of BEGIN costs several times more.
        connection.connection.dbapi_connection.execute("BEGIN")  # type: ignore[union-attr]

    return engine
