"""The server side of capture: the checks at start-up, the publication and the slot.

A slot keeps the WAL its consumer has not confirmed. One that is lost (dropped, or invalidated
by `max_slot_wal_keep_size`) has let changes go that nobody captured, so capture stops with an
error rather than make a new slot and skip them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...errors import ConfigurationError
from ..declaration import Shape
from ..schema import state_table
from .pgoutput import lsn_text

log = logging.getLogger("projectionist.capture")

PLUGIN = "pgoutput"
MAX_NAME = 63
_IDENTITY = sa.text(
    "SELECT c.relname, c.relreplident FROM pg_class c JOIN pg_namespace n"
    " ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = ANY(:names)"
)
_PUBLISHED = sa.text("SELECT tablename FROM pg_publication_tables WHERE pubname = :name")
_HAS_PUBLICATION = sa.text("SELECT count(*) FROM pg_publication WHERE pubname = :name")
_SLOT = sa.text(
    "SELECT plugin, database, wal_status, restart_lsn - '0/0'::pg_lsn,"
    " confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = :name"
)
_CREATE_SLOT = sa.text(
    "SELECT lsn - '0/0'::pg_lsn FROM pg_create_logical_replication_slot(:name, 'pgoutput')"
)


class SlotLost(ConfigurationError):
    """The capture's slot is gone or invalidated: changes were lost, so capture stops."""

    code = "capture_slot_lost"


@dataclass(frozen=True, slots=True)
class SlotState:
    """A slot as `pg_replication_slots` shows it."""

    wal_status: str | None
    restart_lsn: int | None
    confirmed_flush_lsn: int | None


def names(app: str, database: str) -> tuple[str, str]:
    """(slot, publication) of an app: a publication per database, and a slot per app and
    database, since slots are named across the whole server."""
    publication = _name(f"projectionist_{app}")
    return _name(f"projectionist_{app}_{database}"), publication


def _name(raw: str) -> str:
    clean = re.sub(r"[^a-z0-9_]", "_", raw.lower())
    if len(clean) <= MAX_NAME:
        return clean
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{clean[: MAX_NAME - 9]}_{digest}"


def check_wal_level(value: str) -> None:
    """Refuses a server whose `wal_level` is not `logical`, saying how to change it."""
    if value != "logical":
        raise ConfigurationError(
            f"capture needs wal_level = logical, and the server has wal_level = {value}; run"
            " ALTER SYSTEM SET wal_level = logical and restart PostgreSQL"
        )


def check_identities(connection: Connection, schema: str, shapes: Sequence[Shape]) -> None:
    """Refuses a captured table whose updates and deletes would not name their row."""
    identities = {
        str(name): str(identity)
        for name, identity in connection.execute(
            _IDENTITY, {"schema": schema, "names": [s.table for s in shapes]}
        )
    }
    for shape in shapes:
        identity = identities.get(shape.table)
        if identity == "n":
            raise ConfigurationError(
                f"the captured table {shape.table!r} has REPLICA IDENTITY NOTHING, so its"
                " updates and deletes cannot be decoded; run ALTER TABLE"
                f' "{shape.table}" REPLICA IDENTITY DEFAULT (or FULL)'
            )
        if identity == "d" and not _has_primary_key(connection, schema, shape.table):
            raise ConfigurationError(
                f"the captured table {shape.table!r} has no primary key in the database; add"
                f' one, or run ALTER TABLE "{shape.table}" REPLICA IDENTITY FULL'
            )


def _has_primary_key(connection: Connection, schema: str, table: str) -> bool:
    found = connection.execute(
        sa.text(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND i.indisprimary"
        ),
        {"schema": schema, "table": table},
    ).scalar_one()
    return bool(found)


def publish(connection: Connection, publication: str, schema: str, tables: Sequence[str]) -> None:
    """Makes the publication hold exactly the captured tables."""
    listed = ", ".join(f"{ident(schema)}.{ident(t)}" for t in sorted(tables))
    if not connection.execute(_HAS_PUBLICATION, {"name": publication}).scalar_one():
        connection.exec_driver_sql(f"CREATE PUBLICATION {ident(publication)} FOR TABLE {listed}")
        return
    published = {str(t) for t in connection.execute(_PUBLISHED, {"name": publication}).scalars()}
    if published != set(tables):
        connection.exec_driver_sql(f"ALTER PUBLICATION {ident(publication)} SET TABLE {listed}")


def slot_state(connection: Connection, slot: str) -> SlotState | None:
    """The slot as the server shows it, or None when there is none of that name."""
    row = connection.execute(_SLOT, {"name": slot}).first()
    if row is None:
        return None
    plugin, _database, wal_status, restart, confirmed = row
    if plugin != PLUGIN:
        raise ConfigurationError(
            f"the replication slot {slot!r} uses the plugin {plugin!r}, not {PLUGIN!r}; drop it"
            f" with SELECT pg_drop_replication_slot('{slot}')"
        )
    return SlotState(wal_status, None if restart is None else int(restart), _int(confirmed))


def create_slot(connection: Connection, slot: str) -> int:
    """Makes the slot; the LSN from which it holds every change."""
    return int(connection.execute(_CREATE_SLOT, {"name": slot}).scalar_one())


def check_slot(state: SlotState | None, slot: str, *, expected: bool) -> None:
    """Stops capture when the slot it has been reading from is missing or invalidated."""
    if state is None and expected:
        raise SlotLost(
            f"the replication slot {slot!r} of this capture is gone, so changes made since"
            " its last read are lost; see docs/cdc.md (a lost slot) to capture again"
        )
    if state is not None and state.wal_status == "lost":
        raise SlotLost(
            f"the replication slot {slot!r} was invalidated (wal_status = lost): the server"
            " removed WAL it had not read; see docs/cdc.md (a lost slot) to capture again"
        )


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def start(connection: Connection, slot: str, known: bool, tables: list[str]) -> None:
    """Makes the slot (or checks it, when the capture's checkpoint is `known`), the checkpoint
    row, and a pending snapshot row for each table not snapshotted yet."""
    state = slot_state(connection, slot)
    check_slot(state, slot, expected=known)
    if state is None:
        start_lsn = create_slot(connection, slot)
        log.info("made the replication slot %s at %s", slot, lsn_text(start_lsn))
    else:
        start_lsn = state.confirmed_flush_lsn or 0
    if known:
        connection.execute(
            sa.update(state_table).where(state_table.c.slot == slot).values(error=None)
        )
    else:
        now = time.time()
        connection.execute(
            sa.insert(state_table).values(
                slot=slot,
                commit_lsn=0,
                through_lsn=start_lsn,
                through_at=now,
                position=0,
                error=None,
                updated_at=now,
            )
        )
    for table in tables:
        connection.execute(
            sa.text(
                "INSERT INTO projectionist_capture_snapshots (slot, table_name, position)"
                " VALUES (:slot, :table, 0) ON CONFLICT DO NOTHING"
            ),
            {"slot": slot, "table": table},
        )
