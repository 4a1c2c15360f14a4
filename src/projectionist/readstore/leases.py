"""Leases: one runner applies a projection at a time, across every process and host."""

from __future__ import annotations

import os
import socket
import time
import uuid

import sqlalchemy as sa

from ..stores import Store

metadata = sa.MetaData()

leases_table = sa.Table(
    "projectionist_leases",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("expires_at", sa.Float(precision=53), nullable=False),
)

# Both SQLite and PostgreSQL read this upsert the same way: take a free or expired lease, or
# extend our own; touch nothing when another owner holds it.
_TAKE = sa.text(
    "INSERT INTO projectionist_leases (name, owner, expires_at) VALUES (:name, :owner, :until)"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
    " WHERE projectionist_leases.owner = excluded.owner"
    " OR projectionist_leases.expires_at < :now"
)
_RELEASE = sa.text(
    "UPDATE projectionist_leases SET expires_at = 0 WHERE name = :name AND owner = :owner"
)


def new_owner_id() -> str:
    """host:pid:random, unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """Time-limited ownership of projections, kept in the read store.

    The checkpoint's compare-and-set still guards every batch, so an owner that stalls past
    its lease cannot apply a batch twice: its commit finds the checkpoint moved.
    """

    def __init__(self, store: Store, *, owner: str | None = None, ttl_s: float = 5.0) -> None:
        self.store = store
        self.owner = owner or new_owner_id()
        self.ttl_s = ttl_s
        self._held_until: dict[str, float] = {}

    def install(self) -> None:
        with self.store.schema() as connection:
            metadata.create_all(connection)

    def take(self, name: str) -> bool:
        """Takes or extends the lease of `name`; True if this owner holds it now."""
        now = time.time()
        until = now + self.ttl_s
        with self.store.write() as connection:
            taken = connection.execute(
                _TAKE, {"name": name, "owner": self.owner, "until": until, "now": now}
            ).rowcount
        if taken:
            self._held_until[name] = until
        else:
            self._held_until.pop(name, None)
        return bool(taken)

    def holds(self, name: str) -> bool:
        """True while this owner's lease of `name` has not run out (by its own clock)."""
        return self._held_until.get(name, 0.0) > time.time()

    def due(self, name: str) -> bool:
        """True when the lease should be extended (a third of its time has passed)."""
        return self._held_until.get(name, 0.0) - time.time() < self.ttl_s * 2 / 3

    def release(self, name: str) -> None:
        self._held_until.pop(name, None)
        with self.store.write() as connection:
            connection.execute(_RELEASE, {"name": name, "owner": self.owner})

    def owners(self) -> dict[str, tuple[str, float]]:
        """Every lease: name -> (owner, expires_at)."""
        with self.store.read() as connection:
            rows = connection.execute(sa.select(leases_table)).fetchall()
        return {row.name: (row.owner, row.expires_at) for row in rows}
