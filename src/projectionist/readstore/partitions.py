"""Partition checkpoints: where each partition of a partitioned build stands.

A projection declared with `partitions=N` splits the log by stream (a stable hash of the
stream's name), so that N runners, in one process or several, apply it side by side while
each stream's events keep their order. Each partition has a checkpoint of its own, moved by
compare-and-set in the transaction of its writes, as a build's checkpoint is. The build's row
in `projectionist_projections` then holds the lowest partition position, recomputed under the
build row's lock in the same transaction: freshness, `min_position`, status and swaps read it
as they read any build.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ConfigurationError
from .checkpoints import State
from .schema import CHANNEL, partitions_table

MAX_PARTITIONS = 256


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition `index` of `count`: the streams whose stable hash falls in it."""

    index: int
    count: int

    def holds(self, stream: str) -> bool:
        return partition_of(stream, self.count) == self.index

    def __str__(self) -> str:
        return f"p{self.index}"


def partition_of(stream: str, count: int) -> int:
    """The partition of a stream: CRC-32 of its name, the same in every process and release."""
    return zlib.crc32(stream.encode()) % count


def check_count(projection: str, count: object) -> int:
    """A validated partition count."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        raise ConfigurationError(
            f"partitions of projection {projection!r} must be a whole number from 1 to"
            f" {MAX_PARTITIONS}, got {count!r}"
        )
    return count


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's checkpoint as stored."""

    partition: int
    position: int
    epoch: int
    updated_at: float


_T = partitions_table
_MOVE = sa.text(
    "UPDATE projectionist_partitions SET position = :position, updated_at = :now"
    " WHERE name = :name AND generation = :generation AND partition = :partition"
    " AND position = :expected AND epoch = :epoch"
)
_LOCK_BUILD = sa.text(
    "SELECT 1 FROM projectionist_projections WHERE name = :name AND generation = :generation"
    " FOR UPDATE"
)
# The build's row follows its slowest partition. `head` only grows; the build is behind
# (next_at set) while its lowest partition is below the head.
_LOWEST = (
    "(SELECT min(p.position) FROM projectionist_partitions p"
    " WHERE p.name = :name AND p.generation = :generation)"
)
_FOLLOW = (
    f"UPDATE projectionist_projections SET position = {_LOWEST},"
    " head = CASE WHEN head > :head THEN head ELSE :head END,"
    f" next_at = CASE WHEN {_LOWEST} >= :head THEN NULL ELSE coalesce(next_at, :next_at) END,"
    f" state = CASE WHEN NOT :serving THEN :rebuilding WHEN {_LOWEST} >= :head THEN :live"
    " ELSE :catching_up END,"
    " updated_at = :now, error = NULL, dead_letters = dead_letters + :parked"
    " WHERE name = :name AND generation = :generation"
)
_FOLLOW_PLAIN = sa.text(_FOLLOW)
_FOLLOW_AND_NOTIFY = sa.text(
    f"WITH moved AS ({_FOLLOW} RETURNING name, position)"
    f" SELECT pg_notify('{CHANNEL}', name || ':' || position) FROM moved"
)


class PartitionCheckpoints:
    """Reads and moves the checkpoints of one partitioned build's partitions."""

    def ensure(
        self, connection: Connection, name: str, generation: int, count: int, position: int
    ) -> None:
        """Creates the build's partition checkpoints at 0; refuses another partition count,
        and a build that has applied events unpartitioned (at `position`). An unpartitioned
        build (`count` 1) has none."""
        stored = self.all(connection, name, generation)
        if count == 1 and not stored:
            return
        if len(stored) != count and (stored or position > 0):
            raise ConfigurationError(
                f"build {generation} of {name} has {len(stored) or 'no'} partitions and the code"
                f" declares {count}; a new partition count needs a new version of the projection"
            )
        if stored:
            return
        now = time.time()
        connection.execute(
            sa.insert(_T),
            [
                {
                    "name": name,
                    "generation": generation,
                    "partition": index,
                    "position": 0,
                    "epoch": 0,
                    "updated_at": now,
                }
                for index in range(count)
            ],
        )

    def all(self, connection: Connection, name: str, generation: int) -> list[PartitionState]:
        rows = connection.execute(
            sa.select(_T.c.partition, _T.c.position, _T.c.epoch, _T.c.updated_at)
            .where(_T.c.name == name, _T.c.generation == generation)
            .order_by(_T.c.partition)
        ).fetchall()
        return [PartitionState(*row) for row in rows]

    def every(self, connection: Connection) -> dict[tuple[str, int], list[PartitionState]]:
        """The partitions of every partitioned build, by (name, generation)."""
        rows = connection.execute(
            sa.select(
                _T.c.name,
                _T.c.generation,
                _T.c.partition,
                _T.c.position,
                _T.c.epoch,
                _T.c.updated_at,
            ).order_by(_T.c.name, _T.c.generation, _T.c.partition)
        ).fetchall()
        builds: dict[tuple[str, int], list[PartitionState]] = {}
        for row in rows:
            builds.setdefault((row[0], row[1]), []).append(PartitionState(*row[2:]))
        return builds

    def load(
        self, connection: Connection, name: str, generation: int, partition: int
    ) -> PartitionState | None:
        row = connection.execute(
            sa.select(_T.c.partition, _T.c.position, _T.c.epoch, _T.c.updated_at).where(
                _T.c.name == name, _T.c.generation == generation, _T.c.partition == partition
            )
        ).first()
        return PartitionState(*row) if row is not None else None

    # long: one statement's parameters, named as the checkpoint's own advance names them
    def advance(
        self,
        connection: Connection,
        name: str,
        generation: int,
        partition: int,
        *,
        expected: int,
        position: int,
        epoch: int,
        head: int,
        next_at: float | None,
        serving: bool,
        parked: int = 0,
    ) -> bool:
        """Moves the partition from `expected` to `position`, then the build's row to its
        lowest partition; False (nothing moved) if another runner moved the partition."""
        now = time.time()
        moved = connection.execute(
            _MOVE,
            {
                "name": name,
                "generation": generation,
                "partition": partition,
                "position": position,
                "expected": expected,
                "epoch": epoch,
                "now": now,
            },
        ).rowcount
        if not moved:
            return False
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Partitions of one build commit one after another from here: each recomputes
            # the lowest position with every earlier commit in view.
            connection.execute(_LOCK_BUILD, {"name": name, "generation": generation})
        connection.execute(
            _FOLLOW_AND_NOTIFY if postgres else _FOLLOW_PLAIN,
            {
                "name": name,
                "generation": generation,
                "head": head,
                "next_at": next_at if next_at is not None else now,
                "serving": serving,
                "rebuilding": State.REBUILDING.value,
                "live": State.LIVE.value,
                "catching_up": State.CATCHING_UP.value,
                "now": now,
                "parked": parked,
            },
        )
        return True

    def bump_epoch(
        self, connection: Connection, name: str, generation: int, partition: int
    ) -> None:
        """Makes the partition's runner reload (its read model was written outside it)."""
        connection.execute(
            sa.update(_T)
            .where(_T.c.name == name, _T.c.generation == generation, _T.c.partition == partition)
            .values(epoch=_T.c.epoch + 1)
        )

    def drop(self, connection: Connection, name: str, generation: int) -> None:
        connection.execute(sa.delete(_T).where(_T.c.name == name, _T.c.generation == generation))
