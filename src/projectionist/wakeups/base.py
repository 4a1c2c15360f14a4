"""The wake-up port: how a process learns, without polling, that another one moved.

Like the high-water agent of Marten's async daemon, one place says when there is news: the log
grew (wake the projector and the relay) or a checkpoint moved (wake the queries that wait on a
position). Each backend owns its implementation and its channel: the PostgreSQL event log and
read store send NOTIFY and listen with `wakeups.postgres.Listener`; a feed subscribes to its own
appends. In-process commits need no source: they advance the `HighWater` directly. Polling stays
the fallback everywhere, so a lost wake-up only delays work until the next poll.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class WakeupSource(ABC):
    """A background listener that wakes this process when another one moves something."""

    @abstractmethod
    def start(self) -> None:
        """Starts listening (in a thread or connection of its own)."""

    @abstractmethod
    def stop(self) -> None:
        """Stops listening and releases what it holds; calling it twice is harmless."""
