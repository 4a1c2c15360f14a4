"""The event log on PostgreSQL, with positions that follow commit order.

Why not a sequence alone: transaction A can take position 10, transaction B position 11, and B
can commit first. A reader that sees 11 and moves its checkpoint past 10 never sees 10.

Why not `pg_current_xact_id()` below `pg_snapshot_xmin(...)` with an integer checkpoint: a
transaction gets its id at its first write, which for a command is a write-model row, long
before its events take positions. A (id 100) can then take position 11 after B (id 101) took
10; once A commits and B is still open, the snapshot's xmin is 101, so a reader sees 11 and not
10, and skips 10 for good. That scheme is sound only with (transaction id, position) pairs as
checkpoints, which would make the consistency token two numbers.

What this log does: a command appends its events at the end of its transaction, under a
transaction-scoped advisory lock. The lock is released only after the commit is visible, so
positions are taken in commit order: when a reader sees position N, every position below N is
committed or rolled back for good. The lock covers only the append and the commit, and the
group commit of the command side amortizes it over many commands.

The database enforces the rule itself: a BEFORE INSERT statement trigger takes the lock before
any row draws a position, so every writer follows it, and an AFTER INSERT statement trigger
sends the NOTIFY that wakes projectors at commit. An append is one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..driver import Sql
from ..errors import ConcurrencyError
from ..messages import StoredEvent
from ..wakeups import HighWater
from ..wakeups.postgres import Listener
from .base import EventLog, NewEvent
from .schema import COLUMNS, metadata

CHANNEL = "projectionist_events"
"""The NOTIFY channel of appends; its payload is the last position appended."""
APPEND_LOCK_KEY = 7_311_201_002
"""The advisory lock of appends: an arbitrary constant that every process agrees on."""

_TRIGGERS = (
    f"""CREATE OR REPLACE FUNCTION projectionist_events_lock() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN
        PERFORM pg_advisory_xact_lock({APPEND_LOCK_KEY});
        RETURN NULL;
    END $$""",
    f"""CREATE OR REPLACE FUNCTION projectionist_events_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN
        PERFORM pg_notify('{CHANNEL}', (SELECT max(position)::text FROM added));
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER projectionist_events_lock BEFORE INSERT ON projectionist_events
    FOR EACH STATEMENT EXECUTE FUNCTION projectionist_events_lock()""",
    """CREATE TRIGGER projectionist_events_notify AFTER INSERT ON projectionist_events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION projectionist_events_notify()""",
)
_HAS_TRIGGERS = sa.text(
    "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'projectionist_events'::regclass"
    " AND tgname IN ('projectionist_events_lock', 'projectionist_events_notify')"
)
_READ = Sql(
    f"SELECT {COLUMNS} FROM projectionist_events WHERE position > ? ORDER BY position LIMIT ?"
)
_STREAM_VERSION = Sql("SELECT max(version) FROM projectionist_events WHERE stream = ?")
_HEAD = Sql("SELECT max(position) FROM projectionist_events")
# One statement of constant text whatever the count of events, the columns passed as arrays: a
# multi-row VALUES list would be new text (parsed again by the driver and the server) per count.
# Positions are drawn in the order of the rows, which is the order of the arrays.
_APPEND = Sql(
    "INSERT INTO projectionist_events"
    " (stream, version, type, schema_version, data, metadata, recorded_at)"
    " SELECT stream, version, type, schema_version, data, metadata, recorded_at"
    " FROM unnest(?::text[], ?::int[], ?::text[], ?::int[], ?::text[], ?::text[], ?::float8[])"
    " WITH ORDINALITY AS e(stream, version, type, schema_version, data, metadata, recorded_at, n)"
    " ORDER BY n RETURNING position",
    binary=True,
)
# One event, the most common append: scalars cost the driver far less to send than arrays.
_APPEND_ONE = Sql(
    "INSERT INTO projectionist_events"
    " (stream, version, type, schema_version, data, metadata, recorded_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING position"
)


class PostgresEventLog(EventLog):
    """Appends under a commit-scoped lock so positions follow commit order."""

    def install(self) -> None:
        with self.store.schema() as connection:
            metadata.create_all(connection)
            # Creating a trigger locks the whole log: do it once, not at every start.
            if connection.execute(_HAS_TRIGGERS).scalar_one() < 2:
                connection.exec_driver_sql(
                    "DROP TRIGGER IF EXISTS projectionist_events_lock ON projectionist_events"
                )
                connection.exec_driver_sql(
                    "DROP TRIGGER IF EXISTS projectionist_events_notify ON projectionist_events"
                )
                for statement in _TRIGGERS:
                    connection.exec_driver_sql(statement)

    def stream_version(self, connection: Connection, stream: str) -> int:
        # On the driver's cursor, inside the caller's transaction: once per command.
        [(value,)] = _STREAM_VERSION.rows(connection, (stream,))
        return int(value or 0)

    def append(
        self, connection: Connection, events: Sequence[NewEvent], *, last: bool = False
    ) -> list[int]:
        if len(events) == 1:
            [e] = events
            statement = _APPEND_ONE
            params: Sequence[object] = (
                e.stream,
                e.version,
                e.type,
                e.schema_version,
                e.data,
                e.metadata,
                e.recorded_at,
            )
        else:
            statement = _APPEND
            params = (
                [e.stream for e in events],
                [e.version for e in events],
                [e.type for e in events],
                [e.schema_version for e in events],
                [e.data for e in events],
                [e.metadata for e in events],
                [e.recorded_at for e in events],
            )
        try:
            rows = statement.rows(connection, params, last=last)
        except IntegrityError as error:
            if "projectionist_events_stream_version" not in str(error.orig):
                raise
            stream, version = _clash(error, events)
            # The transaction is aborted now, so the stream's version cannot be read again;
            # another command has taken `version`, so the stream is at least there.
            raise ConcurrencyError(stream, version - 1, version) from error
        return sorted(int(p) for (p,) in rows)

    def wakeups(self, high_water: HighWater) -> Listener:
        """Advances `high_water` at each append that commits, in any process."""

        def appended(payload: str) -> None:
            if payload.isdigit():
                position = int(payload)
                high_water.advance(position, position, time.time())

        # A commit of this process's group commit reaches its projectors in memory, along
        # with its events; its NOTIFY, which can arrive first, would send them to the log.
        return Listener(self.store.url, CHANNEL, appended, ignore=self.store.writes_from)

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        return [StoredEvent(*row) for row in self.store.fetch(_READ, (after, limit))]

    def head(self) -> int:
        return int(self.store.fetch(_HEAD)[0][0] or 0)


def _clash(error: IntegrityError, events: Sequence[NewEvent]) -> tuple[str, int]:
    detail = getattr(getattr(error.orig, "diag", None), "message_detail", None) or ""
    # "Key (stream, version)=(order-1, 2) already exists."
    inside = detail.partition(")=(")[2].rpartition(") already exists")[0]
    stream, _, version = inside.rpartition(", ")
    if stream and version.isdigit():
        return stream, int(version)
    return events[0].stream, events[0].version
