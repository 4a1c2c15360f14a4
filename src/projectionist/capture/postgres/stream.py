"""The slot read as a stream: the replication protocol, the way a standby reads the primary.

The server decodes each transaction once, as it commits, and pushes its pgoutput messages down
one connection. Reading the slot with `pg_logical_slot_peek_binary_changes` instead decodes
again, on every call, everything since the slot's restart point: under steady writes each round
costs more than the last. psycopg 3 has no replication protocol; psycopg2's
`LogicalReplicationConnection` has, so this module (and only it) uses psycopg2.

What the capture confirms (the flush LSN of the standby status message) is what its checkpoint
holds: the server keeps every transaction that commits past it, and sends them again after a
reconnect. Between transactions the server's keepalives carry its send position (`wal_end`):
everything committed before it has been sent, so an idle capture knows how far it has read
even when the WAL written holds none of its tables.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import sqlalchemy as sa

STATUS_INTERVAL_S = 24 * 3600
"""psycopg2's own timer for status messages, set out of the way: the capture sends them itself.

psycopg2 moves the confirmed position forward by itself at a keepalive when the last message's
start is at or below what was confirmed, which a Relation message (start 0) always is; a status
message it then sends on its own could confirm a transaction read but not yet appended. So the
capture confirms after each round, when everything it read is appended (`confirm`), often
enough (`Capturer.confirm_every_s`) that the server never asks for a reply either, and closes
the stream while it takes a snapshot."""

StreamError = psycopg2.Error
"""What a broken stream raises: the server went away, the slot is in use, or is gone."""


class SlotStream:
    """One replication connection reading one slot's pgoutput messages."""

    def __init__(self, url: str, slot: str, publication: str) -> None:
        parsed = sa.engine.make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self.slot = slot
        self.publication = publication
        self._connection: psycopg2.extensions.connection | None = None
        self._cursor: psycopg2.extras.ReplicationCursor | None = None
        self.confirmed = 0
        self.confirmed_at = 0.0

    @property
    def open(self) -> bool:
        return self._cursor is not None

    def start(self, confirmed: int) -> None:
        """Connects and starts streaming after `confirmed`, the LSN the checkpoint holds."""
        self.close()
        connection = psycopg2.connect(
            self._dsn,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            connect_timeout=3,
        )
        try:
            cursor = connection.cursor()
            cursor.start_replication(
                slot_name=self.slot,
                decode=False,
                start_lsn=confirmed,
                options={
                    "proto_version": "1",
                    "publication_names": self.publication,
                    "messages": "true",
                },
                status_interval=STATUS_INTERVAL_S,
            )
        except BaseException:
            connection.close()
            raise
        self._connection, self._cursor = connection, cursor
        self.confirmed = confirmed
        self.confirmed_at = time.monotonic()

    @property
    def wal_end(self) -> int:
        """The server's send position at its last message or keepalive."""
        return int(self._cursor.wal_end) if self._cursor is not None else 0

    def messages(self, wait_s: float) -> Iterator[bytes]:
        """The messages that have arrived, after waiting up to `wait_s` for the first one;
        ends as soon as none is waiting."""
        cursor = self._cursor
        assert cursor is not None, "start() first"
        message = cursor.read_message()
        if message is None and wait_s > 0:
            select.select([cursor], [], [], wait_s)
            message = cursor.read_message()
        while message is not None:
            yield message.payload
            message = cursor.read_message()

    def confirm(self, lsn: int) -> None:
        """Tells the server that everything up to `lsn` is kept, so it may let that go. Call
        it only when every transaction read so far is appended (see STATUS_INTERVAL_S)."""
        if self._cursor is not None:
            self._cursor.send_feedback(flush_lsn=lsn, force=True)  # type: ignore[no-untyped-call]
            self.confirmed = max(self.confirmed, lsn)
            self.confirmed_at = time.monotonic()

    def close(self) -> None:
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(psycopg2.Error):
                connection.close()
