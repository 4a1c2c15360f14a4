"""Replay rates: how fast each build applied events over its last catch-up or rebuild.

A runner measures a run of batches, from a batch that left events behind to the batch that
caught up, and stores its events and seconds in the read store, so that any process (a query
process answering `/projections`, `projectionist status`) can read them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..stores import Store
from .schema import projections_table, replay_table

log = logging.getLogger("projectionist.projections")

MIN_RUN_EVENTS = 100
"""A run of fewer events is live traffic, not a replay: its rate says little of a rebuild's."""


@dataclass(frozen=True, slots=True)
class ReplayRate:
    """The events a build applied in its last measured run, and the seconds it took."""

    events: int
    seconds: float
    measured_at: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class ReplayRates:
    """Stores and reads the replay rate of each build."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, name: str, generation: int, events: int, seconds: float) -> None:
        """Stores a build's rate, replacing the one before; forgets those of dropped builds."""
        t = replay_table
        p = projections_table
        with self.store.write() as connection:
            connection.execute(sa.delete(t).where(t.c.name == name, t.c.generation == generation))
            connection.execute(
                sa.insert(t).values(
                    name=name,
                    generation=generation,
                    events=events,
                    seconds=seconds,
                    measured_at=time.time(),
                )
            )
            built = sa.select(p.c.generation).where(p.c.name == t.c.name)
            connection.execute(
                sa.delete(t).where(t.c.name == name, t.c.generation.not_in(built.scalar_subquery()))
            )

    def all(self, connection: Connection) -> dict[tuple[str, int], ReplayRate]:
        """Every stored rate, by (projection, generation)."""
        t = replay_table
        rows = connection.execute(sa.select(t)).fetchall()
        return {
            (row.name, row.generation): ReplayRate(row.events, row.seconds, row.measured_at)
            for row in rows
        }


class ReplayMeter:
    """Measures one build's runs of batches and stores their rate as they go.

    A run starts with a batch that left events behind (or applied MIN_RUN_EVENTS at once) and
    ends with the batch that caught up. While it lasts, its rate so far is stored every
    `every_s`, so a rebuild in progress shows how fast it goes.
    """

    def __init__(
        self, rates: ReplayRates, name: str, generation: int, *, every_s: float = 2.0
    ) -> None:
        self.rates = rates
        self.name = name
        self.generation = generation
        self.every_s = every_s
        self._events = 0
        self._seconds = 0.0
        self._stored_at = time.monotonic()

    def batch(self, applied: int, seconds: float, *, caught_up: bool) -> None:
        """Counts one committed batch of `applied` events that took `seconds`."""
        if not self._events and caught_up and applied < MIN_RUN_EVENTS:
            return  # a batch of live traffic
        if not self._events:
            self._stored_at = time.monotonic()
        self._events += applied
        self._seconds += seconds
        now = time.monotonic()
        enough = self._events >= MIN_RUN_EVENTS and self._seconds > 0
        if enough and (caught_up or now - self._stored_at >= self.every_s):
            self._store()
            self._stored_at = now
        if caught_up:
            self._events, self._seconds = 0, 0.0

    def _store(self) -> None:
        try:
            self.rates.record(self.name, self.generation, self._events, self._seconds)
        except Exception as error:  # a measurement never stops the runner
            log.warning("could not store the replay rate of %s: %s", self.name, error)
