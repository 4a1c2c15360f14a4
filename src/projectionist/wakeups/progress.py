"""Where the projections run in this process stand, for queries that wait on a position."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable


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

    def moved(self) -> None:
        """Wakes waiters to look again: a checkpoint moved in another process."""
        with self._condition:
            self._condition.notify_all()

    def wait_moved(self, timeout_s: float) -> None:
        """Sleeps until `moved` or `advance` is called, or the timeout."""
        with self._condition:
            self._condition.wait(timeout_s)

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
