"""The capture loop: committed transactions read from the slot, appended to the log exactly once.

The slot is read as a stream (stream.py): the server pushes each transaction's messages as it
commits. Each round takes what has arrived and groups it by transaction. The changes of every
transaction whose commit LSN is above the checkpoint are appended through the event log in ONE
write transaction together with the checkpoint's move (a compare-and-set, like a projection's).
Only then is the server told it may let them go. A crash between the append and that message
leaves the slot behind the checkpoint: the server streams those transactions again and they are
skipped by their commit LSN. So a change is appended once, whatever the crashes. pgoutput sends
only committed transactions, each whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...driver import Sql
from ...errors import StoreUnavailable
from ...eventlog.base import EventLog
from ...messages import StoredEvent
from ...readstore.leases import Leases
from ...stores import Store
from ..declaration import CapturedTable
from ..schema import metadata as capture_metadata
from ..schema import snapshots_table, state_table
from . import slot as slots
from . import snapshot
from .changes import Kept, Translator
from .pgoutput import Relations
from .slot import SlotLost
from .snapshot import Snapshot
from .stream import SlotStream, StreamError
from .transactions import Grouper, Transaction

log = logging.getLogger("projectionist.capture")

_SETTINGS = sa.text("SELECT current_setting('wal_level'), current_schema(), current_database()")
_FLUSHED = sa.text("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn")
_MOVE = Sql(
    "UPDATE projectionist_capture_state SET commit_lsn = ?, through_lsn = ?, through_at = ?,"
    " position = greatest(position, ?), updated_at = ?"
    " WHERE slot = ? AND commit_lsn = ? AND through_lsn = ? RETURNING position"
)
_HEARTBEAT = sa.text("SELECT pg_logical_emit_message(false, 'projectionist', 'heartbeat')")


class CheckpointMoved(RuntimeError):
    """Another process moved the capture's checkpoint first; the round was rolled back."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    commit_lsn: int
    through_lsn: int
    position: int


class Capturer:
    """Captures the app's tables from one slot: set-up, snapshots, then round after round."""

    def __init__(
        self,
        app: str,
        store: Store,
        log: EventLog,
        captures: Collection[CapturedTable],
        write_model: sa.MetaData,
        *,
        leases: Leases | None = None,
        poll_interval_s: float = 0.01,
        idle_round_s: float = 0.25,
        round_timeout_s: float = 5.0,
        confirm_every_s: float = 1.0,
        snapshot_check_s: float = 1.0,
        max_changes: int = 10_000,
        idle_record_s: float = 1.0,
        min_record_s: float = 0.05,
        heartbeat_s: float = 10.0,
        on_appended: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.log = log
        self.captures = list(captures)
        self.write_model = write_model
        self.leases = leases
        self.poll_interval_s = poll_interval_s
        self.idle_round_s = idle_round_s
        self.round_timeout_s = round_timeout_s
        self.confirm_every_s = confirm_every_s
        self.snapshot_check_s = snapshot_check_s
        self.max_changes = max_changes
        self.idle_record_s = idle_record_s
        self.min_record_s = min_record_s
        self._own_lsn = 0
        self.heartbeat_s = heartbeat_s
        self.on_appended = on_appended
        self.relations = Relations()
        self.snapshots: dict[str, Snapshot] = {}
        self.error: str | None = None
        self.slot = self.publication = self.schema = ""
        self.translator: Translator | None = None
        self._recorded_at = self._heartbeat_at = time.monotonic()
        self._stream = SlotStream(store.url, "", "")
        self._grouper = Grouper(self.relations)
        self._known: Checkpoint | None = None
        self._snapshots_at = 0.0
        self.on_recorded: Callable[[int, int], None] | None = None
        """Told (through LSN, position) after each checkpoint commit: `min_lsn` waiters here."""
        self.on_committed: Callable[[list[StoredEvent], float], None] | None = None
        """Told of each append once it committed, with the events as the log holds them."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> str:
        return f"capture:{self.slot}"

    def install(self) -> None:
        """Checks the server and the tables, and makes the publication, the slot and the
        capture's tables; refuses to start with an error naming what is wrong."""
        with self.store.schema() as connection:
            wal_level, self.schema, database = connection.execute(_SETTINGS).one()
            slots.check_wal_level(str(wal_level))
            self.slot, self.publication = slots.names(self.app, str(database))
            self._stream = SlotStream(self.store.url, self.slot, self.publication)
            shapes = [c.shape(connection, self.write_model) for c in self.captures]
            slots.check_identities(connection, self.schema, shapes)
            capture_metadata.create_all(connection, [state_table, snapshots_table])
            slots.publish(connection, self.publication, self.schema, [s.table for s in shapes])
        self.translator = Translator(
            {
                s.table: Kept(s, c.columns is None)
                for s, c in zip(shapes, self.captures, strict=True)
            },
            self.schema,
        )
        if self.leases is not None:
            self.leases.install()
        with self.store.single() as connection:
            known = self._checkpoint(connection) is not None
            slots.start(connection, self.slot, known, [s.table for s in shapes])

    def _checkpoint(self, connection: Connection) -> Checkpoint | None:
        row = connection.execute(
            sa.select(
                state_table.c.commit_lsn, state_table.c.through_lsn, state_table.c.position
            ).where(state_table.c.slot == self.slot)
        ).first()
        return None if row is None else Checkpoint(*(int(v) for v in row))

    def run_once(self) -> int:
        """One round: pending snapshots, then every transaction committed before the round
        began (waiting up to `round_timeout_s` for the stream to reach it); the count of events
        appended."""
        assert self.translator is not None, "install() first"
        appended = self._snapshots()
        with self.store.single() as connection:
            upto = int(connection.execute(_FLUSHED).scalar_one())
        return appended + self._round(upto)

    def _round(self, upto: int | None) -> int:
        """Reads the stream and appends what it held. With `upto`, reads until the stream has
        passed that LSN; without, waits up to `idle_round_s` for a message, then takes what
        has arrived."""
        stream = self._stream_open()
        grouper = self._grouper
        deadline = time.monotonic() + self.round_timeout_s
        wait = self.idle_round_s if upto is None else self.poll_interval_s
        while True:
            for data in stream.messages(wait):
                grouper.feed(data)
                if grouper.changes >= self.max_changes and grouper.current is None:
                    break
            through = grouper.read_through or 0
            if grouper.current is None:
                through = max(through, stream.wal_end)
            if upto is None or through >= upto or grouper.changes >= self.max_changes:
                break
            if time.monotonic() >= deadline:
                break
        try:
            return self._record(grouper.take(), through)
        except BaseException:
            # What was taken from the stream is not appended: read it again from the slot.
            stream.close()
            raise

    def _record(self, transactions: list[Transaction], read_through: int) -> int:
        """Appends the transactions past the checkpoint, and moves it to `read_through`."""
        known = self._known
        assert known is not None
        through = max(read_through, known.through_lsn)
        fresh = [t for t in transactions if t.commit_lsn > known.commit_lsn]
        now = time.monotonic()
        since = now - self._recorded_at
        # With nothing captured, how far the capture read is recorded every `idle_record_s`,
        # or soon (every `min_record_s`) when WAL other than its own records moved: a writer
        # waiting with min_lsn for an uncaptured change of its own is not kept a second.
        others_wrote = through > self._own_lsn and since >= self.min_record_s
        if not fresh and (
            through == known.through_lsn or not (others_wrote or since >= self.idle_record_s)
        ):
            self._heartbeat(now)
            if now - self._stream.confirmed_at >= self.confirm_every_s:
                # Nothing read is left to append: a status message keeps the server from
                # asking for one (see stream.STATUS_INTERVAL_S).
                self._stream.confirm(known.through_lsn)
            return 0
        appended = self._append(known, fresh, through)
        self._recorded_at = now
        self._stream.confirm(through)
        if not fresh:
            with self.store.single() as connection:
                self._own_lsn = int(connection.execute(_FLUSHED).scalar_one())
        return appended

    def _stream_open(self) -> SlotStream:
        """The stream, started after the checkpoint when it is not open: the slot is checked
        first, so a lost one stops capture with its error."""
        stream = self._stream
        if not stream.open:
            with self.store.single() as connection:
                self._known = self._checkpoint(connection)
                state = slots.slot_state(connection, self.slot)
            slots.check_slot(state, self.slot, expected=True)
            assert self._known is not None and state is not None
            self._grouper = Grouper(self.relations)
            # From the slot's confirmed position: what the checkpoint holds past it is
            # streamed again and skipped by its commit LSN.
            stream.start(state.confirmed_flush_lsn or 0)
        return stream

    def _append(self, known: Checkpoint, fresh: list[Transaction], through: int) -> int:
        assert self.translator is not None
        with self.store.write() as connection:
            events = self.translator.events(connection, fresh, self._visible)
            positions = self.log.append(connection, events) if events else []
            now = time.time()
            commit_lsn = fresh[-1].commit_lsn if fresh else known.commit_lsn
            moved = _MOVE.rows(
                connection,
                (
                    commit_lsn,
                    through,
                    now,
                    positions[-1] if positions else 0,
                    now,
                    self.slot,
                    known.commit_lsn,
                    known.through_lsn,
                ),
            )
            if not moved:
                self._stream.close()
                raise CheckpointMoved(f"the checkpoint of capture {self.slot} moved")
        self._known = Checkpoint(commit_lsn, through, int(moved[0][0]))
        if positions and self.on_appended is not None:
            self.on_appended(len(positions))
        if positions and self.on_committed is not None:
            self.on_committed([e.at(p) for e, p in zip(events, positions, strict=True)], now)
        if self.on_recorded is not None:
            self.on_recorded(through, self._known.position)
        return len(positions)

    def _visible(self, table: str, xid: int, commit_lsn: int) -> bool:
        seen = self.snapshots.get(table)
        return seen is not None and seen.sees(xid, commit_lsn)

    def _snapshots(self) -> int:
        assert self.translator is not None
        with self.store.single() as connection:
            rows = connection.execute(
                sa.select(snapshots_table.c.table_name, snapshots_table.c.snapshot).where(
                    snapshots_table.c.slot == self.slot
                )
            ).fetchall()
        taken = 0
        for table, seen in rows:
            kept = self.translator.tables.get(table)
            if seen is None and kept is not None:
                # A snapshot can outlast the server's patience with a silent stream.
                self._stream.close()
                count = snapshot.take(self.store, self.log, kept, self.slot, self.schema)
                log.info("snapshotted %s: %d rows", table, count)
                taken += count
        bounded = snapshot.bound_unbounded(self.store, self.slot, rows)
        if taken or bounded or len(self.snapshots) != len(rows):
            with self.store.single() as connection:
                rows = connection.execute(
                    sa.select(snapshots_table.c.table_name, snapshots_table.c.snapshot).where(
                        snapshots_table.c.slot == self.slot
                    )
                ).fetchall()
        self.snapshots = {t: Snapshot.parse(s) for t, s in rows if s is not None}
        return taken

    def _heartbeat(self, now: float) -> None:
        if now - self._heartbeat_at >= self.heartbeat_s:
            self._heartbeat_at = now
            with self.store.single() as connection:
                connection.execute(_HEARTBEAT)

    # The loop

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._stream.close()
        if self.leases is not None and self.leases.holds(self.lease):
            try:
                self.leases.release(self.lease)
            except StoreUnavailable:
                log.debug("could not release %s", self.lease, exc_info=True)

    def _run(self) -> None:
        backoff = self.poll_interval_s
        while not self._stopping.is_set():
            try:
                if not self._hold_lease():
                    self._stream.close()
                    self._stopping.wait(0.5)
                    continue
                self._live_round()
                backoff = self.poll_interval_s
            except SlotLost as lost:
                self._stream.close()
                self._fail(str(lost))
                return
            except CheckpointMoved as moved:
                log.warning("%s; another process captures this slot", moved)
                self._stopping.wait(0.5)
            except (StoreUnavailable, sa.exc.DBAPIError, StreamError) as error:
                self._stream.close()
                log.warning("capture round failed, retried in %.1f s: %s", backoff, error)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2 + 0.1, 5.0)
            except Exception:
                self._stream.close()
                log.exception("capture round failed; retried in %.1f s", backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2 + 0.1, 5.0)

    def _live_round(self) -> None:
        """Pending snapshots (looked for every `snapshot_check_s`), then what the stream holds
        now, after waiting up to `idle_round_s` for it."""
        now = time.monotonic()
        if now - self._snapshots_at >= self.snapshot_check_s:
            self._snapshots_at = now
            self._snapshots()
        self._round(None)

    def _hold_lease(self) -> bool:
        leases = self.leases
        if leases is None:
            return True
        if leases.holds(self.lease) and not leases.due(self.lease):
            return True
        return leases.take(self.lease)

    def _fail(self, error: str) -> None:
        """Stops capture for good, with the error recorded where `status` reads it."""
        log.error("capture stopped: %s", error)
        try:
            with self.store.write() as connection:
                connection.execute(
                    sa.update(state_table)
                    .where(state_table.c.slot == self.slot)
                    .values(error=error, updated_at=time.time())
                )
        except StoreUnavailable:
            log.debug("could not record the capture's error", exc_info=True)
        # Set last: whoever sees it finds the error recorded where `status` reads it.
        self.error = error
