"""The initial snapshot of a captured table, consistent with the change stream.

The slot exists before the snapshot is read, so every transaction the snapshot does not see
commits after the slot's start and comes through the stream. The rows are read in a REPEATABLE
READ transaction together with `pg_current_snapshot()`, and appended as `insert` events in that
same transaction with the snapshot recorded beside them. Afterwards the capture skips a streamed
change of that table whose transaction the snapshot saw (`pg_visible_in_snapshot` semantics),
so a row written while the snapshot was taken counts exactly once. A crash before the commit
leaves no trace; the snapshot is taken again at the next start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...eventlog.base import EventLog, NewEvent
from ...messages import encode_event
from ...stores import Store, translate_errors
from ..events import RowChanged
from ..schema import snapshots_table, state_table
from . import values
from .changes import SNAPSHOT, Kept, Row, Streams, metadata, stream_of

_CHUNK = 1000
_TYPES = sa.text(
    "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = to_regclass(:name)"
    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A `pg_snapshot`: transactions below xmin are done, from xmax on not yet begun, and
    those in xip were in progress."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def visible(self, xid: int) -> bool:
        """Whether the snapshot sees the work of transaction `xid` (32 bits, as pgoutput
        sends it), widened to 64 bits by the epoch nearest the snapshot."""
        full = (self.xmax & ~0xFFFFFFFF) | (xid & 0xFFFFFFFF)
        if full > self.xmax + 0x7FFFFFFF:
            full -= 1 << 32
        elif full < self.xmax - 0x80000000:
            full += 1 << 32
        return full < self.xmin or (full < self.xmax and full not in self.xip)


def take(store: Store, log: EventLog, kept: Kept, slot: str, schema: str) -> int:
    """Appends an `insert` of every row of the table and records the snapshot; the count.

    Does nothing when the snapshot is not pending any more (another process took it).
    """
    shape = kept.shape
    with translate_errors(store.url), store.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin() as transaction:
            seen = connection.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar_one()
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
