"""Where a capture stands: its checkpoint row, the state it shows, and the log position that
holds every change committed before an LSN (what `min_lsn` waits for)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...stores import MISSING_TABLE_ERRORS, Store
from ..schema import snapshots_table, state_table
from .pgoutput import lsn_text
from .slot import names

STALL_AFTER_S = 30.0
_CURRENT = sa.text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, current_database()")
_RESTART = sa.text(
    "SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = :name"
)


class CaptureState(StrEnum):
    """What a capture shows in `status` and `/projections`."""

    LIVE = "live"
    """It has read the WAL up to a recent moment."""
    SNAPSHOTTING = "snapshotting"
    """A table's snapshot is still to be taken."""
    STALLED = "stalled"
    """It has not read the WAL for `STALL_AFTER_S`: no capture process runs, or it is stuck."""
    FAILED = "failed"
    """It stopped with an error (a lost slot); the error says what to do."""


def state_of(*, error: str | None, pending: int, lag_seconds: float) -> CaptureState:
    """The rule of a capture's state: an error first, then a snapshot to take, then the lag."""
    if error:
        return CaptureState.FAILED
    if pending:
        return CaptureState.SNAPSHOTTING
    return CaptureState.STALLED if lag_seconds > STALL_AFTER_S else CaptureState.LIVE


@dataclass(frozen=True, slots=True)
class CaptureStatus:
    """One capture: its slot, state, how far it has read the WAL and how far behind it is."""

    slot: str
    state: CaptureState
    commit_lsn: int
    through_lsn: int
    position: int
    lag_bytes: int
    lag_seconds: float
    retained_bytes: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "state": self.state.value,
            "through_lsn": lsn_text(self.through_lsn),
            "commit_lsn": lsn_text(self.commit_lsn),
            "position": self.position,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": round(self.lag_seconds, 3),
            "retained_bytes": self.retained_bytes,
            "error": self.error,
        }


class Progress:
    """Reads a capture's checkpoint from the write store; opens its own store when it must."""

    def __init__(self, app: str, store_url: str, store: Store | None = None) -> None:
        self.app = app
        self.url = store_url
        self._store = store
        self._owned = store is None
        self._slot: str | None = None
        self._lock = threading.Lock()
        # What a capture in this process recorded last: answered from memory, and waited for
        # without a query per poll.
        self._moved = threading.Condition()
        self._recorded = (0, 0)

    def recorded(self, through_lsn: int, position: int) -> None:
        """Called by a capture in this process once its checkpoint committed."""
        with self._moved:
            self._recorded = max(self._recorded, (through_lsn, position))
            self._moved.notify_all()

    def wait_moved(self, timeout_s: float) -> None:
        """Waits until a capture in this process records progress, or `timeout_s` passes."""
        with self._moved:
            self._moved.wait(timeout_s)

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.url, pool_size=2)
            return self._store

    def slot(self, connection: Connection) -> str:
        if self._slot is None:
            database = str(connection.execute(_CURRENT).one()[1])
            self._slot = names(self.app, database)[0]
        return self._slot

    def position_through(self, lsn: int) -> int | None:
        """The log position holding every captured change committed before `lsn`, or None
        while the capture has not read the WAL that far."""
        through, position = self._recorded
        if through >= lsn:
            return position
        try:
            with self.store.single() as connection:
                row = connection.execute(
                    sa.select(state_table.c.through_lsn, state_table.c.position).where(
                        state_table.c.slot == self.slot(connection)
                    )
                ).first()
        except MISSING_TABLE_ERRORS:
            return None
        if row is None or row.through_lsn < lsn:
            return None
        return int(row.position)

    def status(self) -> CaptureStatus | None:
        """The capture's status, or None before any capture process started."""
        try:
            with self.store.single() as connection:
                slot = self.slot(connection)
                row = connection.execute(
                    sa.select(state_table).where(state_table.c.slot == slot)
                ).first()
                if row is None:
                    return None
                current = int(connection.execute(_CURRENT).one()[0])
                restart = connection.execute(_RESTART, {"name": slot}).scalar()
                pending = connection.execute(
                    sa.select(sa.func.count()).where(
                        snapshots_table.c.slot == slot, snapshots_table.c.snapshot.is_(None)
                    )
                ).scalar_one()
        except MISSING_TABLE_ERRORS:
            return None
        lag_bytes = max(0, current - row.through_lsn)
        lag_seconds = max(0.0, time.time() - row.through_at) if lag_bytes else 0.0
        return CaptureStatus(
            slot=slot,
            state=state_of(error=row.error, pending=pending, lag_seconds=lag_seconds),
            commit_lsn=row.commit_lsn,
            through_lsn=row.through_lsn,
            position=row.position,
            lag_bytes=lag_bytes,
            lag_seconds=lag_seconds,
            retained_bytes=None if restart is None else max(0, current - int(restart)),
            error=row.error,
        )

    def close(self) -> None:
        """Closes the store it opened itself."""
        if self._owned and self._store is not None:
            self._store.dispose()
            self._store = None
