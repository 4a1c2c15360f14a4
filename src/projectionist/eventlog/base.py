"""The port every event log backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..messages import StoredEvent
from ..stores import Store
from ..wakeups import HighWater, WakeupSource
from .schema import COLUMNS

_READ_STREAM = sa.text(
    f"SELECT {COLUMNS} FROM projectionist_events WHERE stream = :stream ORDER BY version"
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to append: encoded, with its stream version decided."""

    stream: str
    version: int
    type: str
    schema_version: int
    data: str
    metadata: str
    recorded_at: float

    def at(self, position: int) -> StoredEvent:
        """The event as the log holds it once appended at `position`."""
        return StoredEvent(
            position,
            self.stream,
            self.version,
            self.type,
            self.schema_version,
            self.data,
            self.metadata,
            self.recorded_at,
        )


class EventSource(Protocol):
    """What a projection runner reads: the log itself, or a feed relayed from it."""

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events after position `after`, in position order."""
        ...

    def head(self) -> int:
        """The highest position a reader may see now; 0 for an empty log."""
        ...


class EventLog(ABC):
    """Append-only log of events with gap-free global positions.

    Appends run inside the caller's write transaction, so the events commit with the write
    model or not at all. Readers see an ordered prefix of the log that never skips a position
    a later reader could still find.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @abstractmethod
    def install(self) -> None:
        """Creates the log's tables if they do not exist."""

    @abstractmethod
    def stream_version(self, connection: Connection, stream: str) -> int:
        """The version of the stream's last event, 0 for a new stream."""

    @abstractmethod
    def append(
        self, connection: Connection, events: Sequence[NewEvent], *, last: bool = False
    ) -> list[int]:
        """Appends events in the caller's transaction; returns their positions in order.

        `last`: nothing follows the append in the transaction, so a log may send the commit
        with it (the caller's commit then sends nothing). Raises ConcurrencyError when another
        transaction took one of the stream versions.
        """

    def read_stream(self, connection: Connection, stream: str) -> list[StoredEvent]:
        """Every event of one stream, in version order, read in the caller's transaction."""
        rows = connection.execute(_READ_STREAM, {"stream": stream}).fetchall()
        return [StoredEvent(*row) for row in rows]

    @abstractmethod
    def read(self, after: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events after position `after`, in position order."""

    @abstractmethod
    def head(self) -> int:
        """The highest position a reader may see now; 0 for an empty log."""

    def wakeups(self, high_water: HighWater) -> WakeupSource | None:
        """What tells this process of appends made by other processes; None: poll only."""
        return None
