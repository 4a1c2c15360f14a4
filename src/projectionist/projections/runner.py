"""Applying events to a projection: one batch, one read-store transaction, checkpoint included."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import StoreUnavailable
from ..eventlog import EventLog
from ..messages import Registry, StoredEvent
from ..metrics import Metrics
from ..signals import LogWatch, ProgressBoard
from ..stores import Store
from .checkpoints import Checkpoints
from .context import ApplyContext
from .definition import Projection
from .leases import Leases

log = logging.getLogger("projectionist.projections")

CHECKPOINT_CHANNEL = "projectionist_checkpoints"
_NOTIFY = sa.text(f"SELECT pg_notify('{CHECKPOINT_CHANNEL}', :payload)")


class CheckpointMoved(Exception):
    """Another runner moved the checkpoint; this batch was rolled back."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did."""

    applied: int
    position: int
    head: int


class ProjectionRunner:
    """Runs one version of one projection: read after the checkpoint, apply, commit together."""

    def __init__(
        self,
        projection: Projection,
        *,
        log: EventLog,
        read_store: Store,
        registry: Registry,
        checkpoints: Checkpoints,
        version: int | None = None,
        batch_size: int = 1000,
        on_progress: Callable[[str, int], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.projection = projection
        self.version = version if version is not None else projection.version
        self.log = log
        self.read_store = read_store
        self.registry = registry
        self.checkpoints = checkpoints
        self.batch_size = batch_size
        self.on_progress = on_progress
        self._position: int | None = None

    @property
    def lease_name(self) -> str:
        return f"{self.projection.name}:v{self.version}"

    def install(self) -> None:
        """Creates this version's tables and checkpoint if they do not exist."""
        tables = self.projection.physical_tables(self.version)
        with self.read_store.schema() as connection:
            for table in tables:
                table.create(connection, checkfirst=True)
        self._position = self.checkpoints.ensure(self.projection.name, self.version).position

    def forget_position(self) -> None:
        """Reloads the checkpoint before the next batch (another runner may have moved it)."""
        self._position = None

    @property
    def position(self) -> int:
        if self._position is None:
            self.install()
        assert self._position is not None
        return self._position

    def run_once(self) -> BatchResult:
        """Applies the next batch, if any; returns what it applied."""
        start = self.position
        events = self.log.read(start, self.batch_size)
        if not events:
            return BatchResult(0, start, start)
        last = events[-1].position
        head, next_at = last, None
        if len(events) == self.batch_size:
            following = self.log.read(last, 1)
            if following:
                next_at = following[0].recorded_at
                head = max(self.log.head(), following[0].position)
        began = time.perf_counter()
        try:
            self._apply(events, expected=start, head=head, next_at=next_at)
        except CheckpointMoved:
            self._position = None
            raise
        if self.metrics is not None:
            name = self.projection.name
            self.metrics.events_applied.labels(name).inc(len(events))
            self.metrics.batch_seconds.labels(name).observe(time.perf_counter() - began)
        self._position = last
        if self.on_progress is not None:
            self.on_progress(self.projection.name, last)
        return BatchResult(len(events), last, head)

    def _apply(self, events: Sequence[StoredEvent], *, expected: int, head: int,
               next_at: float | None) -> None:
        name = self.projection.name
        handlers = self.projection.handlers
        decode = self.registry.decode_event
        with self.read_store.write() as connection:
            context = ApplyContext(connection, name, self.version)
            for record in events:
                spec = handlers.get(record.type)
                if spec is None:
                    continue
                context.record = record
                spec.function(decode(record.type, record.schema_version, record.data), context)
            context.flush()
            state = "live" if next_at is None else "catching_up"
            moved = self.checkpoints.advance(
                connection, name, self.version, expected=expected,
                position=events[-1].position, head=head, next_at=next_at, state=state,
            )
            if not moved:
                raise CheckpointMoved(f"the checkpoint of {name} v{self.version} moved")
            if not self.read_store.is_sqlite:
                connection.execute(_NOTIFY, {"payload": f"{name}:{events[-1].position}"})

    def run_until_caught_up(self, *, max_batches: int | None = None) -> int:
        """Applies batches until the log has nothing more; returns how many events it read."""
        total = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            result = self.run_once()
            if result.applied == 0:
                break
            total += result.applied
            batches += 1
        return total


class Projector:
    """Runs projections in a background thread; wakes at commit, polls otherwise."""

    def __init__(
        self,
        runners: Sequence[ProjectionRunner],
        *,
        watch: LogWatch,
        board: ProgressBoard,
        poll_interval_s: float = 0.5,
        max_backoff_s: float = 30.0,
        leases: Leases | None = None,
        lease_retry_s: float = 0.5,
    ) -> None:
        self.runners = list(runners)
        self.leases = leases
        self.lease_retry_s = lease_retry_s
        self._next_lease_try: dict[str, float] = {}
        self.watch = watch
        self.board = board
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="projectionist-projector",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.watch.advance(0, 0, 0.0)  # wake the loop
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.leases is not None:
            for runner in self.runners:
                if self.leases.holds(runner.lease_name):
                    try:
                        self.leases.release(runner.lease_name)
                    except Exception:  # the store is down: the lease runs out by itself
                        log.debug("could not release %s", runner.lease_name, exc_info=True)

    def owns(self, runner: ProjectionRunner) -> bool:
        """Takes or extends the runner's lease when due; True while this process holds it."""
        leases = self.leases
        if leases is None:
            return True
        name = runner.lease_name
        held = leases.holds(name)
        if held and not leases.due(name):
            return True
        now = time.monotonic()
        if not held and self._next_lease_try.get(name, 0.0) > now:
            return False
        try:
            taken = leases.take(name)
        except Exception:
            log.warning("could not take the lease of %s", name, exc_info=True)
            taken = False
        if taken and not held:
            log.info("this process now runs %s", name)
            runner.forget_position()
        if not taken:
            if held:
                log.warning("this process lost the lease of %s", name)
            # Queries here must now watch the checkpoint that another process moves.
            self.board.forget(runner.projection.name)
            self._next_lease_try[name] = now + self.lease_retry_s
        return taken

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def step(self) -> int:
        """Runs one batch of every projection that is due; returns how many events were read."""
        read = 0
        now = time.monotonic()
        for runner in self.runners:
            key = runner.projection.name
            if self._retry_at.get(key, 0.0) > now or not self.owns(runner):
                continue
            try:
                result = runner.run_once()
            except CheckpointMoved as moved:
                log.info("%s", moved)
                continue
            except StoreUnavailable as down:
                # Not the projection's fault: keep its state, retry soon.
                self._retry_at[key] = now + 1.0
                log.warning("projection %s waits for a store: %s", key, down)
                continue
            except Exception as error:  # a handler or the store failed: back off, retry
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self.max_backoff_s, 0.1 * 2 ** (failures - 1))
                self._retry_at[key] = now + delay
                log.warning("projection %s failed (attempt %d, retry in %.1fs): %s",
                            key, failures, delay, error)
                try:
                    runner.checkpoints.mark(key, runner.version, state="failed",
                                            error="".join(traceback.format_exception_only(error)))
                except Exception:  # the read store itself is down
                    log.debug("could not record the failure of %s", key, exc_info=True)
                continue
            self._failures.pop(key, None)
            self._retry_at.pop(key, None)
            self.board.advance(key, result.position)
            if result.head:
                self.watch.seen(result.head)
            read += result.applied
        return read

    def _loop(self) -> None:
        while not self._stop.is_set():
            generation = self.watch.generation
            if self.step() == 0 and not self._stop.is_set():
                self.watch.wait(generation, self.poll_interval_s)
