"""Dead letters: events a projection could not apply, parked so the rest keeps flowing."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..messages import StoredEvent
from ..stores import Store

metadata = sa.MetaData()

dead_letters_table = sa.Table(
    "projectionist_dead_letters",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("projection", sa.String, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("stream", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    # "failed": its handler kept raising; "waiting": held behind a failed event of its stream.
    sa.Column("reason", sa.String, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("parked_at", sa.Float(precision=53), nullable=False),
    sa.Column("resolved_at", sa.Float(precision=53), nullable=True),
    sa.Index("ix_projectionist_dead_letters_open", "projection", "generation", "resolved_at"),
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One parked event of one projection build."""

    id: int
    projection: str
    generation: int
    position: int
    stream: str
    type: str
    reason: str
    error: str | None
    traceback: str | None
    attempts: int
    parked_at: float
    resolved_at: float | None


class DeadLetters:
    """Parks, lists and resolves events that a projection could not apply."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def install(self) -> None:
        with self.store.schema() as connection:
            metadata.create_all(connection)

    def park(
        self,
        connection: Connection,
        projection: str,
        generation: int,
        record: StoredEvent,
        *,
        reason: str,
        error: str | None = None,
        traceback: str | None = None,
        attempts: int = 0,
    ) -> None:
        """Parks an event, in the caller's transaction (the one that moves the checkpoint)."""
        connection.execute(
            sa.insert(dead_letters_table).values(
                projection=projection,
                generation=generation,
                position=record.position,
                stream=record.stream,
                type=record.type,
                reason=reason,
                error=error,
                traceback=traceback,
                attempts=attempts,
                parked_at=time.time(),
                resolved_at=None,
            )
        )

    def blocked_streams(self, connection: Connection, projection: str, generation: int) -> set[str]:
        """Streams with an unresolved parked event: their later events wait behind it."""
        t = dead_letters_table
        rows = connection.execute(
            sa.select(t.c.stream)
            .distinct()
            .where(
                t.c.projection == projection,
                t.c.generation == generation,
                t.c.resolved_at.is_(None),
            )
        )
        return {row.stream for row in rows}

    def open(
        self, connection: Connection, projection: str | None = None, generation: int | None = None
    ) -> list[DeadLetter]:
        """Unresolved dead letters, oldest position first."""
        t = dead_letters_table
        statement = sa.select(t).where(t.c.resolved_at.is_(None))
        if projection is not None:
            statement = statement.where(t.c.projection == projection)
        if generation is not None:
            statement = statement.where(t.c.generation == generation)
        rows = connection.execute(statement.order_by(t.c.projection, t.c.position)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def counts(self, connection: Connection) -> dict[tuple[str, int], int]:
        """Unresolved dead letters per (projection, generation)."""
        t = dead_letters_table
        rows = connection.execute(
            sa.select(t.c.projection, t.c.generation, sa.func.count())
            .where(t.c.resolved_at.is_(None))
            .group_by(t.c.projection, t.c.generation)
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def resolve(self, connection: Connection, letter_id: int) -> None:
        t = dead_letters_table
        connection.execute(sa.update(t).where(t.c.id == letter_id).values(resolved_at=time.time()))

    def failed_again(self, letter_id: int, error: str, traceback: str) -> None:
        t = dead_letters_table
        with self.store.write() as connection:
            connection.execute(
                sa.update(t)
                .where(t.c.id == letter_id)
                .values(
                    error=error,
                    traceback=traceback,
                    attempts=t.c.attempts + 1,
                )
            )
