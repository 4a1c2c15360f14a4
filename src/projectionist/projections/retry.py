"""Retrying parked events: a build's dead letters applied again, in position order, after a fix."""

from __future__ import annotations

import traceback
from typing import Protocol

from ..errors import StoreUnavailable
from ..eventlog import EventSource
from ..messages import Registry
from ..readstore.checkpoints import Checkpoints
from ..readstore.dead_letters import DeadLetters
from ..readstore.partitions import Partition, PartitionCheckpoints
from ..stores import Store
from .context import ApplyContext
from .definition import Projection


class Retrying(Protocol):
    """What a retry reads of the runner of the build (or partition) whose letters it retries."""

    @property
    def name(self) -> str: ...

    generation: int
    projection: Projection
    log: EventSource
    read_store: Store
    registry: Registry
    checkpoints: Checkpoints
    dead_letters: DeadLetters
    partition: Partition | None
    partitions: PartitionCheckpoints
    live_after: int

    def live_since(self) -> float | None: ...
    def forget_position(self) -> None: ...


def retry_parked(runner: Retrying) -> tuple[int, int]:
    """Applies this build's parked events in position order; (applied, still parked).

    A stream whose event fails again keeps its later events parked behind it.
    """
    applied = 0
    while True:
        with runner.read_store.read() as connection:
            letters = runner.dead_letters.open(connection, runner.name, runner.generation)
        progressed = 0
        failed: set[str] = set()
        for letter in letters:
            if letter.stream in failed or (
                runner.partition is not None and not runner.partition.holds(letter.stream)
            ):
                continue
            found = runner.log.read(letter.position - 1, 1)
            if not found or found[0].position != letter.position:
                continue  # the event is not in the log this process reads
            record = found[0]
            try:
                with runner.read_store.write() as connection:
                    spec = runner.projection.handlers.get(record.type)
                    if spec is not None:
                        context = ApplyContext(
                            connection,
                            runner.name,
                            runner.generation,
                            live_since=runner.live_since(),
                            live_after=runner.live_after,
                        )
                        context.record = record
                        if not (spec.live_only and not context.live):
                            event = runner.registry.decode_event(
                                record.type, record.schema_version, record.data
                            )
                            spec.function(event, context)
                        context.flush()
                    runner.dead_letters.resolve(connection, letter.id)
                    runner.checkpoints.bump_epoch(
                        connection, runner.name, runner.generation, resolved=1
                    )
                    if runner.partition is not None:
                        runner.partitions.bump_epoch(
                            connection, runner.name, runner.generation, runner.partition.index
                        )
            except StoreUnavailable:
                raise
            except Exception as error:
                failed.add(letter.stream)
                runner.dead_letters.failed_again(
                    letter.id,
                    f"{type(error).__name__}: {error}",
                    "".join(traceback.format_exception(error)),
                )
                continue
            progressed += 1
        applied += progressed
        if progressed:
            runner.forget_position()
        if not progressed:
            with runner.read_store.read() as connection:
                left = len(runner.dead_letters.open(connection, runner.name, runner.generation))
            return applied, left
