"""What an operator does to projections through a Runtime: catch up, rebuild, swap, pause,
and retry dead letters."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..app import App
from ..errors import NotRegistered, RoleNotServed
from ..readstore.checkpoints import Checkpoint, Checkpoints
from ..readstore.dead_letters import DeadLetter, DeadLetters
from ..stores import MISSING_TABLE_ERRORS, Store
from ..wakeups import HighWater
from .builds import swap_in
from .definition import Projection
from .projector import Projector
from .runner import ProjectionRunner


class ProjectionOperations(ABC):
    """The projection operations of `Runtime`, which provides what they use."""

    app: App
    read_store: Store
    checkpoints: Checkpoints
    dead_letters: DeadLetters
    high_water: HighWater
    projector: Projector | None

    @abstractmethod
    def install(self) -> None:
        """Creates the missing tables (the Runtime's own)."""

    def catch_up(self, *, strict: bool = False) -> int:
        """Applies every pending event to every build, in this thread; returns the count.

        With `strict`, a handler's first failure is raised (HandlerFailed) instead of retried
        and parked: the mode for an app's own tests. See `Projector.catch_up`.
        """
        projector = self._projector()
        self.install()
        return projector.catch_up(strict=strict)

    @property
    def runners(self) -> list[ProjectionRunner]:
        """The builds this process runs, serving ones first, in the App's order."""
        if self.projector is None:
            return []
        self.install()
        order = {name: index for index, name in enumerate(self.app.projections)}
        return sorted(
            self.projector.runners.values(),
            key=lambda r: (not r.serving, order.get(r.name, 0), r.generation),
        )

    def pause_projector(self) -> None:
        """Stops applying events until `resume_projector` (lag builds up meanwhile)."""
        self._projector().pause()

    def resume_projector(self) -> None:
        self._projector().resume()

    def rebuild(self, name: str) -> Checkpoint:
        """Starts a blue/green rebuild; the serving build answers queries until the swap.

        In a process without the projector role, this records the request; the projector
        processes pick it up within seconds.
        """
        self.install()
        projection = self._projection(name)
        if self.projector is not None:
            return self.projector.rebuild(name)
        return self.checkpoints.start_build(name, projection.version, projection.table_names)

    def list_dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        """Unresolved dead letters, of one projection or all."""
        if name is not None:
            self._projection(name)
        try:
            with self.read_store.read() as connection:
                return self.dead_letters.open(connection, name)
        except MISSING_TABLE_ERRORS:
            return []

    def retry_dead_letters(self, name: str) -> tuple[int, int]:
        """Applies a projection's parked events again, in order; (applied, still parked)."""
        self._projection(name)
        projector = self._projector()
        self.install()
        return projector.retry_parked(name)

    def swap(self, name: str, *, force: bool = False) -> Checkpoint:
        """Swaps the build in progress of a projection in, now; the build as it serves.

        Refused (409) while the build is behind the serving one, or while it has dead letters
        unless `force`: forcing serves a read model that misses the events it parked, which is
        right when those events are known to be of no consequence to it.
        """
        self._projection(name)
        self.install()
        swapped = swap_in(self.checkpoints, name, force=force)
        if self.projector is not None:
            self.projector.reconcile()
        self.high_water.wake()
        return swapped

    def _projection(self, name: str) -> Projection:
        try:
            return self.app.projections[name]
        except KeyError:
            raise NotRegistered(f"there is no projection named {name!r}") from None

    def _projector(self) -> Projector:
        if self.projector is None:
            raise RoleNotServed("this process does not run the projector role")
        return self.projector
