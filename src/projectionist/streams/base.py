"""Feeds: the event log mirrored into a distributed engine, one entry per position.

A command process relays what it commits; projector processes elsewhere read their events from
the feed instead of the write store, so they scale out and keep working while it is down.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod

from ..errors import ConfigurationError
from ..eventlog import EventLog, EventSource
from ..messages import StoredEvent
from ..signals import LogWatch, Worker

log = logging.getLogger("projectionist.feeds")


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
    def wake_on_append(self, watch: LogWatch) -> None:
        """Advances `watch` whenever an event arrives, so a projector need not poll."""

    @abstractmethod
    def close(self) -> None:
        """Releases connections and threads."""


def open_feed(url: str) -> Feed:
    """The feed an events URL names: nats:// (JetStream) or redis:// (Redis Streams)."""
    scheme = url.partition("://")[0]
    if scheme in ("nats", "tls"):
        from .jetstream import JetStream

        return JetStream(url)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStream

        return RedisStream(url)
    raise ConfigurationError(
        f"an events URL starts with nats:// (JetStream) or redis:// (Redis Streams), not {url!r}")


def encode(event: StoredEvent) -> bytes:
    return json.dumps([event.stream, event.version, event.type, event.schema_version,
                       event.data, event.metadata, event.recorded_at]).encode()


def decode(position: int, body: bytes) -> StoredEvent:
    stream, version, type_, schema_version, data, metadata, recorded_at = json.loads(body)
    return StoredEvent(position, stream, version, type_, schema_version, data, metadata,
                       recorded_at)


class Relay:
    """Copies the event log into a feed, in a background thread, as commands commit."""

    def __init__(self, log: EventLog, feed: Feed, watch: LogWatch, *,
                 batch_size: int = 1000, poll_interval_s: float = 0.5) -> None:
        self.log = log
        self.feed = feed
        self.watch = watch
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.position = 0
        self._ensured = False
        self._worker = Worker("projectionist-relay", self._loop, watch)

    def relay(self) -> int:
        """Publishes every event the log holds past the feed's end; returns how many."""
        if not self._ensured:
            self.feed.ensure()  # here rather than at start-up: commands need no feed
            self._check_mirrors_the_log()
            self._ensured = True
        last = self.feed.last_position()
        published = 0
        while True:
            events = self.log.read(last, self.batch_size)
            if not events:
                self.position = last
                return published
            stored, overtaken = self.feed.publish(last, events)
            published += stored
            # Overtaken: another relay published some first; go on from the feed's end.
            last = self.feed.last_position() if overtaken else events[-1].position
            self.position = last

    def _check_mirrors_the_log(self) -> None:
        """Refuses a feed whose end is not this log's: another app's stream, or a log that was
        reset or restored from an older backup. Relaying on would skip or mix events."""
        last = self.feed.last_position()
        if last == 0:
            return
        logged = self.log.read(last - 1, 1)
        held = self.feed.event_at(last)
        same = (held is not None and logged and logged[0].position == last
                and (logged[0].stream, logged[0].version, logged[0].metadata)
                == (held.stream, held.version, held.metadata))
        if not same:
            raise ConfigurationError(
                f"{self.feed!r} does not mirror this event log: its last entry, position"
                f" {last}, is not the log's event at that position (another app's stream, or"
                " a log reset or restored since); give this log a stream of its own")

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._worker.stop(timeout_s)

    def _loop(self, stopping: threading.Event) -> None:
        backoff = 0.0
        while not stopping.is_set():
            generation = self.watch.generation
            try:
                moved = self.relay()
                backoff = 0.0
            except Exception as error:
                backoff = min(5.0, backoff * 2 or 0.1)
                level = logging.ERROR if isinstance(error, ConfigurationError) else logging.WARNING
                log.log(level, "relaying events to %r failed (retry in %.1fs): %s",
                        self.feed, backoff, error)
                stopping.wait(backoff)
                continue
            if not moved and not stopping.is_set():
                self.watch.wait(generation, self.poll_interval_s)
