"""The high-water mark: the newest log position this process knows, and who waits on it.

Commands in this process advance it at commit; the wake-up sources of the backends (LISTEN/NOTIFY,
a feed's subscription) advance it for commits made elsewhere. Projector and relay loops sleep on
it between batches."""

from __future__ import annotations

import bisect
import threading


class HighWater:
    """The newest log position this process knows, and when recent events were recorded."""

    _KEEP = 10_000

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self.head = 0
        self._positions: list[int] = []
        self._times: list[float] = []

    def advance(self, first_position: int, last_position: int, recorded_at: float) -> None:
        """Records that events up to `last_position` committed; wakes every waiter."""
        with self._condition:
            if last_position > self.head:
                self.head = last_position
                self._positions.append(first_position)
                self._times.append(recorded_at)
                if len(self._positions) > 2 * self._KEEP:
                    del self._positions[: self._KEEP]
                    del self._times[: self._KEEP]
            self._generation += 1
            self._condition.notify_all()

    def wake(self) -> None:
        """Wakes every waiter without moving the mark (a stop, a resume, a new build)."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def seen(self, head: int) -> None:
        """Records a head learned by reading the log."""
        with self._condition:
            if head > self.head:
                self.head = head

    def recorded_after(self, position: int) -> float | None:
        """When the first event after `position` was recorded, if this process saw it."""
        with self._condition:
            if position >= self.head:
                return None
            # The last commit starting at or before position + 1 holds that event.
            index = bisect.bisect_right(self._positions, position + 1) - 1
            return self._times[index] if index >= 0 else None

    @property
    def generation(self) -> int:
        return self._generation

    def wait(self, generation: int, timeout_s: float) -> int:
        """Waits until something advances past `generation`, or the timeout; the new one."""
        with self._condition:
            if self._generation == generation:
                self._condition.wait(timeout_s)
            return self._generation
