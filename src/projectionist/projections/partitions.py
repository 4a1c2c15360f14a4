"""Partitioned builds: the partitions of one build, shared fairly by the processes that run it.

Like Axon's segments or a Kafka consumer group: each partition has its own lease, and each
projector process holds about `partitions / processes` of them. A process counts the others
by their membership leases (one per process and build, taken as the projector steps the
build): when one joins, those holding more than their share give the extra partitions back;
when one dies, its membership and partition leases run out and the others take its share.
The partition checkpoint's compare-and-set fences every batch, as for any build.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import HandlerFailed, StoreUnavailable
from ..eventlog import EventSource
from ..messages import StoredEvent
from ..readstore.checkpoints import Checkpoint
from ..readstore.partitions import PartitionCheckpoints
from .batch import BatchResult, CheckpointMoved
from .coordination import Claim, Coordinator, lease_name
from .runner import Deferred, ProjectionRunner

log = logging.getLogger("projectionist.projections")

T = TypeVar("T")

_MEMBERS_TTL_S = 1.0
"""How long a count of the build's member processes is trusted before reading it again."""
REBALANCE_LEASES = 10
"""For how many lease times the count of member processes must stay the same before extra
partitions are given back to processes that joined (at least 5 s)."""


class StepReads:
    """The log as the partitions of one build read it in one step: each read made once.

    Partitions of a build that stand at the same position ask for the same batch; the first
    reads it and the others share it. Forgotten at the start of every step, so no partition
    sees the log older than the step it runs in. Once the source could not be read, the
    other partitions are told so at once for the rest of the step: a feed that hangs costs
    one read's timeout a step, not one per partition.
    """

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self._reads: dict[tuple[int, int], list[StoredEvent]] = {}
        self._down: StoreUnavailable | None = None

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        key = (after, limit)
        events = self._reads.get(key)
        if events is None:
            events = self._reads[key] = self._unless_down(lambda: self.source.read(after, limit))
        return events

    def head(self) -> int:
        return self._unless_down(self.source.head)

    def _unless_down(self, read: Callable[[], T]) -> T:
        if self._down is not None:
            raise StoreUnavailable(str(self._down))
        try:
            return read()
        except StoreUnavailable as down:
            self._down = down
            raise

    def forget(self) -> None:
        self._reads = {}
        self._down = None


class PartitionedRunner(ProjectionRunner):
    """Runs the partitions of one partitioned build that this process holds.

    `parts` are one runner per partition, in partition order. The projector steps this runner
    like any other; each step claims this process's share of the partitions and runs a batch
    of each. Its position is the build's: the lowest partition position.
    """

    def __init__(
        self, parts: list[ProjectionRunner], build: Checkpoint, reads: StepReads | None = None
    ) -> None:
        first = parts[0]
        super().__init__(
            first.projection,
            build,
            log=first.log,
            read_store=first.read_store,
            registry=first.registry,
            checkpoints=first.checkpoints,
            dead_letters=first.dead_letters,
            batch_size=first.batch_size,
            max_attempts=first.max_attempts,
            metrics=first.metrics,
        )
        self.parts = parts
        self.reads = reads
        self._deferred: list[Deferred] = []
        for part in parts:
            part.deferred = self._deferred
        self.coordinator: Coordinator | None = None
        self._members = 1
        self._members_read_at = 0.0
        self._members_changed_at = 0.0
        self._seen: set[str] = set()  # the membership leases seen in this build so far
        self._newcomers = False  # the last change of members brought a process never seen
        self._first_claim_at: float | None = None
        self._held: list[ProjectionRunner] = []

    # What the projector and the swapper set and read

    @property
    def lease_name(self) -> str:
        """The membership lease of this process in the build; the partitions have their own."""
        owner = "local"
        if self.coordinator is not None and self.coordinator.leases is not None:
            owner = self.coordinator.leases.owner
        return f"{self._members_prefix}{owner}"

    @property
    def _members_prefix(self) -> str:
        return f"{lease_name(self.name, self.generation)}:members:"

    def leases(self) -> list[str]:
        return [self.lease_name, *(part.lease_name for part in self.parts)]

    def attach(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def keep_leases(self) -> None:
        self._claim()

    @property
    def complete(self) -> bool:
        """True while this process holds every partition (its positions are then the build's)."""
        return len(self._held) == len(self.parts)

    def __setattr__(self, name: str, value: object) -> None:
        # The projector and the swapper set these on the build's runner: every partition
        # runs as the build does.
        super().__setattr__(name, value)
        if name in ("serving", "live_while_building", "live_after"):
            for part in self.__dict__.get("parts", ()):
                setattr(part, name, value)

    @property
    def position(self) -> int:
        if self.complete:
            return min(part.position for part in self.parts)
        with self.read_store.read() as connection:
            row = self.checkpoints.load(connection, self.name, self.generation)
        if row is None:
            raise CheckpointMoved(f"build {self.generation} of {self.name} is gone")
        return row.position

    def install(self) -> None:
        super().install()
        with self.read_store.schema() as connection:
            build = self.checkpoints.load(connection, self.name, self.generation)
            position = build.position if build is not None else 0
            PartitionCheckpoints().ensure(
                connection, self.name, self.generation, len(self.parts), position
            )

    def forget_position(self) -> None:
        super().forget_position()
        for part in self.parts:
            part.forget_position()

    # Running

    def run_once(self) -> BatchResult:
        """Runs one batch of each partition this process holds; the build's result.

        A partition whose handler fails does not hold the others back: they run first, and
        the failure is raised after them.
        """
        applied, head, caught_up = 0, 0, True
        failure: Exception | None = None
        down: StoreUnavailable | None = None
        ran = 0
        if self.reads is not None:
            self.reads.forget()
        began = time.perf_counter()
        for part in self._claim():
            if self.coordinator is not None:
                self.coordinator.pulse()  # the partitions before this one may have run long
            try:
                result = part.run_once()
            except CheckpointMoved as moved:
                log.info("%s", moved)
                caught_up = False
                continue
            except HandlerFailed as error:
                failure = failure or error
                continue
            except StoreUnavailable as error:
                # One partition that cannot read (its feed's consumer is on a dead node, say)
                # holds back neither the others nor the build's membership: after a while it
                # alone is given back, for a process that can read it.
                down = down or error
                caught_up = False
                if self.coordinator is not None:
                    self.coordinator.failed(part.lease_name, time.monotonic())
                continue
            ran += 1
            if self.coordinator is not None:
                self.coordinator.succeeded(part.lease_name)
            applied += result.applied
            head = max(head, result.head)
            caught_up = caught_up and result.caught_up
        if self._deferred:
            caught_up = self._commit_deferred() and caught_up
        if failure is not None:
            raise failure
        if down is not None and not ran:
            raise down  # every partition failed: the store itself, not one reader
        if applied:
            self.replay.batch(applied, time.perf_counter() - began, caught_up=caught_up)
        position = self.position
        return BatchResult(applied, position, max(head, position), caught_up)

    def _commit_deferred(self) -> bool:
        """Moves on, in one transaction, the partitions whose batch held none of their events;
        False if another runner moved one of them (they reload and read again)."""
        deferred, self._deferred[:] = list(self._deferred), []
        try:
            with self.read_store.write() as connection:
                for move in deferred:
                    move.runner.advance(
                        connection, move.expected, move.position, move.head, move.next_at
                    )
        except CheckpointMoved as moved:
            log.info("%s", moved)
            for move in deferred:
                move.runner.forget_position()
            return False
        except BaseException:
            for move in deferred:
                move.runner.forget_position()
            raise
        return True

    def run_until_caught_up(self, *, max_batches: int | None = None) -> int:
        total = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            result = self.run_once()
            total += result.applied
            batches += 1
            if result.caught_up or not self._held:
                break
        return total

    def retry_parked(self) -> tuple[int, int]:
        applied = left = 0
        for part in self.parts:
            done, still = part.retry_parked()
            applied += done
            left = still  # every partition counts the build's letters: the last count holds
        return applied, left

    # Sharing the partitions

    def _claim(self) -> list[ProjectionRunner]:
        """This process's share of the partitions, taken or kept; extra ones given back."""
        coordinator = self.coordinator
        if coordinator is None or coordinator.leases is None:
            self._held = list(self.parts)
            return self._held
        leases = coordinator.leases
        share = math.ceil(len(self.parts) / self._member_count())
        # Partitions go back to a process that joined only once the count of processes has
        # held for a few lease times: one that comes back from a cut link, or whose feed is
        # still finding its feet, finds the others running its share meanwhile, and
        # partitions do not change hands twice while a fault settles.
        patience = max(5.0, REBALANCE_LEASES * leases.ttl_s)
        now = time.monotonic()
        if self._first_claim_at is None:
            self._first_claim_at = now
        # A process that only just started took every partition it found free: it shares
        # them as soon as new processes show up, as processes started together expect; one
        # back from a cut link is no newcomer, and waits like any other.
        settled = now - self._members_changed_at >= patience or (
            now - self._first_claim_at < patience and self._newcomers
        )
        held: list[ProjectionRunner] = []
        # Those held already first: a process keeps what it runs and takes free ones only
        # up to its share, rather than trading partitions with the others.
        for part in sorted(self.parts, key=lambda p: not leases.holds(p.lease_name)):
            name = part.lease_name
            if len(held) >= share:
                if leases.holds(name) and not settled:
                    # Kept, and extended, until it is given back.
                    kept = coordinator.claim(name)
                    if kept.held:
                        held.append(part)
                    else:
                        part.forget_position()
                    continue
                if leases.holds(name):
                    log.info("giving %s back: %d process(es) share the build", name, self._members)
                    coordinator.release(name)
                    part.forget_position()
                continue
            claim = coordinator.claim(name)
            if claim in (Claim.TAKEN, Claim.LOST):
                part.forget_position()
            if claim.held:
                held.append(part)
        held.sort(key=self.parts.index)
        self._held = held
        return held

    def _member_count(self) -> int:
        now = time.monotonic()
        if now - self._members_read_at < _MEMBERS_TTL_S:
            return self._members
        assert self.coordinator is not None and self.coordinator.leases is not None
        prefix = self._members_prefix
        wall = time.time()
        try:
            owners = self.coordinator.leases.owners()
        except Exception:  # the read store is down: keep the last count
            log.debug("could not count the processes of %s", self.name, exc_info=True)
            return self._members
        live = {
            n for n, (_owner, until) in owners.items() if n.startswith(prefix) and until >= wall
        }
        members = max(1, len(live))
        if members != self._members:
            self._members_changed_at = now
            self._newcomers = bool(live - self._seen)
        self._seen |= live
        self._members = members
        self._members_read_at = now
        return self._members
