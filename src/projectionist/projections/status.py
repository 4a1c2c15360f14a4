"""Projection status: the state of each build, its lag, and the rule that calls it stalled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..readstore.checkpoints import Checkpoint, Checkpoints, State
from ..readstore.dead_letters import DeadLetters
from ..readstore.freshness import measure
from ..stores import MISSING_TABLE_ERRORS, Store
from ..wakeups import HighWater

__all__ = ["ProjectionStatus", "State", "StatusReader", "state_of"]


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """One projection build as `projectionist status` and `/projections` show it."""

    name: str
    version: int
    state: State
    position: int
    head: int
    lag_events: int
    lag_ms: float
    dead_letters: int
    active: bool
    generation: int

    @property
    def progress(self) -> float:
        """How far a build has come toward the head, from 0 to 1."""
        return round(self.position / self.head, 4) if self.head else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "position": self.position,
            "head": self.head,
            "lag_events": self.lag_events,
            "lag_ms": self.lag_ms,
            "dead_letters": self.dead_letters,
        }


def state_of(
    row: Checkpoint, *, lag_events: int, lag_ms: float, now: float, stall_after_s: float
) -> State:
    """The state a build shows: its stored state, with the lag and the stall rule applied.

    A serving build is `live` when caught up and `catching_up` when behind. It is `stalled`
    when it is behind with neither a recent move nor a recent event to excuse it. A build that
    is not serving yet is `rebuilding`, `blocked` once it has dead letters (it waits for them
    to be retried, or for an operator to swap it in), or `failed`.
    """
    if row.state is State.FAILED:
        return State.FAILED
    if not row.active:
        return State.BLOCKED if row.dead_letters else State.REBUILDING
    if not lag_events:
        return State.LIVE
    if now - row.updated_at > stall_after_s and lag_ms > stall_after_s * 1000:
        return State.STALLED
    return State.CATCHING_UP


class StatusReader:
    """Reads the status of every build of every projection from the read store."""

    def __init__(
        self,
        read_store: Store,
        checkpoints: Checkpoints,
        dead_letters: DeadLetters,
        high_water: HighWater,
        *,
        stall_after_s: float = 30.0,
    ) -> None:
        self.read_store = read_store
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.high_water = high_water
        self.stall_after_s = stall_after_s

    def read(self, head: int) -> list[ProjectionStatus]:
        """Every build, given the log's `head` as this process knows it.

        Only reads: before any projector created the read store's tables, the list is empty.
        """
        now = time.time()
        try:
            with self.read_store.read() as connection:
                rows = self.checkpoints.all(connection)
                dead = self.dead_letters.counts(connection)
        except MISSING_TABLE_ERRORS:
            return []
        result = []
        for row in rows:
            freshness = measure([row], self.high_water, now)
            row_head = max(freshness.head, head)
            lag_events = max(0, row_head - row.position)
            result.append(
                ProjectionStatus(
                    name=row.name,
                    version=row.version,
                    state=state_of(
                        row,
                        lag_events=lag_events,
                        lag_ms=freshness.lag_ms,
                        now=now,
                        stall_after_s=self.stall_after_s,
                    ),
                    position=row.position,
                    head=row_head,
                    lag_events=lag_events,
                    lag_ms=freshness.lag_ms,
                    dead_letters=dead.get((row.name, row.generation), 0),
                    active=row.active,
                    generation=row.generation,
                )
            )
        return result
