"""What tables occupy: bytes on disk and rows, measured cheaply enough to serve on every scrape.

Bytes: on PostgreSQL `pg_total_relation_size` (the table, its indexes and TOAST); on SQLite
the `dbstat` virtual table summed over the table's b-trees (its own and its indexes'). A SQLite
built without `dbstat` gets the database's pages in use shared out by row counts instead.

Rows are counted exactly up to a bound (COUNT_BOUND rows on SQLite, POSTGRES_COUNT_BOUND on
PostgreSQL) and estimated beyond it: on PostgreSQL from the statistics collector's live rows
(`pg_stat_user_tables.n_live_tup`), or else `pg_class.reltuples` scaled to the table's size,
or else (a table filled seconds ago) the rows per page of the rows counted times its pages; on
SQLite from the highest rowid (deleted rows leave gaps, so the estimate errs high).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger("projectionist.projections")

COUNT_BOUND = 1_000_000
"""SQLite counts this many rows in tens of milliseconds; more are estimated."""
POSTGRES_COUNT_BOUND = 100_000
"""PostgreSQL reads every row it counts; past this, its statistics serve."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Footprint:
    """Bytes on disk and rows of a set of tables (one build's, or the log's)."""

    storage_bytes: int
    rows: int
    rows_estimated: bool

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(
            self.storage_bytes + other.storage_bytes,
            self.rows + other.rows,
            self.rows_estimated or other.rows_estimated,
        )


NOTHING = Footprint(0, 0, False)


def measure_tables(connection: Connection, tables: Sequence[str]) -> Footprint:
    """The footprint of `tables`; a table that does not exist (yet) counts as empty."""
    total = NOTHING
    for table in tables:
        if connection.dialect.name == "postgresql":
            total += _postgres(connection, table)
        else:
            total += _sqlite(connection, table)
    return total


def _postgres(connection: Connection, table: str) -> Footprint:
    # The live rows the statistics collector counts, fresh to a second or so; failing that
    # (statistics reset), reltuples scaled to the table's pages now, as the planner does.
    found = connection.execute(
        sa.text(
            "SELECT pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0),"
            " CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages"
            " * (pg_relation_size(c.oid) / current_setting('block_size')::int) ELSE 0 END"
            " FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE c.oid = to_regclass(quote_ident(:table))"
        ),
        {"table": table},
    ).first()
    if found is None:
        return NOTHING
    size, estimate = int(found[0]), int(found[1] or found[2])
    if estimate > POSTGRES_COUNT_BOUND:
        return Footprint(size, estimate, True)
    counted, blocks = connection.exec_driver_sql(
        "SELECT count(*), max((ctid::text::point)[0]) - min((ctid::text::point)[0]) + 1"
        f' FROM (SELECT ctid FROM "{table}" LIMIT {POSTGRES_COUNT_BOUND + 1}) AS counted'
    ).one()
    if counted <= POSTGRES_COUNT_BOUND:
        return Footprint(size, counted, False)
    if not estimate:
        # No statistics yet (a table filled seconds ago): the rows per page of those counted,
        # times the table's pages.
        pages = connection.execute(
            sa.text(
                "SELECT pg_relation_size(to_regclass(quote_ident(:table)))"
                " / current_setting('block_size')::int"
            ),
            {"table": table},
        ).scalar_one()
        estimate = int(counted / blocks * pages)
    return Footprint(size, max(estimate, counted), True)


def _sqlite(connection: Connection, table: str) -> Footprint:
    names = [
        row[0]
        for row in connection.execute(
            sa.text("SELECT name FROM sqlite_master WHERE tbl_name = :table"), {"table": table}
        )
    ]
    if table not in names:
        return NOTHING
    counted = _bounded_count(connection, table, COUNT_BOUND)
    rows, estimated = counted, False
    if counted > COUNT_BOUND:
        highest = connection.exec_driver_sql(f'SELECT max(rowid) FROM "{table}"').scalar()
        rows, estimated = max(counted, int(highest or 0)), True
    return Footprint(_sqlite_bytes(connection, table, names, rows), rows, estimated)


def has_dbstat(connection: Connection) -> bool:
    """Whether this SQLite has the `dbstat` virtual table (SQLITE_ENABLE_DBSTAT_VTAB)."""
    options = {row[0] for row in connection.exec_driver_sql("PRAGMA compile_options")}
    return "ENABLE_DBSTAT_VTAB" in options


def _sqlite_bytes(connection: Connection, table: str, names: list[str], rows: int) -> int:
    if has_dbstat(connection):
        page_size = int(connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)
        total = 0
        for name in names:
            # One row per b-tree (aggregate): SQLite walks that b-tree's pages only. Its
            # `pgsize` wraps at 4 GiB (a 32-bit sum, SQLite 3.40); `pageno`, the b-tree's page
            # count there, does not.
            pages = connection.execute(
                sa.text("SELECT pageno FROM dbstat WHERE name = :name AND aggregate = 1"),
                {"name": name},
            ).scalar()
            total += int(pages or 0) * page_size
        return total
    return pages_share(connection, rows)


def pages_share(connection: Connection, rows: int) -> int:
    """A table's share of the database's pages in use, in proportion to its rows."""
    page_size = int(connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)
    pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
    tables = [
        row[0]
        for row in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    every_row = sum(_bounded_count(connection, name, COUNT_BOUND) for name in tables)
    return (pages - free) * page_size * rows // every_row if every_row else 0


def _bounded_count(connection: Connection, table: str, bound: int) -> int:
    """The table's rows, counted up to `bound + 1`."""
    return int(
        connection.exec_driver_sql(
            f'SELECT count(*) FROM (SELECT 1 FROM "{table}" LIMIT {bound + 1}) AS counted'
        ).scalar()
        or 0
    )


class Cached(Generic[T]):
    """A measurement taken at most every `ttl_s`.

    The first call measures in the caller's thread. Later, a caller finding it stale gets the
    last figures at once while a thread of its own measures anew, so a slow measurement never
    holds up an answer. A measurement that took long (`dbstat` walks every page of a large
    SQLite table) is taken again only after ten times as long, so measuring never takes more
    than a tenth of a core.
    """

    def __init__(self, measure: Callable[[], T], *, ttl_s: float = 5.0) -> None:
        self._measure = measure
        self.ttl_s = ttl_s
        self._value: T | None = None
        self._at = 0.0
        self._spent = 0.0
        self._lock = threading.Lock()
        self._refreshing = False
        self._thread: threading.Thread | None = None
        self._closed = False

    def get(self) -> T:
        """The figures, measured now if none were, else at most `ttl_s` (plus a refresh) old."""
        with self._lock:
            value = self._value
            stale = time.monotonic() - self._at > max(self.ttl_s, 10 * self._spent)
            if value is not None and stale and not self._refreshing and not self._closed:
                self._refreshing = True
                self._thread = threading.Thread(
                    target=self._refresh, name="projectionist-storage", daemon=True
                )
                self._thread.start()
        return value if value is not None else self.refresh()

    def refresh(self) -> T:
        """Measures now, in this thread."""
        began = time.monotonic()
        value = self._measure()
        with self._lock:
            self._value, self._at = value, time.monotonic()
            self._spent = self._at - began
        return value

    def close(self, timeout_s: float = 10.0) -> None:
        """Waits for a measurement under way and starts no other, so none uses a store after
        it is disposed."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _refresh(self) -> None:
        try:
            self.refresh()
        except Exception as error:  # a store is down: keep the last figures
            log.debug("could not measure the read store: %s", error)
        finally:
            with self._lock:
                self._refreshing = False
