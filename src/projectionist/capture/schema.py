"""The write store's record of captured tables: what each keeps, and when it was snapshotted."""

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
