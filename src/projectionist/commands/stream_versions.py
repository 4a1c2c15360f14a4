"""The versions of the streams this process's commands appended to, kept in memory.

A command that records on a stream without an expected version needs the stream's version;
reading it is a round trip per command on PostgreSQL. When this process made the stream's
last append, the version is known: the append is tried with it, and the log's unique
(stream, version) refuses it if another process appended since. Then the version is
forgotten and the command runs again, reading it (a command without an expected version may
run again, like any that lost such a race). Several command processes appending to the same
streams would lose that race often: after a refusal, versions are not trusted for a while.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from ..messages import StoredEvent

CAPACITY = 65_536
"""Streams remembered, the least recently appended forgotten first."""
DISTRUST_S = 60.0
"""How long remembered versions go unused after one was refused."""


class StreamVersions:
    """Stream → the version of its last event that a command of this process committed."""

    def __init__(self, *, capacity: int = CAPACITY, distrust_s: float = DISTRUST_S) -> None:
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity
        self._distrust_s = distrust_s
        self._trusted_from = 0.0
        self._lock = threading.Lock()

    def get(self, stream: str) -> int | None:
        """The version to try an append at; None: read it from the log."""
        if time.monotonic() < self._trusted_from:
            return None
        with self._lock:
            return self._versions.get(stream)

    def committed(self, events: Sequence[StoredEvent]) -> None:
        """Remembers the versions of events whose transaction committed."""
        with self._lock:
            for event in events:
                if event.version > self._versions.get(event.stream, 0):
                    self._versions[event.stream] = event.version
                    self._versions.move_to_end(event.stream)
            while len(self._versions) > self._capacity:
                self._versions.popitem(last=False)

    def refused(self, stream: str) -> None:
        """An append at a remembered version lost to another process's: forget the stream,
        and trust no remembered version for a while."""
        with self._lock:
            self._versions.pop(stream, None)
        self._trusted_from = time.monotonic() + self._distrust_s
