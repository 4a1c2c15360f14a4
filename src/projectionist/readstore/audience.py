"""Whether any process waits on checkpoint moves: on PostgreSQL a projector announces each
move with a `NOTIFY` only while one does.

A `NOTIFY` costs the projector's commit (PostgreSQL queues it and signals every listening
backend of the database): about a tenth of a millisecond, most of the time from an event's
commit to its answer when the projector runs in the answering process, which learns of the
move first hand. The processes that wait on moves made elsewhere (a query role without a
projector) hold a shared advisory lock on the connection that listens; a projector looks for
that lock in `pg_locks` at most once a second. The lock goes with its connection, so a
listener that dies stops the announcements within a second. A listener that has just started
may miss moves until projectors look again; its waits poll the checkpoints meanwhile (every
20 ms), slower for that second, never wrong.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Connection

from ..driver import Sql

LISTENING_LOCK_KEY = 7_311_201_003
"""The advisory lock a process listening for checkpoint moves holds (shared), on its
listening connection: an arbitrary constant that every process agrees on."""

_LISTENING = Sql(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND classid = {LISTENING_LOCK_KEY >> 32} AND objid = {LISTENING_LOCK_KEY & 0xFFFFFFFF}"
    " AND objsubid = 1)"
)


class Audience:
    """Whether some process listens for checkpoint moves, looked up once per `recheck_s`."""

    def __init__(self, recheck_s: float = 1.0) -> None:
        self.recheck_s = recheck_s
        self._listening = True
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def listening(self, connection: Connection) -> bool:
        """Whether a move committed on `connection` (a PostgreSQL one) should be announced."""
        now = time.monotonic()
        with self._lock:
            due = now - self._checked_at >= self.recheck_s
            if due:
                self._checked_at = now
        if due:
            [(found,)] = _LISTENING.rows(connection)
            self._listening = bool(found)
        return self._listening
