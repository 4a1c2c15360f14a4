"""The ordered versions of the framework's own tables, and the step that reaches each one.

A step is written in plain SQL as of its version, never with today's table declarations, so
that it keeps doing what it did when later versions change those tables. Each step checks
before it changes: it may meet a store that already had some of its changes (one made before
versions were recorded), or a store without the table it changes (a store only some roles
use), and then it does only what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Step = Callable[[Connection], None]


class StoreKind(StrEnum):
    """Which of the framework's stores a database serves; one database may serve both."""

    WRITE = "write"
    READ = "read"


@dataclass(frozen=True, slots=True)
class Migration:
    """One version: the step of each kind of store that reaches it (None: no change there)."""

    version: int
    write: Step | None = None
    read: Step | None = None

    def step(self, kind: StoreKind) -> Step | None:
        return self.write if kind is StoreKind.WRITE else self.read

    def summary(self, kind: StoreKind) -> str:
        """What the step changes: the first line of its docstring."""
        step = self.step(kind)
        if step is None or not step.__doc__:
            return "no change in this store"
        return step.__doc__.strip().splitlines()[0]


def _has_table(connection: Connection, name: str) -> bool:
    return sa.inspect(connection).has_table(name)


def _index_idempotency_answers_by_age(connection: Connection) -> None:
    """Idempotency answers indexed by age, which pruning expired ones reads."""
    if _has_table(connection, "projectionist_idempotency"):
        connection.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS projectionist_idempotency_created_at"
            " ON projectionist_idempotency (created_at)"
        )


def _record_generations_given(connection: Connection) -> None:
    """The highest generation of each projection recorded, so that none is given twice."""
    # The builds still in the checkpoint table are all that is known of the ones before.
    connection.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS projectionist_generations"
        " (name VARCHAR NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (name))"
    )
    if _has_table(connection, "projectionist_projections"):
        connection.exec_driver_sql(
            "INSERT INTO projectionist_generations (name, last)"
            " SELECT name, max(generation) FROM projectionist_projections p"
            " WHERE NOT EXISTS (SELECT 1 FROM projectionist_generations g WHERE g.name = p.name)"
            " GROUP BY name"
        )


def _count_dead_letters_on_checkpoints(connection: Connection) -> None:
    """Each build's unresolved dead letters counted on its checkpoint."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("projectionist_projections"):
        return
    columns = {c["name"] for c in inspector.get_columns("projectionist_projections")}
    if "dead_letters" in columns:
        return
    connection.exec_driver_sql(
        "ALTER TABLE projectionist_projections ADD COLUMN dead_letters INTEGER NOT NULL DEFAULT 0"
    )
    if inspector.has_table("projectionist_dead_letters"):
        connection.exec_driver_sql(
            "UPDATE projectionist_projections SET dead_letters = (SELECT count(*)"
            " FROM projectionist_dead_letters d"
            " WHERE d.projection = projectionist_projections.name"
            " AND d.generation = projectionist_projections.generation"
            " AND d.resolved_at IS NULL)"
        )


EARLIEST = 1
"""The first layout: the log, idempotency answers, checkpoints with their epoch, leases and
dead letters. A store with framework tables and no recorded version is taken to be at it."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, write=_index_idempotency_answers_by_age, read=_record_generations_given),
    Migration(3, read=_count_dead_letters_on_checkpoints),
)
"""Every version after the earliest, in order; the last is the layout this release makes."""

CURRENT = MIGRATIONS[-1].version

FRAMEWORK_TABLES = {
    StoreKind.WRITE: ("projectionist_events", "projectionist_idempotency", "projectionist_capture"),
    StoreKind.READ: (
        "projectionist_projections",
        "projectionist_generations",
        "projectionist_leases",
        "projectionist_dead_letters",
    ),
}
"""The tables that tell a store made before versions were recorded from a new one."""
