"""The projector: keeps every projection's builds running, leased, and swaps finished rebuilds.

One background thread per process. It wakes when a command commits (in this process, or by
LISTEN/NOTIFY) and polls otherwise. Every few seconds it reconciles the builds it runs with the
checkpoint table, so rebuilds started elsewhere (HTTP, the CLI, another process) are picked up.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

from ..errors import HandlerFailed, NotRegistered, StoreUnavailable
from ..readstore.checkpoints import BuildBlocked, Checkpoint, Checkpoints, State
from ..readstore.leases import Leases
from ..wakeups import HighWater, ProgressBoard, Worker
from .batch import CheckpointMoved
from .builds import wanted_builds
from .coordination import Claim, Coordinator
from .definition import Projection
from .runner import ProjectionRunner
from .swap import Swap, Swapper

log = logging.getLogger("projectionist.projections")

RunnerFactory = Callable[[Projection, Checkpoint], ProjectionRunner]


class Projector:
    """Runs the builds of a set of projections in a background thread."""

    def __init__(
        self,
        projections: Sequence[Projection],
        *,
        make_runner: RunnerFactory,
        checkpoints: Checkpoints,
        high_water: HighWater,
        board: ProgressBoard,
        leases: Leases | None = None,
        poll_interval_s: float = 0.5,
        reconcile_interval_s: float = 2.0,
        max_backoff_s: float = 30.0,
        lease_retry_s: float = 0.5,
        store_retry_s: float = 0.5,
        loop_context: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.projections = {p.name: p for p in projections}
        self.make_runner = make_runner
        self.checkpoints = checkpoints
        self.high_water = high_water
        self.board = board
        self.coordinator = Coordinator(leases, retry_s=lease_retry_s)
        self.coordinator.pulse = self._keep_leases_fresh
        self._leases_kept_at = 0.0
        self.poll_interval_s = poll_interval_s
        self.reconcile_interval_s = reconcile_interval_s
        self.max_backoff_s = max_backoff_s
        self.store_retry_s = store_retry_s
        # What the loop's thread runs in (the runtime's in-memory events trust wake-ups there).
        self.loop_context = loop_context
        self.runners: dict[tuple[str, int], ProjectionRunner] = {}
        self.swapper = Swapper(checkpoints, board, self.coordinator, self.runners)
        self.paused = threading.Event()
        self._worker = Worker("projectionist-projector", self._loop, high_water)
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._reconciled_at = 0.0
        self._lock = threading.RLock()

    # Builds

    def reconcile(self) -> None:
        """Starts the builds the code and the checkpoint table call for; drops stale ones."""
        with self._lock:
            self._reconcile()
            self._reconciled_at = time.monotonic()

    def _reconcile(self) -> None:
        with self.checkpoints.store.read() as connection:
            rows = self.checkpoints.all(connection)
        wanted = wanted_builds(self.projections.values(), rows, self.checkpoints)
        for key in list(self.runners):
            if key not in wanted:
                gone = self.runners.pop(key)
                if gone.serving:
                    # Another process swapped in a build this one does not run.
                    self.board.forget(gone.name)
        for key, build in wanted.items():
            runner = self.runners.get(key)
            if runner is None:
                runner = self.make_runner(build.projection, build.checkpoint)
                runner.attach(self.coordinator)
                runner.install()
                self.runners[key] = runner
            runner.serving = build.checkpoint.active
            runner.live_while_building = build.replaces

    def rebuild(self, name: str) -> Checkpoint:
        """Starts a blue/green rebuild of a projection; RebuildInProgress if one runs."""
        projection = self.projection(name)
        build = self.checkpoints.start_build(name, projection.version, projection.table_names)
        self.reconcile()
        self.high_water.wake()
        return build

    def projection(self, name: str) -> Projection:
        """The projection of this name; NotRegistered if there is none."""
        try:
            return self.projections[name]
        except KeyError:
            raise NotRegistered(f"there is no projection named {name!r}") from None

    def pause(self) -> None:
        """Stops applying events until `resume` (lag builds up meanwhile)."""
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()
        self.high_water.wake()

    def catch_up(self, *, strict: bool = False) -> int:
        """Runs every build in this thread until none has more to apply; returns the count.

        Swaps in the builds that catch up. Handler failures are retried and parked as the
        projection's `on_error` says, without waiting for the backoff; with `on_error="stop"`
        the failure is recorded and raised. With `strict` (for tests), the first failure of a
        handler is raised as HandlerFailed, its error as the cause, and nothing is parked.
        """
        total = 0
        while True:
            self.reconcile()
            progressed = 0
            for key, runner in list(self.runners.items()):
                for _ in range(runner.max_attempts + 1):
                    try:
                        applied = runner.run_until_caught_up()
                        total += applied
                        progressed += applied
                        break
                    except HandlerFailed as failure:
                        if strict:
                            runner.forget_position()
                            raise
                        if runner.projection.on_error == "stop":
                            self.checkpoints.mark(
                                runner.name,
                                runner.generation,
                                state=State.FAILED,
                                error=failure.detail,
                            )
                            raise
                if runner.serving:
                    self._progressed(runner, runner.position)
                elif self.swapper.swap(key, runner) is Swap.WAITING:
                    # The serving build (run by another process) moved on meanwhile: catch
                    # up again, after a moment.
                    progressed += 1
                    time.sleep(0.01)
            if not progressed:
                return total

    def run_until_serving(
        self,
        name: str,
        generation: int,
        *,
        progress: Callable[[Checkpoint], None] | None = None,
        timeout_s: float | None = None,
    ) -> Checkpoint | None:
        """Runs one build in this thread until it serves; the build as it was swapped in.

        Each round applies a batch of the build and one of the serving build (the swap waits
        for it when no other process runs it), then reads the build's checkpoint: done when it
        serves, or None when it is gone (another process dropped it). `progress` sees the
        checkpoint after each round. BuildBlocked once the build has nothing left to read but
        dead letters (it is never swapped in by itself); TimeoutError past `timeout_s`.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            serving = self.serving_runner(name)
            if serving is not None and serving.generation != generation:
                self.step_build(name, serving.generation)
            read = self.step_build(name, generation)
            with self.checkpoints.store.read() as connection:
                build = self.checkpoints.load(connection, name, generation)
            if build is None or build.active:
                return build
            if progress is not None:
                progress(build)
            if read == 0 and build.dead_letters:
                raise BuildBlocked(
                    f"build {generation} of {name} has {build.dead_letters} dead letter(s)"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"build {generation} of {name} stood at position"
                    f" {build.position} after {timeout_s:g} s"
                )
            if read == 0:
                time.sleep(0.05)

    def retry_parked(self, name: str) -> tuple[int, int]:
        """Applies a projection's parked events again, in order; (applied, still parked)."""
        self.projection(name)
        self.reconcile()
        applied = failed = 0
        for runner in [r for r in self.runners.values() if r.name == name]:
            done, left = runner.retry_parked()
            applied += done
            failed += left
        self.swapper.forget_blocked(name)
        self.high_water.wake()
        return applied, failed

    def swap(self, name: str, generation: int, *, force: bool = False) -> bool:
        """Swaps a caught-up build of this process in; with `force`, even while the serving
        build is ahead of it or while it has dead letters. True once this process is done with
        the build (it serves, or another process dropped it)."""
        key = (name, generation)
        runner = self.runners.get(key)
        if runner is None:
            return False
        if force:
            self.swapper.patient(key)
        return self.swapper.swap(key, runner, force=force) in (Swap.SWAPPED, Swap.GONE)

    def _progressed(self, runner: ProjectionRunner, position: int) -> None:
        """Tells queries here where a serving build stands, if this process knows it alone."""
        if runner.complete:
            self.board.advance(runner.name, position)
        else:
            # A share of a partitioned build: other processes move the rest, so queries
            # watch the build's checkpoint instead.
            self.board.forget(runner.name)

    # Leases

    def owns(self, runner: ProjectionRunner) -> bool:
        """Takes or extends the runner's lease when due; True while this process holds it."""
        claim = self.coordinator.claim(runner.lease_name)
        if claim is Claim.TAKEN:
            runner.forget_position()
        elif claim in (Claim.REFUSED, Claim.LOST) and runner.serving:
            # Queries here must now watch the checkpoint that another process moves.
            self.board.forget(runner.name)
        return claim.held

    def _keep_leases(self) -> None:
        """Takes or extends every due lease of this process's builds, those in a back-off
        included: a dead process's builds are taken at the start of a step, not after the
        batches of the others, and a slow build lets no other lease lapse."""
        self._leases_kept_at = time.monotonic()
        if self.coordinator.leases is None:
            return
        for runner in list(self.runners.values()):
            if self.owns(runner):
                runner.keep_leases()

    def _keep_leases_fresh(self) -> None:
        """`_keep_leases` when a third of the lease TTL has passed since it last ran."""
        leases = self.coordinator.leases
        if leases is not None and time.monotonic() - self._leases_kept_at > leases.ttl_s / 3:
            self._keep_leases()

    # The loop

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._worker.stop(timeout_s)
        for runner in list(self.runners.values()):
            for lease in runner.leases():
                self.coordinator.release(lease)

    @property
    def running(self) -> bool:
        return self._worker.running

    def step(self) -> int:
        """Runs one batch of every build that is due; returns how many events were read."""
        read = 0
        with self._lock:
            if time.monotonic() - self._reconciled_at > self.reconcile_interval_s:
                try:
                    self._reconcile()
                except StoreUnavailable as down:
                    log.warning("cannot reconcile projections: %s", down)
                self._reconciled_at = time.monotonic()
            self._keep_leases()
            for key, runner in list(self.runners.items()):
                if self.paused.is_set():
                    break
                self._keep_leases_fresh()
                read += self._step(key, runner)
        return read

    def step_build(self, name: str, generation: int) -> int:
        """Runs one batch of one build if this process holds its lease; events read."""
        with self._lock:
            key = (name, generation)
            runner = self.runners.get(key)
            return 0 if runner is None else self._step(key, runner)

    def _step(self, key: tuple[str, int], runner: ProjectionRunner) -> int:
        now = time.monotonic()
        lease = runner.lease_name
        if self._retry_at.get(lease, 0.0) > now or not self.owns(runner):
            return 0
        try:
            result = runner.run_once()
        except CheckpointMoved as moved:
            log.info("%s", moved)
            return 0
        except StoreUnavailable as down:
            # Not the projection's fault: keep its state, retry soon. Failing on, give the
            # build to a process that can read (this one's feed may be cut off).
            self._retry_at[lease] = time.monotonic() + self.store_retry_s
            log.warning("projection %s waits for a store: %s", runner.name, down)
            if self.coordinator.failed(lease, now, runner.leases()) and runner.serving:
                self.board.forget(runner.name)
            return 0
        except Exception as error:  # a handler failed: back off, then retry or park
            self._back_off(runner, error, now)
            return 0
        self._failures.pop(lease, None)
        self._retry_at.pop(lease, None)
        self.coordinator.succeeded(lease)
        if runner.serving:
            self._progressed(runner, result.position)
        elif result.caught_up:
            try:
                if self.swapper.ready(key, runner):
                    self.swapper.swap(key, runner)
            except Exception as error:  # the read store is busy or down: swap later
                self._retry_at[lease] = now + 1.0
                log.warning(
                    "could not swap in build %d of %s yet: %s",
                    runner.generation,
                    runner.name,
                    error,
                )
        if result.head:
            self.high_water.seen(result.head)
        return result.applied

    def serving_runner(self, name: str) -> ProjectionRunner | None:
        """This process's runner of the serving build of a projection, if it has one."""
        return next((r for r in self.runners.values() if r.name == name and r.serving), None)

    def _back_off(self, runner: ProjectionRunner, error: Exception, now: float) -> None:
        lease = runner.lease_name
        failures = self._failures.get(lease, 0) + 1
        self._failures[lease] = failures
        delay = min(self.max_backoff_s, 0.05 * 2 ** (failures - 1))
        self._retry_at[lease] = now + delay
        log.warning("%s (retry in %.2fs)", error, delay)
        stopped = (
            isinstance(error, HandlerFailed)
            and runner.projection.on_error == "stop"
            and error.attempts >= runner.max_attempts
        )
        if stopped or not isinstance(error, HandlerFailed):
            try:
                self.checkpoints.mark(
                    runner.name,
                    runner.generation,
                    state=State.FAILED,
                    error="".join(traceback.format_exception_only(error)),
                )
            except Exception:  # the read store itself is down
                log.debug("could not record the failure of %s", runner.name, exc_info=True)

    def _loop(self, stopping: threading.Event) -> None:
        with self.loop_context():
            self._run(stopping)

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            generation = self.high_water.generation
            try:
                read = self.step()
            except Exception:  # never let the thread die: log, wait, go on
                log.exception("the projector loop failed; retrying")
                read = 0
            if read == 0 and not stopping.is_set():
                self.high_water.wait(generation, self.poll_interval_s)
