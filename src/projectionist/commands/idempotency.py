"""Idempotency keys: the same key and request again get the first answer again."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
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
PRUNE_INTERVAL_S = 60.0
"""How often a command process deletes expired answers, by default."""

log = logging.getLogger("projectionist.commands")

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


class Pruner:
    """Deletes answers older than the TTL: on request, or now and then in a thread of its own,
    so no command waits for it."""

    def __init__(
        self, write: Callable[[], AbstractContextManager[Connection]], ttl_s: float | None
    ) -> None:
        self._write = write
        self.ttl_s = ttl_s
        self.interval_s = PRUNE_INTERVAL_S
        self._pruned_at: float | None = None
        self._pruning = threading.Lock()
        self._closed = False

    def expired_before(self) -> float | None:
        """Answers stored before this time have expired (None: answers never expire)."""
        return None if not self.ttl_s else time.time() - self.ttl_s

    def prune(self) -> int:
        """Deletes expired answers, a batch per transaction; how many."""
        expired_before = self.expired_before()
        if expired_before is None:
            return 0
        total = 0
        while True:
            with self._write() as connection:
                pruned = prune(connection, expired_before)
            total += pruned
            if pruned < PRUNE_BATCH:
                return total

    def now_and_then(self) -> None:
        """Starts a pruning in the background at most once an interval."""
        now = time.monotonic()
        if not self.ttl_s or (
            self._pruned_at is not None and now - self._pruned_at < self.interval_s
        ):
            return
        self._pruned_at = now
        if not self._pruning.acquire(blocking=False):
            return
        if self._closed:
            self._pruning.release()
            return

        def run() -> None:
            try:
                self.prune()
            except Exception:  # the store is busy or down: next time
                log.debug("pruning idempotency keys failed", exc_info=True)
            finally:
                self._pruning.release()

        threading.Thread(target=run, name="projectionist-idempotency-prune", daemon=True).start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Waits for a pruning under way and starts no other, so none uses the store after it
        is disposed."""
        self._closed = True
        # A pruning under way holds the lock until it ends.
        if self._pruning.acquire(timeout=timeout_s):
            self._pruning.release()
