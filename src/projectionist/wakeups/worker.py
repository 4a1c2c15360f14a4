"""A background loop that sleeps on the high water between rounds."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .high_water import HighWater


class Worker:
    """A daemon thread that runs a loop until stopped; stopping wakes it through the high water."""

    def __init__(
        self, name: str, loop: Callable[[threading.Event], None], high_water: HighWater
    ) -> None:
        self.name = name
        self._loop = loop
        self._high_water = high_water
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(self.stopping,), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self._high_water.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
