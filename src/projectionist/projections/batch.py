"""What a batch of a projection build comes to, and the conflicts that make it run again."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

MAX_CONFLICTS = 5
"""Write conflicts in a row, between partitions of a build, before a batch counts as failed."""


class CheckpointMoved(Exception):
    """Another runner moved the checkpoint; this batch was rolled back."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did; `caught_up` when it read everything visible in the log."""

    applied: int
    position: int
    head: int
    caught_up: bool


def write_conflict(error: Exception) -> bool:
    """A unique key taken by a concurrent insert, or a deadlock between two writers."""
    orig = error.orig if isinstance(error, sa.exc.DBAPIError) else None
    return getattr(orig, "sqlstate", None) in ("23505", "40P01", "40001")
