"""Row changes of committed transactions as RowChanged events, in the shape the SQLite triggers
write: stream `<table>:<key values joined by ':'>`, `key`, `row` and `old` of the kept columns.

pgoutput sends no old row unless the table has REPLICA IDENTITY FULL, and marks a TOASTed value
that an UPDATE left alone as unchanged ('u') rather than sending it. Both come from the row's
previous event instead: the capture writes every change of a row to its stream in commit order,
so the stream's last event holds the row as it stood before this change. A value that event
does not hold (the kept columns changed since) is read from the table, which may be newer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...driver import Sql
from ...eventlog.base import NewEvent
from ...eventlog.schema import events_table
from ...ids import uuid4_hex
from ...messages import encode_event
from ..declaration import Shape
from ..events import Operation, RowChanged
from . import pgoutput, values
from .pgoutput import Column, Delete, Insert, Relation, Truncate, Update
from .transactions import Change, Transaction

log = logging.getLogger("projectionist.capture")

CAPTURED = "capture"
SNAPSHOT = "capture-snapshot"
Row = dict[str, Any]
Visible = Callable[[str, int, int], bool]
"""Whether a transaction (table, xid, commit LSN) is in a table's snapshot already, so
skipped."""


@dataclass(frozen=True, slots=True)
class Kept:
    """A captured table: its shape, and whether it keeps every column the table has now."""

    shape: Shape
    keep_all: bool

    def columns(self, relation: Relation) -> list[str]:
        present = [c.name for c in relation.columns]
        if self.keep_all:
            return present
        return [c for c in self.shape.columns if c in present]


_UNCHANGED = object()
PRELOAD_CHUNK = 1000
_LAST_EVENTS = Sql(
    "SELECT e.stream, e.version, e.type, e.data FROM unnest(?::text[]) AS s(stream)"
    " CROSS JOIN LATERAL (SELECT stream, version, type, data FROM projectionist_events"
    " WHERE stream = s.stream ORDER BY version DESC LIMIT 1) AS e",
    binary=True,
)


class Translator:
    """Turns the changes of committed transactions into the events to append."""

    def __init__(self, tables: Mapping[str, Kept], schema: str) -> None:
        self.tables = tables
        self.schema = schema

    def events(
        self, connection: Connection, transactions: Sequence[Transaction], visible: Visible
    ) -> list[NewEvent]:
        """The events of `transactions`, in commit order, with their stream versions."""
        streams = Streams(connection)
        captured = [
            (transaction, kept, change, *_decoded(change))
            for transaction in transactions
            for change in transaction.changes
            if (kept := self.tables.get(change.relation.name)) is not None
            and change.relation.namespace == self.schema
            and not visible(change.relation.name, transaction.xid, transaction.commit_lsn)
        ]
        streams.preload(
            {s for _, kept, change, new, old in captured for s in _streams_of(kept, new, old)}
        )
        made: list[NewEvent] = []
        tails: dict[int, str] = {}
        for transaction, kept, change, new, old in captured:
            tail = tails.get(transaction.xid)
            if tail is None:
                tail = tails[transaction.xid] = metadata_tail(
                    CAPTURED, transaction.commit_lsn, transaction.xid
                )
            for op, key, row, before in self._rows(connection, streams, kept, change, new, old):
                stream = stream_of(kept.shape.table, key)
                event = RowChanged(table=kept.shape.table, op=op, key=key, row=row, old=before)
                made.append(
                    NewEvent(
                        stream,
                        streams.next_version(stream, row),
                        RowChanged.type_name,
                        RowChanged.schema_version,
                        encode_event(event),
                        with_event_id(tail),
                        transaction.committed_at,
                    )
                )
        return made

    def _rows(
        self,
        connection: Connection,
        streams: Streams,
        kept: Kept,
        change: Change,
        new: Row | None,
        old: Row | None,
    ) -> Iterator[tuple[Operation, Row, Row | None, Row | None]]:
        relation, message = change.relation, change.message
        shape = kept.shape
        columns = kept.columns(relation)
        if isinstance(message, Insert):
            assert new is not None
            yield "insert", _pick(new, shape.key), _pick(new, columns), None
        elif isinstance(message, Delete):
            sent = old or {}
            key = _pick(sent, shape.key)
            before = streams.row(stream_of(shape.table, key))
            if message.old_kind == "O":
                before = _pick(sent, columns)
            elif before is None:
                before = _pick(sent, columns, skip_missing=True)
            yield "delete", key, None, before
        elif isinstance(message, Update):
            assert new is not None
            yield from self._update(connection, streams, kept, message, new, old, columns)
        elif isinstance(message, Truncate):
            for key, before in streams.live(connection, shape):
                yield "delete", key, None, before

    def _update(
        self,
        connection: Connection,
        streams: Streams,
        kept: Kept,
        message: Update,
        new: Row,
        old: Row | None,
        columns: list[str],
    ) -> Iterator[tuple[Operation, Row, Row | None, Row | None]]:
        shape = kept.shape
        sent_old = old or {}
        key = _pick(new, shape.key)
        old_key = key
        if all(sent_old.get(k) is not None for k in shape.key) and sent_old:
            old_key = _pick(sent_old, shape.key)
        previous = streams.row(stream_of(shape.table, old_key))
        before = _pick(sent_old, columns) if message.old_kind == "O" else previous
        for name in columns:
            if new.get(name) is _UNCHANGED:
                new[name] = self._unchanged(connection, shape, key, name, before, previous)
        row = _pick(new, columns)
        if old_key != key:
            # A new primary key is another row to whoever keys by it.
            yield "delete", old_key, None, before
            yield "insert", key, row, None
        elif before != row:
            yield "update", key, row, before

    def _unchanged(
        self,
        connection: Connection,
        shape: Shape,
        key: Row,
        name: str,
        before: Row | None,
        previous: Row | None,
    ) -> Any:
        for known in (before, previous):
            if known is not None and name in known and known[name] is not _UNCHANGED:
                return known[name]
        log.warning(
            "the unchanged value of %s.%s is not in the row's last event; read from the table",
            shape.table,
            name,
        )
        table = sa.table(shape.table, *(sa.column(c) for c in (*shape.key, name)))
        found = connection.execute(
            sa.select(table.c[name]).where(*(table.c[k] == v for k, v in key.items()))
        ).first()
        return None if found is None else found[0]


class Streams:
    """The version and the last row of each stream the events being made touch."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.known: dict[str, tuple[int, Row | None]] = {}

    def preload(self, streams: Collection[str]) -> None:
        """Reads the last event of each of `streams` not known yet, in a query per
        `PRELOAD_CHUNK`: a round of thousands of changes costs a few round trips, not one
        per row."""
        missing = sorted(s for s in streams if s not in self.known)
        for at in range(0, len(missing), PRELOAD_CHUNK):
            chunk = missing[at : at + PRELOAD_CHUNK]
            found = {
                str(stream): (int(version), _row_of(str(type_), data))
                for stream, version, type_, data in _LAST_EVENTS.rows(self.connection, (chunk,))
            }
            for stream in chunk:
                self.known[stream] = found.get(stream, (0, None))

    def _load(self, stream: str) -> tuple[int, Row | None]:
        known = self.known.get(stream)
        if known is None:
            last = self.connection.execute(
                sa.select(events_table.c.version, events_table.c.type, events_table.c.data)
                .where(events_table.c.stream == stream)
                .order_by(events_table.c.version.desc())
                .limit(1)
            ).first()
            known = (
                (0, None) if last is None else (int(last.version), _row_of(last.type, last.data))
            )
            self.known[stream] = known
        return known

    def row(self, stream: str) -> Row | None:
        return self._load(stream)[1]

    def next_version(self, stream: str, row: Row | None) -> int:
        version = self._load(stream)[0] + 1
        self.known[stream] = (version, row)
        return version

    def live(self, connection: Connection, shape: Shape) -> list[tuple[Row, Row]]:
        """The rows of a table that its events hold now: (key, row) of each live stream."""
        prefix = f"{shape.table}:"
        newest = (
            sa.select(
                events_table.c.stream,
                sa.func.max(events_table.c.version).label("version"),
            )
            .where(events_table.c.stream.startswith(prefix, autoescape=True))
            .group_by(events_table.c.stream)
            .subquery()
        )
        found = connection.execute(
            sa.select(events_table.c.stream).join(
                newest,
                sa.and_(
                    events_table.c.stream == newest.c.stream,
                    events_table.c.version == newest.c.version,
                ),
            )
        ).scalars()
        for stream in found:
            self._load(stream)
        live = []
        for stream, (_, row) in self.known.items():
            if stream.startswith(prefix) and row is not None:
                live.append(({k: row.get(k) for k in shape.key}, row))
        return live


def _row_of(type_name: str, data: str) -> Row | None:
    """The row an event left its stream at: a RowChanged's `row`; nothing for other events."""
    return json.loads(data).get("row") if type_name == RowChanged.type_name else None


def _decoded(change: Change) -> tuple[Row | None, Row | None]:
    """The new row and the old key or row a change sent, decoded (each once per change)."""
    message = change.message
    if isinstance(message, Truncate):
        return None, None
    new = getattr(message, "new", None)
    old = getattr(message, "old", None)
    return (
        None if new is None else _decode(change.relation, new),
        None if old is None else _decode(change.relation, old),
    )


def _streams_of(kept: Kept, new: Row | None, old: Row | None) -> Iterator[str]:
    """The streams a change touches: its row's, and the old key's when the key changed."""
    for row in (new, old):
        if row is not None:
            key = _pick(row, kept.shape.key)
            if all(v is not None and v is not _UNCHANGED for v in key.values()):
                yield stream_of(kept.shape.table, key)


def _decode(relation: Relation, tuple_data: Sequence[Column]) -> Row:
    row: Row = {}
    for column, (kind, data) in zip(relation.columns, tuple_data, strict=False):
        if kind == "n" or data is None:
            row[column.name] = _UNCHANGED if kind == "u" else None
        elif kind == "t":
            row[column.name] = values.value(column.type_oid, data)
        else:
            row[column.name] = values.binary_value(data)
    return row


def _pick(row: Row, columns: Sequence[str], *, skip_missing: bool = False) -> Row:
    if skip_missing:
        return {c: row[c] for c in columns if row.get(c) is not None}
    return {c: row.get(c) for c in columns}


def stream_of(table: str, key: Mapping[str, Any]) -> str:
    """`<table>:<key values joined by ':'>`, as the SQLite triggers name a row's stream."""
    return f"{table}:" + ":".join(_key_text(v) for v in key.values())


def _key_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def metadata(command_id: str, lsn: int | None, xid: int | None) -> str:
    """The metadata of a captured event: who wrote it is unknown; where, in the WAL, is."""
    return with_event_id(metadata_tail(command_id, lsn, xid))


def metadata_tail(command_id: str, lsn: int | None, xid: int | None) -> str:
    """The metadata after its event id, the same for every event of a transaction."""
    body: dict[str, Any] = {
        "command_id": command_id,
        "correlation_id": CAPTURED,
        "subject": None,
        "token_id": None,
    }
    if lsn is not None:
        body["lsn"] = pgoutput.lsn_text(lsn)
    if xid is not None:
        body["xid"] = xid
    return json.dumps(body, separators=(",", ":"))[1:]


def with_event_id(tail: str) -> str:
    """The whole metadata: a new event id, then `tail`."""
    return f'{{"event_id":"{uuid4_hex()}",{tail}'
