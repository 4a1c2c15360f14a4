"""The events this process committed last, kept in memory for its own projectors.

A projector in the process that ran the command would otherwise read back, for each
projection, the events it was just handed: a round trip per projection on PostgreSQL, the
larger part of the time from commit to visible. The events are remembered only after their
transaction committed, so each is in the log for good.

A read is answered from memory only by a run of consecutive positions starting right after
the reader's checkpoint: every position in it committed, and none below it was skipped. A
position missing from memory (another process's append, a position a rolled-back append
drew, an event forgotten to stay within the bound) sends the read to the log, as does a
head known to lie past the run's end. A reader at the log's end (as a read that reached it,
or the last run with no head known past it, found it) and at the head this process knows is
told there is nothing new without asking the log, unless the log was last asked more than
`recheck_s` ago: commits elsewhere move the head by their wake-ups, and the recheck covers
a wake-up that was lost (or an append no wake-up tells of: SQLite's trigger capture). Only
the projector's loop reads so (`trusting_wakeups`); an explicit catch-up asks the log.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..messages import StoredEvent
from ..wakeups import HighWater
from .base import EventSource

CAPACITY = 8192
"""Events kept: a projector further behind than that reads the log, as it would anyway."""


class RecentEvents:
    """An event source that answers from the events this process committed last."""

    def __init__(
        self,
        source: EventSource,
        high_water: HighWater,
        *,
        capacity: int = CAPACITY,
        recheck_s: float = 0.25,
    ) -> None:
        self._source = source
        self._high_water = high_water
        self._capacity = capacity
        self._recheck_s = recheck_s
        self._asked_at = 0.0
        self._end = -1  # the log's last position, as the last read to its end found it
        self._trusting = threading.local()
        self._events: dict[int, StoredEvent] = {}
        self._order: deque[int] = deque()
        self._lock = threading.Lock()

    def committed(self, events: Sequence[StoredEvent]) -> None:
        """Remembers events whose transaction committed."""
        with self._lock:
            for event in events:
                self._events[event.position] = event
                self._order.append(event.position)
            while len(self._order) > self._capacity:
                self._events.pop(self._order.popleft(), None)

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        with self._lock:
            run: list[StoredEvent] = []
            position = after + 1
            while len(run) < limit:
                event = self._events.get(position)
                if event is None:
                    break
                run.append(event)
                position += 1
        head = self._high_water.head
        if not run:
            if (
                getattr(self._trusting, "wakeups", False)
                and after == self._end
                and after >= head
                and time.monotonic() - self._asked_at < self._recheck_s
            ):
                return []  # at the log's end: nothing new that a commit or a wake-up told of
            return self._ask(after, limit)
        if len(run) < limit:
            if head >= position:
                # Appended elsewhere past the run: the log has the rest.
                run.extend(self._ask(run[-1].position, limit - len(run)))
            else:
                self._end = run[-1].position  # nothing known past the run
        return run

    def _ask(self, after: int, limit: int) -> list[StoredEvent]:
        """Reads the log; a read that found fewer than `limit` events found its end."""
        self._asked_at = time.monotonic()
        events = self._source.read(after, limit)
        if len(events) < limit:
            self._end = events[-1].position if events else after
        return events

    def head(self) -> int:
        return self._source.head()

    @contextmanager
    def trusting_wakeups(self) -> Iterator[None]:
        """Reads of this thread at the known head skip the log between rechecks while the
        block runs: the projector's loop, which a commit or a wake-up wakes. Elsewhere (an
        explicit catch-up, a runner run by hand) every read asks the log."""
        self._trusting.wakeups = True
        try:
            yield
        finally:
            self._trusting.wakeups = False
