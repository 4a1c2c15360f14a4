"""Swapping caught-up builds in: when the serving build has caught up, never with dead letters.

A build in progress is swapped in once it has applied what the serving build has (the serving
build runs the live-only side effects, so the swap waits for it, for SWAP_PATIENCE_S at most)
and only when it has no dead letters: a build that could not apply every event never replaces
a good one by itself. An operator may force it (`projectionist swap NAME --force`).
"""

from __future__ import annotations

import logging
import time
from enum import Enum

from ..readstore.checkpoints import BuildBlocked, BuildGone, Checkpoints
from ..wakeups import ProgressBoard
from .coordination import Coordinator, lease_name
from .runner import ProjectionRunner

log = logging.getLogger("projectionist.projections")

SWAP_PATIENCE_S = 5.0
"""How long a caught-up build waits for the serving one to stop being ahead of it."""


class Swap(Enum):
    """What an attempt to swap a caught-up build in came to."""

    SWAPPED = "swapped"
    WAITING = "waiting"
    """The serving build is ahead of it: try again after the next batch."""
    BLOCKED = "blocked"
    """It has dead letters: it waits for a retry, or for an operator's forced swap."""
    GONE = "gone"
    """Another process swapped it out or dropped it."""


class Swapper:
    """Swaps in the caught-up builds of a projector's runners (shared with it)."""

    def __init__(
        self,
        checkpoints: Checkpoints,
        board: ProgressBoard,
        coordinator: Coordinator,
        runners: dict[tuple[str, int], ProjectionRunner],
    ) -> None:
        self.checkpoints = checkpoints
        self.board = board
        self.coordinator = coordinator
        self.runners = runners
        self.blocked: set[tuple[str, int]] = set()
        """Builds refused for their dead letters, each said once."""
        self._refused_at: dict[tuple[str, int], float] = {}

    def forget_blocked(self, name: str) -> None:
        """Says it again when a projection's builds are refused after a retry."""
        self.blocked = {key for key in self.blocked if key[0] != name}

    def patient(self, key: tuple[str, int]) -> None:
        """Lets the next swap of the build go ahead even while the serving build is ahead."""
        self._refused_at[key] = -SWAP_PATIENCE_S

    def ready(self, key: tuple[str, int], runner: ProjectionRunner) -> bool:
        """True when the build has no dead letters and the serving build has applied what the
        new one has (or is frozen).

        A serving build of the same version runs the live-only side effects; swapping while
        it is behind would leave the events in between without them.
        """
        with self.checkpoints.store.read() as connection:
            serving = self.checkpoints.active(connection, [runner.name]).get(runner.name)
            build = self.checkpoints.load(connection, runner.name, runner.generation)
        if build is not None and build.dead_letters:
            self._note_blocked(
                key,
                f"build {build.generation} of {build.name} has {build.dead_letters} dead letter(s)",
            )
            return False
        if (
            serving is None
            or serving.version != runner.projection.version
            or serving.position >= runner.position
        ):
            return True
        # Wait only for a serving build that someone runs; nobody would run its side effects
        # otherwise, and the swap must not wait forever.
        if self.coordinator.leases is None:
            return (serving.name, serving.generation) not in self.runners
        return not self.coordinator.runs_elsewhere(lease_name(serving.name, serving.generation))

    def swap(self, key: tuple[str, int], runner: ProjectionRunner, *, force: bool = False) -> Swap:
        """Swaps a caught-up build in, unless the serving build is still ahead of it (WAITING)
        or it has dead letters (BLOCKED, until they are retried or `force`).

        After SWAP_PATIENCE_S of refusals (a serving build that keeps moving ahead under
        load), it swaps anyway: answers then state the older position they stand at.
        """
        now = time.monotonic()
        waiting_since = self._refused_at.setdefault(key, now)
        try:
            old = self.checkpoints.swap(
                runner.name,
                runner.generation,
                behind_ok=now - waiting_since > SWAP_PATIENCE_S,
                with_dead_letters=force,
            )
        except BuildBlocked as blocked:
            self._refused_at.pop(key, None)
            self._note_blocked(key, str(blocked))
            return Swap.BLOCKED
        except BuildGone:
            # Another process swapped it out or dropped it: this process stops running it.
            log.info(
                "%s: build %d is gone; this process stops running it",
                runner.name,
                runner.generation,
            )
            self.runners.pop(key, None)
            self._refused_at.pop(key, None)
            self.coordinator.release(runner.lease_name)
            return Swap.GONE
        if old is None:
            return Swap.WAITING
        self._refused_at.pop(key, None)
        self.blocked.discard(key)
        runner.serving = True
        # Swapped in behind the old build (after SWAP_PATIENCE_S): the events in between had
        # their live-only effects from the old build already.
        runner.live_after = max((b.position for b in old if b.active), default=0)
        for build in old:
            stale = self.runners.pop((build.name, build.generation), None)
            if stale is not None:
                self.coordinator.release(stale.lease_name)
        self.board.forget(runner.name)
        self.board.advance(runner.name, runner.position)
        log.info("%s: build %d caught up and now serves", runner.name, runner.generation)
        return Swap.SWAPPED

    def _note_blocked(self, key: tuple[str, int], why: str) -> None:
        """Says once per build why it is not swapped in, and what an operator can do."""
        if key in self.blocked:
            return
        self.blocked.add(key)
        name = key[0]
        log.warning(
            "%s: it is not swapped in, and the serving build keeps serving. Retry them after a"
            " fix (projectionist dead-letters retry %s), or swap it in as it is (projectionist"
            " swap %s --force)",
            why,
            name,
            name,
        )
