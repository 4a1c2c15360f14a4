"""Coordination: which builds this process runs, by a lease per build in the read store.

Like the coordination agent of Marten's daemon: a process runs a build only while it holds the
build's lease; a process that dies stops extending it, and another takes over within the TTL.
A process that is alive but cannot read its events (its feed is cut off) gives its leases back
after `give_up_after_s` of failures and stands down for `stand_down_s`, so that a process that
can read takes over rather than waiting for a lease that is still being extended. Every
due lease of the process is taken or extended before each build's step (`Coordinator.pulse`),
and feed reads give up within half the TTL, so one slow build lets no other lease lapse. The
checkpoint's compare-and-set still fences every batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum

from ..readstore.leases import Leases

log = logging.getLogger("projectionist.projections")


def lease_name(projection: str, generation: int, partition: int | None = None) -> str:
    """The lease of one build of a projection, or of one partition of a partitioned build."""
    build = f"{projection}:g{generation}"
    return build if partition is None else f"{build}:p{partition}"


class Claim(Enum):
    """What a claim on a build's lease came to."""

    KEPT = "kept"
    """Held, and not due for extending yet."""
    EXTENDED = "extended"
    TAKEN = "taken"
    """Newly taken: this process runs the build from now on."""
    WAITING = "waiting"
    """Not held, and too soon to try again."""
    REFUSED = "refused"
    """Another process holds it."""
    LOST = "lost"
    """Held until now; another process took it."""

    @property
    def held(self) -> bool:
        return self in (Claim.KEPT, Claim.EXTENDED, Claim.TAKEN)


class Coordinator:
    """Takes, extends and gives back this process's leases; without leases, owns everything."""

    def __init__(
        self,
        leases: Leases | None,
        *,
        retry_s: float = 0.5,
        give_up_after_s: float = 5.0,
        stand_down_s: float = 1.0,
    ) -> None:
        self.leases = leases
        self.retry_s = retry_s
        self.give_up_after_s = give_up_after_s
        self.stand_down_s = stand_down_s
        self._next_try: dict[str, float] = {}
        self._failing_since: dict[str, float] = {}
        # Set by the projector: takes or extends every due lease of the process. A build
        # that runs long (several partitions, each a read) calls it between its pieces.
        self.pulse: Callable[[], None] = lambda: None

    def claim(self, name: str) -> Claim:
        """Takes or extends the lease of `name` when due."""
        leases = self.leases
        if leases is None:
            return Claim.KEPT
        held = leases.holds(name)
        if held and not leases.due(name):
            return Claim.KEPT
        now = time.monotonic()
        if not held and self._next_try.get(name, 0.0) > now:
            return Claim.WAITING
        try:
            taken = leases.take(name)
        except Exception:
            log.warning("could not take the lease of %s", name, exc_info=True)
            taken = False
        if taken:
            if not held:
                log.info("this process now runs %s", name)
            return Claim.EXTENDED if held else Claim.TAKEN
        if held:
            log.warning("this process lost the lease of %s", name)
        self._next_try[name] = now + self.retry_s
        return Claim.LOST if held else Claim.REFUSED

    def release(self, name: str) -> None:
        """Gives a lease back at once, so another process may take it without waiting."""
        if self.leases is not None and self.leases.holds(name):
            try:
                self.leases.release(name)
            except Exception:  # the store is down: the lease runs out by itself
                log.debug("could not release %s", name, exc_info=True)

    def failed(self, name: str, started: float, also: Sequence[str] = ()) -> bool:
        """Notes that a batch of `name` begun at `started` (monotonic) could not read or
        write; True when failures have lasted `give_up_after_s`, and the lease was given back,
        with the leases `also` held for the same build, so that another process takes over
        (this one stands down for `stand_down_s`)."""
        since = self._failing_since.setdefault(name, started)
        now = time.monotonic()
        if self.leases is None or now - since < self.give_up_after_s:
            return False
        del self._failing_since[name]
        for lease in dict.fromkeys([name, *also]):
            if self.leases.holds(lease):
                log.warning(
                    "this process gave back the lease of %s after %.1f s of failures",
                    lease,
                    now - since,
                )
            self.release(lease)
            self._next_try[lease] = now + self.stand_down_s
        return True

    def succeeded(self, name: str) -> None:
        """Notes that a batch of `name` went through: failures start counting afresh."""
        self._failing_since.pop(name, None)

    def runs_elsewhere(self, name: str) -> bool:
        """True when some process holds a live lease of `name` (this one included)."""
        if self.leases is None:
            return False
        owner = self.leases.owners().get(name)
        return owner is not None and owner[1] >= time.time()
