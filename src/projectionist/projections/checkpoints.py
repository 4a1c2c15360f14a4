"""Checkpoints: where each projection version stands, kept in the read store itself."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..stores import Store

metadata = sa.MetaData()

projections_table = sa.Table(
    "projectionist_projections",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("head", sa.BigInteger, nullable=False),
    # When the first event past the checkpoint was recorded; NULL when caught up.
    sa.Column("next_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where one projection version stands."""

    name: str
    version: int
    position: int
    head: int
    next_at: float | None
    updated_at: float
    active: bool
    state: str
    error: str | None


class Checkpoints:
    """Reads and moves checkpoints; a move commits with the read-model changes it covers."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def install(self) -> None:
        with self.store.schema() as connection:
            metadata.create_all(connection)

    def ensure(self, name: str, version: int) -> Checkpoint:
        """The checkpoint of this version, created at position 0 if new.

        A first version of a projection is active at once; a newer version stays inactive
        until it is swapped in.
        """
        t = projections_table
        with self.store.schema() as connection:
            row = connection.execute(
                sa.select(t).where(t.c.name == name, t.c.version == version)
            ).first()
            if row is None:
                has_active = connection.execute(
                    sa.select(t.c.version).where(t.c.name == name, t.c.active)
                ).first()
                connection.execute(
                    sa.insert(t).values(
                        name=name, version=version, position=0, head=0, next_at=None,
                        updated_at=time.time(), active=has_active is None,
                        state="catching_up", error=None,
                    )
                )
                row = connection.execute(
                    sa.select(t).where(t.c.name == name, t.c.version == version)
                ).one()
        return Checkpoint(*row)

    def load(self, connection: Connection, name: str, version: int) -> Checkpoint | None:
        t = projections_table
        row = connection.execute(
            sa.select(t).where(t.c.name == name, t.c.version == version)
        ).first()
        return Checkpoint(*row) if row is not None else None

    def all(self, connection: Connection) -> list[Checkpoint]:
        t = projections_table
        rows = connection.execute(sa.select(t).order_by(t.c.name, t.c.version)).fetchall()
        return [Checkpoint(*row) for row in rows]

    def active(self, connection: Connection, names: list[str]) -> dict[str, Checkpoint]:
        """The active (serving) checkpoint of each named projection."""
        t = projections_table
        rows = connection.execute(
            sa.select(t).where(t.c.name.in_(names), t.c.active)
        ).fetchall()
        return {row.name: Checkpoint(*row) for row in rows}

    def advance(
        self,
        connection: Connection,
        name: str,
        version: int,
        *,
        expected: int,
        position: int,
        head: int,
        next_at: float | None,
        state: str,
    ) -> bool:
        """Moves the checkpoint from `expected` to `position`; False if another runner moved it."""
        t = projections_table
        result = connection.execute(
            sa.update(t)
            .where(t.c.name == name, t.c.version == version, t.c.position == expected)
            .values(position=position, head=head, next_at=next_at, updated_at=time.time(),
                    state=state, error=None)
        )
        return result.rowcount == 1

    def mark(self, name: str, version: int, *, state: str, error: str | None = None) -> None:
        """Records a state change (for example `failed`) outside any batch."""
        t = projections_table
        with self.store.write() as connection:
            connection.execute(
                sa.update(t)
                .where(t.c.name == name, t.c.version == version)
                .values(state=state, error=error, updated_at=time.time())
            )
