"""The event log on SQLite: one writer at a time, so rowid order is commit order."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from ..driver import Sql
from ..errors import ConcurrencyError
from ..messages import StoredEvent
from .base import EventLog, NewEvent
from .schema import COLUMNS, metadata

_INSERT = (
    "INSERT INTO projectionist_events"
    " (stream, version, type, schema_version, data, metadata, recorded_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_READ = Sql(
    f"SELECT {COLUMNS} FROM projectionist_events WHERE position > ? ORDER BY position LIMIT ?"
)
_STREAM_VERSION = "SELECT max(version) FROM projectionist_events WHERE stream = ?"
_HEAD = Sql("SELECT max(position) FROM projectionist_events")


class SQLiteEventLog(EventLog):
    """SQLite serializes writers, so a committed position is never overtaken by an earlier one."""

    def install(self) -> None:
        with self.store.schema() as connection:
            metadata.create_all(connection)

    def stream_version(self, connection: Connection, stream: str) -> int:
        # On the driver's connection, inside the caller's transaction: once per command.
        driver = connection.connection.driver_connection
        row = driver.execute(_STREAM_VERSION, (stream,)).fetchone()  # type: ignore[union-attr]
        return int(row[0]) if row is not None and row[0] is not None else 0

    def append(
        self, connection: Connection, events: Sequence[NewEvent], *, last: bool = False
    ) -> list[int]:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        rows = [
            (e.stream, e.version, e.type, e.schema_version, e.data, e.metadata, e.recorded_at)
            for e in events
        ]
        try:
            cursor.execute(_INSERT, rows[0])
            first = int(cursor.lastrowid or 0)
            if len(rows) > 1:
                cursor.executemany(_INSERT, rows[1:])
        except sqlite3.IntegrityError as error:
            # Versions are decided under SQLite's single write lock, so a clash means a
            # caller expected a version that another command already took.
            clash = next(
                (e for e in events if self.stream_version(connection, e.stream) >= e.version),
                events[0],
            )
            actual = self.stream_version(connection, clash.stream)
            raise ConcurrencyError(clash.stream, clash.version - 1, actual) from error
        finally:
            cursor.close()
        # One writer at a time and AUTOINCREMENT: the rows took consecutive positions.
        return list(range(first, first + len(rows)))

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        return [StoredEvent(*row) for row in self.store.fetch(_READ, (after, limit))]

    def head(self) -> int:
        return int(self.store.fetch(_HEAD)[0][0] or 0)
