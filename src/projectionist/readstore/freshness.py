"""Freshness: how far the read models behind an answer are from the head of the log."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..wakeups import HighWater
from .checkpoints import Checkpoint


@dataclass(frozen=True, slots=True)
class Freshness:
    """The lowest checkpoint behind an answer, the head, and how far behind it is."""

    position: int
    head: int
    lag_events: int
    lag_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    return Freshness(position, head, lag_events, lag_ms)
