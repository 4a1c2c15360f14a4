"""The checkpoint tables of the read store, and the statements that move a checkpoint."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..driver import Sql

metadata = sa.MetaData()

projections_table = sa.Table(
    "projectionist_projections",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("head", sa.BigInteger, nullable=False),
    # When the first event past the checkpoint was recorded; NULL when caught up.
    sa.Column("next_at", sa.Float(precision=53), nullable=True),
    sa.Column("updated_at", sa.Float(precision=53), nullable=False),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("tables", sa.Text, nullable=False),
    # Bumped by writes outside the runner's batches (dead-letter retries): a runner that
    # cached the read model sees its compare-and-set fail, and reloads.
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    # Unresolved dead letters of the build, kept with its checkpoint so that every answer can
    # state them without another read.
    sa.Column("dead_letters", sa.Integer, nullable=False, server_default="0"),
)

generations_table = sa.Table(
    "projectionist_generations",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    # The highest generation a projection ever had: numbers are never given twice, so no
    # process mistakes a new build for a dropped one that it still remembers.
    sa.Column("last", sa.Integer, nullable=False),
)

replay_table = sa.Table(
    "projectionist_replay",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    # The build's last run of batches with events left behind (a catch-up or a rebuild): how
    # many events it applied and the seconds it spent reading and applying them.
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("seconds", sa.Float(precision=53), nullable=False),
    sa.Column("measured_at", sa.Float(precision=53), nullable=False),
)

partitions_table = sa.Table(
    "projectionist_partitions",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    # The checkpoint of one partition of a partitioned build; the build's own row holds the
    # lowest of them, so that freshness and min_position read one row as for any build.
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.Float(precision=53), nullable=False),
)


CHANNEL = "projectionist_checkpoints"
"""The NOTIFY channel of checkpoint moves (PostgreSQL); its payload is `name:position`."""


def _advance(*, at_epoch: bool, notify: bool, announce: bool = True) -> Sql:
    """The compare-and-set of a checkpoint: plain SQL on the driver's cursor, written once (a
    batch moves the checkpoint). Its parameters, in order: position, head, next_at,
    updated_at, state, parked; then name, generation, the expected position (and epoch)."""
    where = "WHERE name = ? AND generation = ? AND position = ?"
    update = (
        "UPDATE projectionist_projections SET position = ?, head = ?, next_at = ?,"
        " updated_at = ?, state = ?, error = NULL, dead_letters = dead_letters + ?"
        f" {where}{' AND epoch = ?' if at_epoch else ''}"
    )
    if not notify:
        return Sql(update)  # SQLite: the rows it changed tell whether it moved
    # `announce`: with no process listening (`audience.py`), the same failure, no NOTIFY.
    # PostgreSQL moves the checkpoint and announces it in one statement, which fails when the
    # checkpoint did not move (SQL has no RAISE: it divides by the count of moved rows), so
    # that the COMMIT sent with it (`last`) is refused too.
    moved = f"pg_notify('{CHANNEL}', name || ':' || position)::text" if announce else "*"
    return Sql(
        f"WITH moved AS ({update} RETURNING name, position) SELECT 1 / count({moved}) FROM moved"
    )


NOT_MOVED_SQLSTATE = "22012"
"""division_by_zero: what the PostgreSQL advance raises when the checkpoint did not move."""


ADVANCES = {
    (postgres, at_epoch, announce): _advance(at_epoch=at_epoch, notify=postgres, announce=announce)
    for postgres in (False, True)
    for at_epoch in (False, True)
    for announce in (False, True)
}
"""The checkpoint's move by (PostgreSQL, at an epoch, announced)."""


def install_checkpoints(connection: Connection) -> None:
    """Creates the checkpoint tables that are missing (`migrations` upgrades older ones)."""
    metadata.create_all(connection)
