"""In-process wake-ups: commands wake projectors at commit, projectors wake waiting queries."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable


class LogWatch:
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


class Worker:
    """A daemon thread that runs a loop until stopped; stopping wakes it through the watch."""

    def __init__(self, name: str, loop: Callable[[threading.Event], None],
                 watch: LogWatch) -> None:
        self.name = name
        self._loop = loop
        self._watch = watch
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self._loop, args=(self.stopping,),
                                        name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self._watch.advance(0, 0, 0.0)  # wake the loop
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class ProgressBoard:
    """The checkpoints of projections run in this process, for queries that wait on them."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._positions: dict[str, int] = {}

    def advance(self, projection: str, position: int) -> None:
        with self._condition:
            if position > self._positions.get(projection, -1):
                self._positions[projection] = position
            self._condition.notify_all()

    def forget(self, projection: str) -> None:
        with self._condition:
            self._positions.pop(projection, None)
            self._condition.notify_all()

    def knows(self, projection: str) -> bool:
        with self._condition:
            return projection in self._positions

    def wait_until(self, projections: Iterable[str], position: int, timeout_s: float) -> bool:
        """Waits until every projection reached `position`; False when the timeout ran out
        or one it knew is forgotten meanwhile (another process runs it now)."""
        names = list(projections)
        deadline = time.monotonic() + timeout_s
        with self._condition:
            known = [name for name in names if name in self._positions]
            while True:
                if all(self._positions.get(name, -1) >= position for name in names):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not all(name in self._positions for name in known):
                    return False
                self._condition.wait(remaining)
