"""The relay: copies the event log into a feed, in a background thread, as commands commit."""

from __future__ import annotations

import logging
import threading

from ..errors import ConfigurationError
from ..eventlog import EventLog
from ..wakeups import HighWater, Worker
from .base import Feed

log = logging.getLogger("projectionist.feeds")


class Relay:
    """Copies the event log into a feed, in a background thread, as commands commit."""

    def __init__(
        self,
        log: EventLog,
        feed: Feed,
        high_water: HighWater,
        *,
        batch_size: int = 1000,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.log = log
        self.feed = feed
        self.high_water = high_water
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.position = 0
        self._ensured = False
        self._worker = Worker("projectionist-relay", self._loop, high_water)

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
        same = (
            held is not None
            and logged
            and logged[0].position == last
            and (logged[0].stream, logged[0].version, logged[0].metadata)
            == (held.stream, held.version, held.metadata)
        )
        if not same:
            raise ConfigurationError(
                f"{self.feed!r} does not mirror this event log: its last entry, position"
                f" {last}, is not the log's event at that position (another app's stream, or"
                " a log reset or restored since); give this log a stream of its own"
            )

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._worker.stop(timeout_s)

    def _loop(self, stopping: threading.Event) -> None:
        backoff = 0.0
        while not stopping.is_set():
            generation = self.high_water.generation
            try:
                moved = self.relay()
                backoff = 0.0
            except Exception as error:
                # Capped at 0.5 s: a feed back from an outage (a JetStream stream whose new
                # leader is elected, say) is relayed to within a second of taking appends.
                backoff = min(0.5, backoff * 2 or 0.1)
                level = logging.ERROR if isinstance(error, ConfigurationError) else logging.WARNING
                log.log(
                    level,
                    "relaying events to %r failed (retry in %.1fs): %s",
                    self.feed,
                    backoff,
                    error,
                )
                stopping.wait(backoff)
                continue
            if not moved and not stopping.is_set():
                self.high_water.wait(generation, self.poll_interval_s)
