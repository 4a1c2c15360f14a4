"""Wake-ups by PostgreSQL LISTEN/NOTIFY: the backends that NOTIFY name their channel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from .base import WakeupSource

log = logging.getLogger("projectionist.wakeups")


class Listener(WakeupSource):
    """Listens on a channel in a background thread and calls back with each payload.

    A lost connection is retried with backoff; callers keep polling meanwhile, so a missed
    notification only delays a wake-up until the next poll. `ignore` names the backends
    (by process id) whose notifications are not called back: those of this process's own
    writers, whose commits it learns of first hand. `presence`: an advisory lock the listening
    connection holds (shared), so that notifiers can tell someone listens.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        callback: Callable[[str], None],
        *,
        ignore: Callable[[int], bool] | None = None,
        presence: int | None = None,
    ) -> None:
        parsed = sa.engine.make_url(url).set(drivername="postgresql")
        self._conninfo = parsed.render_as_string(hide_password=False)
        self.channel = channel
        self.callback = callback
        self.ignore = ignore
        self.presence = presence
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"listen-{self.channel}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
            self._thread = None

    def _run(self) -> None:
        import psycopg

        delay = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    if self.presence is not None:
                        conn.execute("SELECT pg_advisory_lock_shared(%s)", (self.presence,))
                    delay = 0.2
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            if self.ignore is None or not self.ignore(notice.pid):
                                self.callback(notice.payload)
            except Exception as error:  # the server went away: retry, polling covers the gap
                log.debug("listener on %s lost its connection: %s", self.channel, error)
                self._stop.wait(delay)
                delay = min(5.0, delay * 2)
