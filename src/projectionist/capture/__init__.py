"""Change data capture: row changes of the app's tables, written by anyone, as events in the log.

On SQLite the change's event is written in the writer's own transaction (by triggers), so it
commits with the change or not at all. On PostgreSQL a capture process reads the WAL by logical
decoding and appends each committed transaction's changes with its checkpoint, in one
transaction (`capture.postgres`). Either way each change reaches each projection exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..stores import Store
from .declaration import CapturedTable, CapturingApp, Shape
from .events import RowChanged

if TYPE_CHECKING:
    from ..eventlog.base import EventLog
    from ..metrics import Metrics
    from ..readstore.leases import Leases
    from .postgres import Capturer as Capturer
    from .postgres import Progress as Progress

__all__ = ["CapturedTable", "RowChanged", "Shape", "install", "progress", "role"]

log = logging.getLogger("projectionist.capture")


def install(store: Store, captures: Collection[CapturedTable], write_model: sa.MetaData) -> None:
    """Starts or keeps up capture of the declared tables in the write store.

    On SQLite this makes the triggers (and snapshots new tables); on PostgreSQL it only makes
    missing tables from their declarations: the capture role does the rest.
    """
    if not captures:
        return
    with store.schema() as connection:
        shapes = [captured.shape(connection, write_model) for captured in captures]
        if store.is_sqlite:
            from . import sqlite

            sqlite.install(connection, shapes)


def role(
    app: CapturingApp, store: Store, log_: EventLog, leases: Leases, metrics: Metrics
) -> Capturer | None:
    """The capture process of a PostgreSQL store; None on SQLite, where triggers capture."""
    if not app.captures:
        log.info("the app %s captures no table: the capture role has nothing to do", app.name)
        return None
    if store.is_sqlite:
        log.info("capture on SQLite runs in the writers' own transactions: no process to run")
        return None
    from .postgres import Capturer

    return Capturer(
        app.name,
        store,
        log_,
        app.captures.values(),
        app.write_model,
        leases=leases,
        on_appended=metrics.capture_changes.inc,
    )


def progress(
    app: CapturingApp, store_url: str, store: Store | None, metrics: Metrics
) -> Progress | None:
    """Where the capture of a PostgreSQL store stands (reported to `metrics`); None without."""
    if not app.captures or not store_url.startswith("postgresql"):
        return None
    from .postgres import Progress

    found = Progress(app.name, store_url, store)
    metrics.watch_capture(found.status)
    return found
