"""Admission: a command process holds a bounded number of commands, and refuses past it."""

from __future__ import annotations

from ..errors import ConfigurationError, Overloaded

MAX_PENDING_COMMANDS = 128
"""Commands a process holds at once by default (running or queued for the group commit)."""


class Admission:
    """Counts the commands this process holds; past its limit, refuses at once (Overloaded).

    Used from the event loop only, so a plain counter suffices. A command waiting for a worker
    thread or for the group commit counts as held: refusing it early keeps every answer's
    latency bounded under write overload, instead of an ever longer queue.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigurationError(f"max_pending_commands must be 1 or more, got {limit}")
        self.limit = limit
        self.pending = 0

    def __enter__(self) -> None:
        if self.pending >= self.limit:
            raise Overloaded(
                f"this process holds {self.pending} commands, its limit"
                " (--max-pending-commands); retry in a moment"
            )
        self.pending += 1

    def __exit__(self, *exc: object) -> None:
        self.pending -= 1
