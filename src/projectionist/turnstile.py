"""A fair turn at a SQLite file's write lock for writers in other processes.

SQLite hands its write lock to whoever asks first after it is free. Its busy handler sleeps
in steps that grow to 100 ms, and a process that commits and begins again in a loop (a
rebuild, batch after batch) leaves gaps of microseconds, so another process's writer could
wait until the loop ends: a live projection would stall behind a rebuild.

The turnstile is a one-byte file beside the database (`<database>-turnstile`), mapped into
memory and locked with `flock`. A writer refused the lock holds the file shared and sets the
byte while it tries again every millisecond or two. A writer about to begin that finds the
byte set takes the file exclusively, which waits until no one is waiting, and clears it. The
common case, no one waiting, costs one read of the byte. No one holds the file lock while it
holds SQLite's, so neither lock waits on the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import sqlite3
import time
from typing import Any

_FIRST_PAUSE_S = 0.0002
_LONGEST_PAUSE_S = 0.002


class Turnstile:
    """The turnstile of one SQLite database file, for one engine's write transactions."""

    def __init__(self, database: str, *, timeout_s: float) -> None:
        self.path = f"{database}-turnstile"
        self.timeout_s = timeout_s
        self._fd: int | None = None
        self._waiting: mmap.mmap | None = None  # the byte: nonzero while someone waits
        self._pid = 0  # of the process that opened the file

    def begin(self, dbapi_connection: Any, info: dict[Any, Any]) -> None:
        """BEGIN IMMEDIATE on a `sqlite3` connection, after anyone already waiting for it.

        `info` is the connection's own dictionary (SQLAlchemy's `connection.info`): the first
        call turns the connection's busy timeout off, since the turnstile does the waiting.
        """
        if self._pid != os.getpid():  # first use, or a forked child: a lock of its own
            self._open()
        fd, waiting = self._fd, self._waiting
        if fd is None or waiting is None:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        if "turnstile" not in info:
            dbapi_connection.execute("PRAGMA busy_timeout=0")
            info["turnstile"] = True
        if waiting[0]:
            self._let_waiting_in(fd, waiting)
        if _try_begin(dbapi_connection):
            return
        deadline = time.monotonic() + self.timeout_s
        pause_s = _FIRST_PAUSE_S
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            while True:
                waiting[0] = 1  # again each time: a writer let in before may have cleared it
                time.sleep(pause_s)
                if _try_begin(dbapi_connection, last=time.monotonic() > deadline):
                    return
                pause_s = min(pause_s * 2, _LONGEST_PAUSE_S)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _let_waiting_in(self, fd: int, waiting: mmap.mmap) -> None:
        """Returns once every writer waiting has had its turn (or after `timeout_s`)."""
        deadline = time.monotonic() + self.timeout_s
        pause_s = _FIRST_PAUSE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(pause_s)
                pause_s = min(pause_s * 2, _LONGEST_PAUSE_S)
        waiting[0] = 0
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> None:
        if self._fd is not None:  # the parent's, inherited
            self.close()
        self._pid = os.getpid()
        try:  # a read-only folder: SQLite's own busy handler alone
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size < 1:
                os.ftruncate(fd, 1)
            self._waiting = mmap.mmap(fd, 1)
        except OSError:
            os.close(fd)
            return
        self._fd = fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            with contextlib.suppress(BufferError):
                waiting.close()
        if fd is not None:
            os.close(fd)


def _try_begin(dbapi_connection: Any, *, last: bool = False) -> bool:
    """True once BEGIN IMMEDIATE took the lock; False while another writer holds it."""
    try:
        dbapi_connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if last or error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return False
    return True
