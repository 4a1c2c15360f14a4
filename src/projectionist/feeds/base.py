"""Feeds: the event log mirrored into a distributed engine, one entry per position.

A command process relays what it commits; projector processes elsewhere read their events from
the feed instead of the write store, so they scale out and keep working while it is down.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod

from ..eventlog import EventSource
from ..messages import StoredEvent
from ..wakeups import HighWater, WakeupSource


class Feed(ABC):
    """A copy of the event log in NATS JetStream or Redis, keyed by log position.

    Appends name the position they expect to follow, and the engine refuses one that does not:
    relays in several processes may run at once and each position is still held once, in
    order.
    """

    @abstractmethod
    def ensure(self) -> None:
        """Creates the feed if it does not exist."""

    @abstractmethod
    def last_position(self) -> int:
        """The position of the feed's last entry; 0 when empty."""

    @abstractmethod
    def publish(self, last: int, events: list[StoredEvent]) -> tuple[int, bool]:
        """Appends `events`, which follow position `last` in the log: (how many the feed
        took, whether another relay had appended some of them first)."""

    @abstractmethod
    def event_at(self, position: int) -> StoredEvent | None:
        """The event the feed holds at `position`; None for a gap or a missing entry."""

    @abstractmethod
    def reader(self) -> EventSource:
        """What a projection runner reads its events from."""

    @abstractmethod
    def wakeups(self, high_water: HighWater) -> WakeupSource:
        """Advances `high_water` whenever an entry arrives, so a projector need not poll."""

    @abstractmethod
    def close(self) -> None:
        """Releases connections and threads."""


def encode(event: StoredEvent) -> bytes:
    return json.dumps(
        [
            event.stream,
            event.version,
            event.type,
            event.schema_version,
            event.data,
            event.metadata,
            event.recorded_at,
        ]
    ).encode()


def decode(position: int, body: bytes) -> StoredEvent:
    stream, version, type_, schema_version, data, metadata, recorded_at = json.loads(body)
    return StoredEvent(
        position, stream, version, type_, schema_version, data, metadata, recorded_at
    )
