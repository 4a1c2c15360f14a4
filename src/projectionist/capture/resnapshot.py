"""Snapshotting one captured table again: its current rows appended as `insert` events.

A projection rebuilt from the log then sees every row the table holds now, whatever changes
capture missed (a table captured late, a slot dropped and made anew). It appends no `delete`
for a row that is gone: a projection meets an `insert` of a key it already holds, so handlers
should treat an insert as an upsert.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from ..errors import NotRegistered
from ..stores import Store
from .declaration import CapturingApp
from .schema import captures_table, snapshots_table

_DATABASE = sa.text("SELECT current_database()")


def resnapshot(store: Store, app: CapturingApp, table: str, *, wait_s: float = 30.0) -> int | None:
    """Snapshots `table` again; the rows appended, or None when a PostgreSQL capture process
    did not take the snapshot within `wait_s` (it takes it when it runs)."""
    captured = app.captures.get(table)
    if captured is None:
        raise NotRegistered(
            f"the app {app.name} captures no table {table!r}; it captures"
            f" {', '.join(app.captures) or 'none'}"
        )
    if store.is_sqlite:
        from . import sqlite

        with store.schema() as connection:
            shape = captured.shape(connection, app.write_model)
            appended = connection.exec_driver_sql(sqlite.snapshot(shape)).rowcount
            connection.execute(
                sa.update(captures_table)
                .where(captures_table.c.table_name == table)
                .values(snapshotted_at=time.time())
            )
        return int(appended)
    from .postgres.slot import names

    with store.write() as connection:
        slot = names(app.name, str(connection.execute(_DATABASE).scalar_one()))[0]
        snapshots_table.create(connection, checkfirst=True)
        connection.execute(
            sa.delete(snapshots_table).where(
                snapshots_table.c.slot == slot, snapshots_table.c.table_name == table
            )
        )
        connection.execute(sa.insert(snapshots_table).values(slot=slot, table_name=table))
        asked = time.time()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with store.single() as connection:
            row = connection.execute(
                sa.select(
                    snapshots_table.c.taken_at, snapshots_table.c.snapshot, snapshots_table.c.rows
                ).where(snapshots_table.c.slot == slot, snapshots_table.c.table_name == table)
            ).first()
        if row is not None and row.snapshot is not None and row.taken_at >= asked:
            return int(row.rows)
        time.sleep(0.1)
    return None
