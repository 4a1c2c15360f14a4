"""Projection status: the state of each build, its lag, and the rule that calls it stalled."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreUnavailable
from ..readstore.checkpoints import Checkpoint, Checkpoints, State
from ..readstore.dead_letters import DeadLetters
from ..readstore.freshness import measure
from ..readstore.leases import leases_table
from ..readstore.partitions import PartitionCheckpoints
from ..readstore.replay import ReplayRate, ReplayRates
from ..readstore.storage import Cached, Footprint, measure_tables
from ..stores import MISSING_TABLE_ERRORS, Store
from ..wakeups import HighWater
from .coordination import lease_name

__all__ = ["PartitionStatus", "ProjectionStatus", "State", "StatusReader", "state_of"]

log = logging.getLogger("projectionist.projections")


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
    storage_bytes: int | None = None
    rows: int | None = None
    rows_estimated: bool = False
    replay_events_per_s: float | None = None
    partitions: tuple[PartitionStatus, ...] = ()

    @property
    def progress(self) -> float:
        """How far a build has come toward the head, from 0 to 1."""
        return round(self.position / self.head, 4) if self.head else 0.0

    @property
    def rebuild_eta_s(self) -> float | None:
        """Seconds a rebuild from scratch would take at the current head, at the replay rate."""
        if not self.replay_events_per_s:
            return None
        return round(self.head / self.replay_events_per_s, 3)

    @property
    def remaining_s(self) -> float | None:
        """Seconds until the build reaches the head, at the replay rate."""
        if not self.replay_events_per_s:
            return None
        return round(self.lag_events / self.replay_events_per_s, 3)

    def to_json(self) -> dict[str, Any]:
        body = {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "position": self.position,
            "head": self.head,
            "lag_events": self.lag_events,
            "lag_ms": self.lag_ms,
            "dead_letters": self.dead_letters,
            "storage_bytes": self.storage_bytes,
            "rows": self.rows,
            "rows_estimated": self.rows_estimated,
            "replay_events_per_s": self.replay_events_per_s,
            "rebuild_eta_s": self.rebuild_eta_s,
        }
        if not self.active:
            body["progress"] = self.progress
            body["remaining_s"] = self.remaining_s
        if self.partitions:
            body["partitions"] = [p.to_json() for p in self.partitions]
        return body


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition of a partitioned build: its checkpoint, and the process holding it."""

    partition: int
    position: int
    owner: str | None

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "position": self.position, "owner": self.owner}


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
        self.replay_rates = ReplayRates(read_store)
        self.footprints = Cached(self._measure_builds)

    def close(self) -> None:
        """Waits for a measurement under way (before the read store is disposed)."""
        self.footprints.close()

    def read(self, head: int) -> list[ProjectionStatus]:
        """Every build, given the log's `head` as this process knows it.

        Only reads: before any projector created the read store's tables, the list is empty.
        """
        now = time.time()
        try:
            with self.read_store.read() as connection:
                rows = self.checkpoints.all(connection)
                dead = self.dead_letters.counts(connection)
                partitions = self._partitions(connection, now)
        except MISSING_TABLE_ERRORS:
            return []
        rates = self._rates()
        footprints = self._footprints(rows)
        result = []
        for row in rows:
            key = (row.name, row.generation)
            footprint = footprints.get(key)
            rate = rates.get(key) or self._serving_rate(rows, rates, row.name)
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
                    storage_bytes=None if footprint is None else footprint.storage_bytes,
                    rows=None if footprint is None else footprint.rows,
                    rows_estimated=footprint is not None and footprint.rows_estimated,
                    replay_events_per_s=None if rate is None else round(rate.events_per_s, 1),
                    partitions=partitions.get(key, ()),
                )
            )
        return result

    @staticmethod
    def _partitions(
        connection: Connection, now: float
    ) -> dict[tuple[str, int], tuple[PartitionStatus, ...]]:
        """The partitions of each partitioned build, with the owner of each live lease."""
        builds = PartitionCheckpoints().every(connection)
        if not builds:
            return {}
        leases = {
            row.name: row.owner
            for row in connection.execute(
                sa.select(leases_table.c.name, leases_table.c.owner).where(
                    leases_table.c.expires_at >= now
                )
            )
        }
        return {
            (name, generation): tuple(
                PartitionStatus(
                    p.partition, p.position, leases.get(lease_name(name, generation, p.partition))
                )
                for p in parts
            )
            for (name, generation), parts in builds.items()
        }

    def _rates(self) -> dict[tuple[str, int], ReplayRate]:
        try:
            with self.read_store.read() as connection:
                return self.replay_rates.all(connection)
        except MISSING_TABLE_ERRORS:  # a read store of an older release, not upgraded yet
            return {}

    @staticmethod
    def _serving_rate(
        rows: list[Checkpoint], rates: dict[tuple[str, int], ReplayRate], name: str
    ) -> ReplayRate | None:
        """A new build has no rate of its own until it ran a while: its serving build's serves."""
        serving = next((row for row in rows if row.name == name and row.active), None)
        return None if serving is None else rates.get((name, serving.generation))

    def _footprints(self, rows: list[Checkpoint]) -> dict[tuple[str, int], Footprint]:
        """The footprint of each build, cached; measured now when a build is new."""
        try:
            footprints = self.footprints.get()
            if any((row.name, row.generation) not in footprints for row in rows):
                footprints = self.footprints.refresh()
        except (StoreUnavailable, SQLAlchemyError) as error:  # the rest of the status stands
            log.warning("could not measure the read models: %s", error)
            return {}
        return footprints

    def _measure_builds(self) -> dict[tuple[str, int], Footprint]:
        with self.read_store.read() as connection:
            return {
                (row.name, row.generation): measure_tables(connection, row.table_names)
                for row in self.checkpoints.all(connection)
            }
