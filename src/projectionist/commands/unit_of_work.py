"""The unit of work a command handler gets: the write transaction and the events it records."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from ..auth import Principal
from ..driver import Sql, send_held
from ..errors import ConcurrencyError
from ..eventlog import EventLog, NewEvent
from ..ids import uuid4_text
from ..messages import Event, EventMetadata, Registry, StoredEvent, encode_event
from ..tracing import span
from .aggregates import Aggregate
from .stream_versions import StreamVersions

A = TypeVar("A", bound=Aggregate)

ANY_VERSION = -1
"""`expected_version` that accepts any current version of the stream."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event the command appended: its type, stream, version and global position."""

    type: str
    stream: str
    version: int
    position: int


class UnitOfWork:
    """One command's transaction over the write store.

    Handlers change the write model through `connection` and call `record`; the table changes
    and the events commit together, or neither does.
    """

    def __init__(
        self,
        connection: Connection,
        log: EventLog,
        registry: Registry,
        *,
        command_id: str,
        correlation_id: str,
        principal: Principal,
        known_versions: Mapping[str, int] | None = None,
        remembered: StreamVersions | None = None,
    ) -> None:
        self.connection = connection
        self._known = known_versions or {}
        self._remembered = remembered
        self._guessed: set[str] = set()
        self.command_id = command_id
        self.correlation_id = correlation_id
        self.principal = principal
        self._log = log
        self._registry = registry
        self._versions: dict[str, int] = {}
        self._pending: list[NewEvent] = []
        self._any_version: set[str] = set()
        self._loaded: list[Aggregate] = []
        self.appended: list[StoredEvent] = []
        """What `flush` appended, as the log holds it."""

    def stream_version(self, stream: str) -> int:
        """The stream's version, counting events recorded in this unit of work."""
        version = self._versions.get(stream)
        if version is None:
            version = self._known.get(stream)
            if version is None:
                version = self._log.stream_version(self.connection, stream)
            self._versions[stream] = version
        return version

    def sql(self, statement: Sql, params: Sequence[Any] = ()) -> list[Any]:
        """Runs one statement of the handler's own on the driver's cursor, in this transaction;
        the rows it returns (none for a write without RETURNING), as the driver's tuples.

        The fast path for a handler's hot statements: `Sql` text is written once with `?`
        markers and skips SQLAlchemy's statement machinery. `connection` stays available for
        everything else; both act in the same transaction.
        """
        return statement.rows(self.connection, params)

    def sql_many(self, statement: Sql, rows: Sequence[Sequence[Any]]) -> None:
        """Runs one statement once per row of parameters, in this transaction."""
        statement.run_many(self.connection, rows)

    def write(self, statement: Sql, params: Sequence[Any] = ()) -> None:
        """Runs a write whose result the handler does not read, in this transaction. On
        PostgreSQL it is sent with the transaction's next statement, or with the append of
        the command's events and the COMMIT: one round trip fewer. Its errors (a constraint:
        409) surface there, still as the command's."""
        statement.hold(self.connection, (params,))

    def write_many(self, statement: Sql, rows: Sequence[Sequence[Any]]) -> None:
        """`write` once per row of parameters."""
        if rows:
            statement.hold(self.connection, rows)

    @property
    def versions(self) -> dict[str, int]:
        """The version of each stream this unit read or wrote."""
        return self._versions

    @property
    def pending(self) -> list[NewEvent]:
        """The events recorded and not yet appended."""
        return self._pending

    def record(self, stream: str, *events: Event, expected_version: int = ANY_VERSION) -> None:
        """Records events on a stream; `expected_version` guards against concurrent changes.

        Use 0 for a stream that must be new, N for a stream that must be at version N.
        """
        remembered = None
        if expected_version == ANY_VERSION:
            self._any_version.add(stream)
            if stream not in self._versions and stream not in self._known and self._remembered:
                remembered = self._remembered.get(stream)
        if remembered is not None:
            # This process made the stream's last append: try the next version without
            # reading it; the log refuses it if another process appended since.
            current = remembered
            self._guessed.add(stream)
        elif expected_version != ANY_VERSION and stream not in self._versions:
            # Trust the expectation rather than read the stream: the log's unique
            # (stream, version) refuses the append if another command got there first.
            current = self._known.get(stream, expected_version)
        else:
            current = self.stream_version(stream)
        if expected_version != ANY_VERSION and current != expected_version:
            raise ConcurrencyError(stream, expected_version, current)
        now = time.time()
        for event in events:
            self._registry.add(type(event))
            current += 1
            metadata = EventMetadata(
                event_id=uuid4_text(),
                command_id=self.command_id,
                correlation_id=self.correlation_id,
                subject=self.principal.subject,
                token_id=self.principal.token_id,
            )
            self._pending.append(
                NewEvent(
                    stream=stream,
                    version=current,
                    type=event.type_name,
                    schema_version=event.schema_version,
                    data=encode_event(event),
                    metadata=metadata.to_json(),
                    recorded_at=now,
                )
            )
        self._versions[stream] = current

    def load(self, aggregate_type: type[A], id: str) -> A:
        """An event-sourced aggregate, folded from its stream as this transaction sees it."""
        aggregate = aggregate_type(id)
        # The App need not list an aggregate's event types: a process that has not recorded
        # them yet still has to decode the stream.
        self._registry.add_all(aggregate_type.event_types)
        for stored in self._log.read_stream(self.connection, aggregate.stream):
            aggregate.apply(
                self._registry.decode_event(stored.type, stored.schema_version, stored.data)
            )
            aggregate.version = stored.version
        self._versions[aggregate.stream] = max(
            aggregate.version, self._versions.get(aggregate.stream, 0)
        )
        self._loaded.append(aggregate)
        return aggregate

    def save(self, aggregate: Aggregate) -> None:
        """Records the aggregate's new events, expecting the version it was loaded at."""
        if not aggregate.pending:
            return
        self.record(aggregate.stream, *aggregate.pending, expected_version=aggregate.version)
        aggregate.version += len(aggregate.pending)
        aggregate.pending = []

    def save_loaded(self) -> None:
        """Saves every aggregate `load` returned that has new events, in the order loaded.

        A handler that changes an aggregate and forgets `save` would otherwise answer as if it
        had succeeded and lose the events. Each is saved at the version it was loaded (or last
        saved) at, so a concurrent change is still a ConcurrencyError.
        """
        for aggregate in self._loaded:
            self.save(aggregate)

    def flush(self, *, last: bool = False) -> list[RecordedEvent]:
        """Saves the loaded aggregates, then appends the recorded events to the log (`last`:
        nothing follows in the transaction, see `EventLog.append`)."""
        self.save_loaded()
        if not self._pending:
            send_held(self.connection)  # errors of `write` surface here, as this command's
            return []
        try:
            with span("projectionist.append", {"projectionist.events": len(self._pending)}):
                positions = self._log.append(self.connection, self._pending, last=last)
        except ConcurrencyError as conflict:
            # A stream recorded with ANY_VERSION only lost a race for its next version to
            # another process: running the command again is safe and will succeed.
            conflict.retryable = conflict.stream in self._any_version
            if conflict.stream in self._guessed and self._remembered is not None:
                self._remembered.refused(conflict.stream)
            raise
        recorded = self.recorded(positions)
        self.appended = self.stored(positions)
        self._pending = []
        return recorded

    def recorded(self, positions: Sequence[int]) -> list[RecordedEvent]:
        """The pending events with the positions the log gave them."""
        return [
            RecordedEvent(e.type, e.stream, e.version, p)
            for e, p in zip(self._pending, positions, strict=True)
        ]

    def stored(self, positions: Sequence[int]) -> list[StoredEvent]:
        """The pending events as the log holds them, at the positions it gave them."""
        return [e.at(p) for e, p in zip(self._pending, positions, strict=True)]
