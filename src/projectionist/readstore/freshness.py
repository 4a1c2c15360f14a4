"""Freshness: how far the read models behind an answer are from the head of the log."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..wakeups import HighWater
from .checkpoints import Checkpoint


@dataclass(frozen=True, slots=True)
class Freshness:
    """The lowest checkpoint behind an answer, the head, and how far behind it is.

    `dead_letters` counts the events that the read models behind the answer could not apply
    and parked: an answer with dead letters may miss what they hold.
    """

    position: int
    head: int
    lag_events: int
    lag_ms: float
    dead_letters: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "head": self.head,
            "lag_events": self.lag_events,
            "lag_ms": self.lag_ms,
            "dead_letters": self.dead_letters,
        }


def measure(
    checkpoints: Iterable[Checkpoint], high_water: HighWater | None, now: float | None = None
) -> Freshness:
    """The freshness of an answer read from these checkpoints."""
    rows = list(checkpoints)
    if not rows:
        head = high_water.head if high_water is not None else 0
        return Freshness(0, head, head, 0.0)
    slowest = min(rows, key=lambda c: c.position)
    head = max(c.head for c in rows)
    if high_water is not None:
        head = max(head, high_water.head)
    position = slowest.position
    lag_events = max(0, head - position)
    lag_ms = 0.0
    if lag_events:
        since = slowest.next_at
        if since is None and high_water is not None:
            since = high_water.recorded_after(position)
        if since is None:
            since = slowest.updated_at
        now = time.time() if now is None else now
        lag_ms = round(max(0.0, now - since) * 1000.0, 3)
    dead_letters = sum(c.dead_letters for c in rows)
    return Freshness(position, head, lag_events, lag_ms, dead_letters)
