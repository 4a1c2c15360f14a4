"""Change data capture: row changes of the app's tables, written by anyone, as events in the log.

The change's event is written in the writer's own transaction (by triggers on SQLite), so it
commits with the change or not at all, and reaches each projection exactly once.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa

from ..errors import ConfigurationError
from ..stores import Store, redact
from .declaration import CapturedTable, Shape
from .events import RowChanged

__all__ = ["CapturedTable", "RowChanged", "Shape", "install"]


def install(store: Store, captures: Collection[CapturedTable], write_model: sa.MetaData) -> None:
    """Starts or keeps up capture of the declared tables in the write store."""
    if not captures:
        return
    if not store.is_sqlite:
        names = ", ".join(repr(c.name) for c in captures)
        raise ConfigurationError(
            f"the app captures {names}, and capture needs a SQLite write store for now;"
            f" {redact(store.url)} is {store.dialect}"
        )
    from . import sqlite

    with store.schema() as connection:
        shapes = [captured.shape(connection, write_model) for captured in captures]
        sqlite.install(connection, shapes)
