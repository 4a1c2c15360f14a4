"""Applying events to one build of a projection: a batch, its read-model writes and the
checkpoint commit in one read-store transaction."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import HandlerFailed, StoreUnavailable
from ..eventlog import EventSource
from ..messages import Registry, StoredEvent
from ..metrics import Metrics
from ..readstore.checkpoints import Checkpoint, Checkpoints, State
from ..readstore.dead_letters import DeadLetters
from ..readstore.documents import DocumentCache
from ..readstore.partitions import Partition, PartitionCheckpoints, PartitionState
from ..readstore.replay import ReplayMeter, ReplayRates
from ..stores import Store, first_line
from ..tracing import span
from .batch import MAX_CONFLICTS, BatchResult, CheckpointMoved, write_conflict
from .context import ApplyContext
from .coordination import Coordinator, lease_name
from .definition import Projection
from .retry import retry_parked

log = logging.getLogger("projectionist.projections")


@dataclass(frozen=True, slots=True)
class Deferred:
    """A partition's move past a batch that held none of its events, not committed yet."""

    runner: ProjectionRunner
    expected: int
    position: int
    head: int
    next_at: float | None


class ProjectionRunner:
    """Runs one build (generation) of one projection: read after the checkpoint, apply, commit.

    When a handler raises, the batch rolls back and the runner retries one event at a time up to
    the failing one; that event is retried `max_attempts` times, then parked as a dead letter
    (or, with `on_error="stop"`, the projection stops there).
    """

    def __init__(
        self,
        projection: Projection,
        build: Checkpoint,
        *,
        log: EventSource,
        read_store: Store,
        registry: Registry,
        checkpoints: Checkpoints,
        dead_letters: DeadLetters,
        batch_size: int = 1000,
        max_attempts: int = 3,
        metrics: Metrics | None = None,
        partition: Partition | None = None,
    ) -> None:
        self.projection = projection
        # One partition of a partitioned build: only its streams, its own checkpoint.
        self.partition = partition
        self.partitions = PartitionCheckpoints()
        # Set by a partitioned build: where a partition leaves a batch without its events.
        self.deferred: list[Deferred] | None = None
        self.generation = build.generation
        self.created_at = build.created_at
        self.serving = build.active
        # A build that replaces an older version's (which no process advances any more) must
        # run live-only side effects for new events itself, or nobody would.
        self.live_while_building = False
        # Live-only effects run for events after this position only (see Projector.swap).
        self.live_after = 0
        self.log = log
        self.read_store = read_store
        self.registry = registry
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.metrics = metrics
        self._position: int | None = None
        self._epoch = 0
        self._blocked: set[str] | None = None
        # Partitions of a build write its tables side by side: none may keep documents
        # between batches, and each reads them afresh, locked, in its own transaction.
        self._caches = (
            {} if partition else {name: DocumentCache() for name in projection.collections}
        )
        self._careful_until: int | None = None
        self._attempts: dict[int, int] = {}
        self._conflicts: dict[int, int] = {}
        self.replay = ReplayMeter(ReplayRates(read_store), projection.name, build.generation)

    @property
    def name(self) -> str:
        return self.projection.name

    @property
    def lease_name(self) -> str:
        index = None if self.partition is None else self.partition.index
        return lease_name(self.projection.name, self.generation, index)

    def leases(self) -> list[str]:
        """The leases this runner takes: its build's (a partitioned build's are its own)."""
        return [self.lease_name]

    def attach(self, coordinator: Coordinator) -> None:
        """The projector's coordinator; only a partitioned build takes leases by itself."""

    def keep_leases(self) -> None:
        """Claims the leases a runner takes by itself (a partitioned build's share)."""

    @property
    def complete(self) -> bool:
        """True when this runner applies all of its build (not a share of its partitions)."""
        return self.partition is None

    def install(self) -> None:
        """Creates this build's tables if they do not exist."""
        with self.read_store.schema() as connection:
            if self.projection.partitions == 1:
                self.partitions.ensure(connection, self.name, self.generation, 1, 0)
            inspector = sa.inspect(connection)
            for table in self.projection.physical_tables(self.generation):
                if not inspector.has_table(table.name):
                    table.create(connection)

    def forget_position(self) -> None:
        """Reloads the checkpoint and forgets cached documents before the next batch."""
        self._position = None
        self._blocked = None
        for cache in self._caches.values():
            cache.clear()

    @property
    def position(self) -> int:
        if self._position is None:
            with self.read_store.read() as connection:
                if self.partition is None:
                    row: Checkpoint | PartitionState | None = self.checkpoints.load(
                        connection, self.name, self.generation
                    )
                else:
                    row = self.partitions.load(
                        connection, self.name, self.generation, self.partition.index
                    )
            if row is None:
                raise CheckpointMoved(f"build {self.generation} of {self.name} is gone")
            self._position = row.position
            self._epoch = row.epoch
            if self._caches:
                # It holds the build's lease: no one else writes the tables until it lets go.
                with self.read_store.read() as connection:
                    for name, cache in self._caches.items():
                        collection = self.projection.collections[name]
                        cache.learn(connection, collection.physical(self.generation))
        return self._position

    def run_once(self) -> BatchResult:
        """Applies the next batch, if any; returns what it did."""
        start = self.position
        careful = self._careful_until is not None and start < self._careful_until
        limit = 1 if careful else self.batch_size
        read_at = time.perf_counter()
        events = self.log.read(start, limit)
        if not events:
            return BatchResult(0, start, start, caught_up=True)
        last = events[-1].position
        head, next_at = last, None
        if len(events) == limit:
            following = self.log.read(last, 1)
            if following:
                next_at = following[0].recorded_at
                head = max(self.log.head(), following[0].position)
        deferred = self.deferred
        if deferred is not None and not any(self.holds(e.stream) for e in events):
            # Nothing of this partition's: the build moves it on with its other such
            # partitions, in one transaction at the end of the step.
            deferred.append(Deferred(self, start, last, head, next_at))
            self._position = last
            return BatchResult(0, last, head, caught_up=next_at is None)
        began = time.perf_counter()
        try:
            with span(
                "projectionist.apply",
                {"projectionist.projection": self.name, "projectionist.events": len(events)},
            ):
                self._apply(events, expected=start, head=head, next_at=next_at)
        except CheckpointMoved:
            self.forget_position()
            raise
        except StoreUnavailable:
            self.forget_position()
            raise
        except Exception as error:
            self.forget_position()
            if self.partition is not None and write_conflict(error) and self._conflict(start):
                # Another partition wrote the same row at the same time: apply it again.
                raise CheckpointMoved(
                    f"partition {self.partition} of {self.name} g{self.generation} met a"
                    f" concurrent write ({first_line(error)}); it applies the batch again"
                ) from error
            if len(events) > 1:
                # Find the failing event: go one event per transaction up to this batch's end.
                self._careful_until = last
                return self.run_once()
            return self._failed(events[0], error, head=head, next_at=next_at)
        self._attempts.pop(events[0].position, None)
        for cache in self._caches.values():
            cache.trim()
        done = time.perf_counter()
        partition = self.partition
        count = len(events) if partition is None else sum(partition.holds(e.stream) for e in events)
        if self.metrics is not None:
            self.metrics.events_applied.labels(self.name).inc(count)
            self.metrics.batch_seconds.labels(self.name).observe(done - began)
        if partition is None:
            # A replay reads the log as well as applying it: the rate counts both. (A
            # partitioned build measures its partitions together.)
            self.replay.batch(count, done - read_at, caught_up=next_at is None)
        self._position = last
        return BatchResult(count, last, head, caught_up=next_at is None)

    def run_until_caught_up(self, *, max_batches: int | None = None) -> int:
        """Applies batches until the log has nothing more; returns how many events it read."""
        total = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            try:
                result = self.run_once()
            except CheckpointMoved:
                # Another runner applied that batch: go on from its checkpoint, unless the
                # build itself is gone (then reloading it would fail forever).
                try:
                    self.position  # noqa: B018 - reloads the checkpoint
                except CheckpointMoved:
                    break
                continue
            total += result.applied
            batches += 1
            if result.caught_up:
                break
        return total

    def _apply(
        self, events: Sequence[StoredEvent], *, expected: int, head: int, next_at: float | None
    ) -> None:
        name = self.name
        handlers = self.projection.handlers
        decode = self.registry.decode_event
        hold_streams = self.projection.on_error == "park-stream"
        with self.read_store.write(kept=True) as connection:  # one thread runs the batches
            if hold_streams and self._blocked is None:
                # Kept between batches: only this runner parks events of its build, and an
                # outside retry bumps the epoch, which makes the runner reload.
                self._blocked = self.dead_letters.blocked_streams(connection, name, self.generation)
            blocked = self._blocked or set()
            held = 0
            context = ApplyContext(
                connection,
                name,
                self.generation,
                live_since=self.live_since(),
                live_after=self.live_after,
                caches=self._caches,
                lock_reads=self.partition is not None,
            )
            partition = self.partition
            for record in events:
                spec = handlers.get(record.type)
                if spec is None or (partition is not None and not partition.holds(record.stream)):
                    continue
                if record.stream in blocked:
                    self.dead_letters.park(
                        connection, name, self.generation, record, reason="waiting"
                    )
                    held += 1
                    continue
                context.record = record
                if spec.live_only and not context.live:
                    continue
                spec.function(decode(record.type, record.schema_version, record.data), context)
            context.flush()
            self.advance(connection, expected, events[-1].position, head, next_at, parked=held)
        if held:
            log.warning(
                "%s g%d: %d event(s) parked behind a failed event of their stream",
                name,
                self.generation,
                held,
            )

    def _conflict(self, position: int) -> bool:
        """Counts a write conflict of the batch after `position`; False past a few in a row
        (then it is treated as the handler's failure, so it cannot loop for ever)."""
        self._conflicts = {position: self._conflicts.get(position, 0) + 1}
        return self._conflicts[position] <= MAX_CONFLICTS

    def holds(self, stream: str) -> bool:
        """True for a stream this runner applies: every one, or its partition's."""
        return self.partition is None or self.partition.holds(stream)

    def live_since(self) -> float | None:
        return self.created_at if self.serving or self.live_while_building else None

    def advance(
        self,
        connection: sa.Connection,
        expected: int,
        position: int,
        head: int,
        next_at: float | None,
        *,
        parked: int = 0,
    ) -> None:
        if self.partition is not None:
            moved = self.partitions.advance(
                connection,
                self.name,
                self.generation,
                self.partition.index,
                expected=expected,
                position=position,
                epoch=self._epoch,
                head=head,
                next_at=next_at,
                serving=self.serving,
                parked=parked,
            )
            if not moved:
                raise CheckpointMoved(
                    f"partition {self.partition} of {self.name} g{self.generation} moved"
                )
            return
        state = State.REBUILDING
        if self.serving:
            state = State.LIVE if next_at is None else State.CATCHING_UP
        moved = self.checkpoints.advance(
            connection,
            self.name,
            self.generation,
            expected=expected,
            position=position,
            head=head,
            next_at=next_at,
            state=state,
            epoch=self._epoch,
            parked=parked,
            last=True,  # the transaction's last statement: its COMMIT goes with it
        )
        if not moved:
            raise CheckpointMoved(f"the checkpoint of {self.name} g{self.generation} moved")

    def _failed(
        self, record: StoredEvent, error: Exception, *, head: int, next_at: float | None
    ) -> BatchResult:
        attempts = self._attempts.get(record.position, 0) + 1
        self._attempts[record.position] = attempts
        if attempts < self.max_attempts or self.projection.on_error == "stop":
            raise HandlerFailed(
                self.name, record.position, record.type, record.stream, error, attempts
            ) from error
        with self.read_store.write() as connection:
            self.dead_letters.park(
                connection,
                self.name,
                self.generation,
                record,
                reason="failed",
                error=f"{type(error).__name__}: {error}",
                traceback="".join(traceback.format_exception(error)),
                attempts=attempts,
            )
            self.advance(connection, self.position, record.position, head, next_at, parked=1)
        log.error(
            "%s g%d parked event %d (%s on %r) after %d attempts: %s",
            self.name,
            self.generation,
            record.position,
            record.type,
            record.stream,
            attempts,
            first_line(f"{type(error).__name__}: {error}"),
        )
        del self._attempts[record.position]
        self._position = record.position
        return BatchResult(1, record.position, head, caught_up=next_at is None)

    def retry_parked(self) -> tuple[int, int]:
        """Applies this build's parked events in order (`retry.retry_parked`)."""
        return retry_parked(self)
