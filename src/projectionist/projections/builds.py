"""Which builds of each projection should run: the rule that reconciles code and checkpoints.

The code names each projection's version; the checkpoint table names the builds that exist. A
serving build of the code's version runs; a newer code version starts a build beside the
serving one (blue/green); builds of versions older than the code are dropped; a projection
served by newer code (a rolling deploy, this process the old one) is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import Refused
from ..readstore.checkpoints import BuildBlocked, BuildGone, Checkpoint, Checkpoints
from .definition import Projection

log = logging.getLogger("projectionist.projections")


@dataclass(frozen=True, slots=True)
class WantedBuild:
    """A build to run: `replaces` when it rebuilds an older version serving meanwhile."""

    projection: Projection
    checkpoint: Checkpoint
    replaces: bool = False


def wanted_builds(
    projections: Iterable[Projection], rows: list[Checkpoint], checkpoints: Checkpoints
) -> dict[tuple[str, int], WantedBuild]:
    """The builds to run, by (name, generation); creates and drops builds as the rule says."""
    wanted: dict[tuple[str, int], WantedBuild] = {}
    for projection in projections:
        builds = [row for row in rows if row.name == projection.name]
        active = next((row for row in builds if row.active), None)
        if active is None:
            active = checkpoints.serving(
                projection.name, projection.version, projection.table_names
            )
        if active.version == projection.version:
            wanted[(projection.name, active.generation)] = WantedBuild(projection, active)
        elif active.version > projection.version:
            continue  # newer code serves this projection; leave it alone
        building = [row for row in builds if not row.active]
        stale = [row for row in building if row.version < projection.version]
        if stale:
            log.info("dropping %d stale build(s) of %s", len(stale), projection.name)
            checkpoints.drop(stale)
        current = [row for row in building if row.version == projection.version]
        if active.version < projection.version and not current:
            log.info(
                "%s changed from version %d to %d: rebuilding it beside the old one",
                projection.name,
                active.version,
                projection.version,
            )
            current = [
                checkpoints.start_build(projection.name, projection.version, projection.table_names)
            ]
        replacing = active.version < projection.version
        for row in current:
            wanted[(projection.name, row.generation)] = WantedBuild(projection, row, replacing)
    return wanted


def swap_in(checkpoints: Checkpoints, name: str, *, force: bool = False) -> Checkpoint:
    """Swaps the build in progress of `name` in at once, as an operator asks; the build.

    Refused while the build is behind the serving one, or while it has dead letters unless
    `force`: forcing serves a read model without the events it parked, which is right when
    they are known to be of no consequence to it.
    """
    with checkpoints.store.read() as connection:
        building = [
            row for row in checkpoints.all(connection) if row.name == name and not row.active
        ]
    if not building:
        raise Refused(f"{name} has no build in progress to swap in")
    build = building[0]
    try:
        old = checkpoints.swap(name, build.generation, with_dead_letters=force)
    except BuildBlocked:
        raise Refused(
            f"build {build.generation} of {name} has {build.dead_letters} dead letter(s):"
            " retry them after a fix, or swap with force to serve it without them"
        ) from None
    except BuildGone:
        raise Refused(f"build {build.generation} of {name} is gone") from None
    if old is None:
        raise Refused(
            f"build {build.generation} of {name} is behind the serving build; it is swapped in"
            " by itself once it catches up"
        )
    with checkpoints.store.read() as connection:
        swapped = checkpoints.load(connection, name, build.generation)
    if swapped is None:
        raise Refused(f"build {build.generation} of {name} is gone")
    return swapped
