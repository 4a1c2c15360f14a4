"""The write store's record of capture: on SQLite, what each table keeps and when it was
snapshotted; on PostgreSQL, where each slot's capture stands and each table's snapshot."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

captures_table = sa.Table(
    "projectionist_capture",
    metadata,
    sa.Column("table_name", sa.String, primary_key=True),
    # The key and the kept columns, as JSON: a change makes the capture's triggers anew.
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("snapshotted_at", sa.Float(precision=53), nullable=False),
)

state_table = sa.Table(
    "projectionist_capture_state",
    metadata,
    sa.Column("slot", sa.String, primary_key=True),
    # The commit LSN of the last transaction appended: one at or below it is never again.
    sa.Column("commit_lsn", sa.BigInteger, nullable=False),
    # Every transaction committed before it is appended (or had nothing captured).
    sa.Column("through_lsn", sa.BigInteger, nullable=False),
    sa.Column("through_at", sa.Float(precision=53), nullable=False),
    # The log position of the last event appended by capture: reached, a query has every
    # change committed before through_lsn.
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float(precision=53), nullable=False),
)

snapshots_table = sa.Table(
    "projectionist_capture_snapshots",
    metadata,
    sa.Column("slot", sa.String, primary_key=True),
    sa.Column("table_name", sa.String, primary_key=True),
    # pg_current_snapshot() of the transaction that read the rows; NULL: to be taken.
    sa.Column("snapshot", sa.Text, nullable=True),
    sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("taken_at", sa.Float(precision=53), nullable=True),
)
