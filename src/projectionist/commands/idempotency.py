"""Idempotency keys: the same key and request again get the first answer again."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import IdempotencyKeyReused
from ..messages import Command

metadata = sa.MetaData()

idempotency_table = sa.Table(
    "projectionist_idempotency",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("request_hash", sa.String, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
# Pruning finds expired answers by age.
sa.Index("projectionist_idempotency_created_at", idempotency_table.c.created_at)

DEFAULT_TTL_S = 7 * 86400.0
"""How long an answer is kept for retries by default: a week."""
PRUNE_BATCH = 1000

_KEY_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


def request_hash(command: Command) -> str:
    """A digest of the command's type and content."""
    body = json.dumps(
        [command.type_name, command.model_dump(mode="json")], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(body.encode()).hexdigest()


def scoped_key(subject: str | None, key: str) -> str:
    """Keys are scoped to the caller, so one client cannot replay another's answers."""
    return f"{subject or ''}\x1f{key}"


def install(connection: Connection) -> None:
    """Creates the table if it is missing (`migrations` upgrades an older one)."""
    metadata.create_all(connection)


def lookup(
    connection: Connection, key: str, digest: str, *, expired_before: float | None = None
) -> dict[str, Any] | None:
    """The stored answer for this key, None if new; IdempotencyKeyReused if the request differs.

    An answer stored before `expired_before` has expired: it is deleted, and the key is new.
    """
    if connection.dialect.name == "postgresql":
        # Concurrent retries with one key wait here for the first to commit, then find its answer.
        connection.execute(_KEY_LOCK, {"key": key})
    t = idempotency_table
    row = connection.execute(
        sa.select(t.c.request_hash, t.c.response, t.c.created_at).where(t.c.key == key)
    ).first()
    if row is None:
        return None
    if expired_before is not None and row.created_at < expired_before:
        connection.execute(sa.delete(t).where(t.c.key == key))
        return None
    if row.request_hash != digest:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request; use a new key"
        )
    answer: dict[str, Any] = json.loads(row.response)
    return answer


def remember(connection: Connection, key: str, digest: str, response: dict[str, Any]) -> None:
    """Stores the answer in the command's own transaction."""
    connection.execute(
        sa.insert(idempotency_table).values(
            key=key, request_hash=digest, response=json.dumps(response), created_at=time.time()
        )
    )


def prune(connection: Connection, expired_before: float) -> int:
    """Deletes up to a batch of expired answers; returns how many."""
    t = idempotency_table
    expired = (
        sa.select(t.c.key)
        .where(t.c.created_at < expired_before)
        .limit(PRUNE_BATCH)
        .scalar_subquery()
    )
    result = connection.execute(sa.delete(t).where(t.c.key.in_(expired)))
    return int(result.rowcount or 0)
