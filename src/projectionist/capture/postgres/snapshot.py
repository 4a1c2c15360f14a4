"""The initial snapshot of a captured table, consistent with the change stream.

The slot exists before the snapshot is read, so every transaction the snapshot does not see
commits after the slot's start and comes through the stream. The rows are read in a REPEATABLE
READ transaction together with `pg_current_snapshot()`, and appended as `insert` events in that
same transaction with the snapshot recorded beside them. Afterwards the capture skips a streamed
change of that table whose transaction the snapshot saw (`pg_visible_in_snapshot` semantics),
so a row written while the snapshot was taken counts exactly once. A crash before the commit
leaves no trace; the snapshot is taken again at the next start.

The WAL insert position read right after the snapshot bounds it: a transaction the snapshot
saw had written its commit record before, so one whose commit LSN is at or past that position
is new to it, whatever its id. Only transactions that committed before it are looked up by id,
and their ids are close to the snapshot's: pgoutput's 32-bit ids are never read against a
snapshot 2^31 transactions old, where their epoch would be guessed wrong and a new change
skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...eventlog.base import EventLog, NewEvent
from ...messages import encode_event
from ...stores import Store, translate_errors
from ..events import RowChanged
from ..schema import snapshots_table, state_table
from . import pgoutput, values
from .changes import SNAPSHOT, Kept, Row, Streams, metadata, stream_of

_CHUNK = 1000
# The first statement of the REPEATABLE READ transaction: its snapshot is taken as the
# statement starts, and the insert position read while it runs, so after it.
_SNAPSHOT = "SELECT pg_current_snapshot()::text || ':' || pg_current_wal_insert_lsn()::text"
_NOW_LSN: sa.ColumnClause[str] = sa.literal_column(
    "':' || pg_current_wal_insert_lsn()::text", sa.Text()
)
_TYPES = sa.text(
    "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = to_regclass(:name)"
    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A `pg_snapshot`: transactions below xmin are done, from xmax on not yet begun, and
    those in xip were in progress; and the WAL insert position read after it (None for one
    recorded before positions were)."""

    xmin: int
    xmax: int
    xip: frozenset[int]
    lsn: int | None = None

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """From `xmin:xmax:xip` (`pg_snapshot` text), then `:` and the LSN as `X/Y`."""
        xmin, xmax, xip, *lsn = text.split(":")
        return cls(
            int(xmin),
            int(xmax),
            frozenset(int(x) for x in xip.split(",") if x),
            pgoutput.parse_lsn(lsn[0]) if lsn else None,
        )

    def sees(self, xid: int, commit_lsn: int) -> bool:
        """Whether the snapshot saw the work of the transaction that committed at
        `commit_lsn`: never at or past the snapshot's LSN, else by its id."""
        if self.lsn is not None and commit_lsn >= self.lsn:
            return False
        return self.visible(xid)

    def visible(self, xid: int) -> bool:
        """Whether the snapshot sees the work of transaction `xid` (32 bits, as pgoutput
        sends it), widened to 64 bits by the epoch nearest the snapshot."""
        full = (self.xmax & ~0xFFFFFFFF) | (xid & 0xFFFFFFFF)
        if full > self.xmax + 0x7FFFFFFF:
            full -= 1 << 32
        elif full < self.xmax - 0x80000000:
            full += 1 << 32
        return full < self.xmin or (full < self.xmax and full not in self.xip)


def bound_unbounded(store: Store, slot: str, recorded: Sequence[tuple[str, str | None]]) -> bool:
    """Gives the snapshots recorded without an LSN (by an earlier release) the WAL insert
    position now, later than their own: safe for every transaction committed after it, and
    the ones before are the capture's lag at most. Whether any was given one."""
    unbounded = [table for table, seen in recorded if seen is not None and seen.count(":") == 2]
    if not unbounded:
        return False
    with store.write() as connection:
        connection.execute(
            sa.update(snapshots_table)
            .where(
                snapshots_table.c.slot == slot,
                snapshots_table.c.table_name.in_(unbounded),
                ~snapshots_table.c.snapshot.contains("/"),
            )
            .values(snapshot=snapshots_table.c.snapshot + _NOW_LSN)
        )
    return True


def take(store: Store, log: EventLog, kept: Kept, slot: str, schema: str) -> int:
    """Appends an `insert` of every row of the table and records the snapshot; the count.

    Does nothing when the snapshot is not pending any more (another process took it).
    """
    shape = kept.shape
    with translate_errors(store.url), store.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin() as transaction:
            seen = connection.exec_driver_sql(_SNAPSHOT).scalar_one()
            types = {
                str(name): int(oid)
                for name, oid in connection.execute(_TYPES, {"name": f'"{schema}"."{shape.table}"'})
            }
            columns = list(types) if kept.keep_all else [c for c in shape.columns if c in types]
            streams = Streams(connection)
            now = time.time()
            events = [
                _insert(streams, shape.table, shape.key, columns, row, now)
                for row in _rows(connection, schema, shape.table, shape.key, columns, types)
            ]
            last = 0
            for start in range(0, len(events), _CHUNK):
                last = log.append(connection, events[start : start + _CHUNK])[-1]
            recorded = connection.execute(
                sa.update(snapshots_table)
                .where(
                    snapshots_table.c.slot == slot,
                    snapshots_table.c.table_name == shape.table,
                    snapshots_table.c.snapshot.is_(None),
                )
                .values(snapshot=seen, position=last, rows=len(events), taken_at=now)
            ).rowcount
            if not recorded:
                transaction.rollback()
                return 0
            if last:
                connection.execute(
                    sa.update(state_table)
                    .where(state_table.c.slot == slot, state_table.c.position < last)
                    .values(position=last)
                )
    return len(events)


def _rows(
    connection: Connection,
    schema: str,
    table: str,
    key: tuple[str, ...],
    columns: list[str],
    types: dict[str, int],
) -> list[Row]:
    names = list(dict.fromkeys([*key, *columns]))
    selected = ", ".join(f'"{c}"::text' for c in names)
    order = ", ".join(f'"{c}"' for c in key)
    found = connection.exec_driver_sql(
        f'SELECT {selected} FROM "{schema}"."{table}" ORDER BY {order}'
    ).fetchall()
    return [
        {
            name: None if text is None else values.value(types[name], text.encode())
            for name, text in zip(names, row, strict=True)
        }
        for row in found
    ]


def _insert(
    streams: Streams,
    table: str,
    key: tuple[str, ...],
    columns: list[str],
    row: Row,
    now: float,
) -> NewEvent:
    keys = {k: row[k] for k in key}
    kept = {c: row[c] for c in columns}
    stream = stream_of(table, keys)
    event = RowChanged(table=table, op="insert", key=keys, row=kept)
    return NewEvent(
        stream,
        streams.next_version(stream, kept),
        RowChanged.type_name,
        RowChanged.schema_version,
        encode_event(event),
        metadata(SNAPSHOT, None, None),
        now,
    )
