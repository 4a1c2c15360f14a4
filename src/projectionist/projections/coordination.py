"""Coordination: which builds this process runs, by a lease per build in the read store.

Like the coordination agent of Marten's daemon: a process runs a build only while it holds the
build's lease; a process that dies stops extending it, and another takes over within the TTL.
The checkpoint's compare-and-set still fences every batch.
"""

from __future__ import annotations

import logging
import time
from enum import Enum

from ..readstore.leases import Leases

log = logging.getLogger("projectionist.projections")


def lease_name(projection: str, generation: int) -> str:
    """The lease of one build of a projection."""
    return f"{projection}:g{generation}"


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

    def __init__(self, leases: Leases | None, *, retry_s: float = 0.5) -> None:
        self.leases = leases
        self.retry_s = retry_s
        self._next_try: dict[str, float] = {}

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

    def runs_elsewhere(self, name: str) -> bool:
        """True when some process holds a live lease of `name` (this one included)."""
        if self.leases is None:
            return False
        owner = self.leases.owners().get(name)
        return owner is not None and owner[1] >= time.time()
