"""The log's table, shared by every SQL backend."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

events_table = sa.Table(
    "projectionist_events",
    metadata,
    sa.Column(
        "position",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("stream", sa.String, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.Float(precision=53), nullable=False),
    sa.UniqueConstraint("stream", "version", name="projectionist_events_stream_version"),
    sqlite_autoincrement=True,
)

COLUMNS = "position, stream, version, type, schema_version, data, metadata, recorded_at"
