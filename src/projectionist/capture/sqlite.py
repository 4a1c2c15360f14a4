"""Capture on SQLite: triggers that append each row change to the log in the writer's own
transaction, and a snapshot of the rows already there when capture of a table starts.

A trigger runs inside the statement that fired it, so a change and its event commit together
or not at all, and they take their position under SQLite's single write lock like any append.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .declaration import Shape
from .events import RowChanged
from .schema import captures_table

log = logging.getLogger("projectionist.capture")

TRIGGER_PREFIX = "projectionist_capture_"
_CAPTURED = "capture"
_SNAPSHOT = "capture-snapshot"
_NOW = "(julianday('now') - 2440587.5) * 86400.0"
_TRIGGERS = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?"
_INSERT = (
    "INSERT INTO projectionist_events"
    " (stream, version, type, schema_version, data, metadata, recorded_at)"
)


def install(connection: Connection, shapes: Sequence[Shape]) -> None:
    """Makes each table's triggers as its shape needs them, and snapshots new captures.

    Runs in one schema transaction: a table's triggers and its snapshot commit together, so a
    row written meanwhile is either in the snapshot or captured by a trigger, never both.
    """
    captures_table.create(connection, checkfirst=True)
    recorded = {
        row.table_name: row.columns
        for row in connection.execute(
            sa.select(captures_table.c.table_name, captures_table.c.columns)
        )
    }
    for shape in shapes:
        wanted = triggers(shape)
        present = {
            name: sql
            for name, sql in connection.exec_driver_sql(_TRIGGERS, (shape.table,)).fetchall()
            if name.startswith(TRIGGER_PREFIX)
        }
        if present != wanted:
            for name in present:
                connection.exec_driver_sql(f"DROP TRIGGER {_ident(name)}")
            for sql in wanted.values():
                connection.exec_driver_sql(sql)
        if shape.table not in recorded:
            connection.exec_driver_sql(snapshot(shape))
            connection.execute(
                sa.insert(captures_table).values(
                    table_name=shape.table, columns=shape.signature, snapshotted_at=time.time()
                )
            )
            continue
        if _trigger_name(shape, "insert") not in present:
            log.warning(
                "the capture triggers of %r were missing and are made anew: row changes made"
                " without them are not in the log",
                shape.table,
            )
        if recorded[shape.table] != shape.signature:
            log.info("the capture triggers of %r keep %s now", shape.table, shape.signature)
            connection.execute(
                sa.update(captures_table)
                .where(captures_table.c.table_name == shape.table)
                .values(columns=shape.signature)
            )


def triggers(shape: Shape) -> dict[str, str]:
    """The CREATE TRIGGER statements of one captured table, by trigger name."""
    same_key = " AND ".join(f"OLD.{_ident(k)} IS NEW.{_ident(k)}" for k in shape.key)
    made = {
        _trigger_name(shape, "insert"): _trigger(
            shape, "insert", "INSERT", None, [_event(shape, "insert", "NEW", "NEW", None)]
        ),
        _trigger_name(shape, "delete"): _trigger(
            shape, "delete", "DELETE", None, [_event(shape, "delete", "OLD", None, "OLD")]
        ),
        # A new primary key is another row to whoever keys by it: the old one goes, a new one
        # comes.
        _trigger_name(shape, "rekey"): _trigger(
            shape,
            "rekey",
            "UPDATE",
            f"NOT ({same_key})",
            [
                _event(shape, "delete", "OLD", None, "OLD"),
                _event(shape, "insert", "NEW", "NEW", None),
            ],
        ),
    }
    changed = " OR ".join(
        f"OLD.{_ident(c)} IS NOT NEW.{_ident(c)}" for c in shape.columns if c not in shape.key
    )
    if changed:
        # An update that leaves every kept column as it was is no change to a reader.
        made[_trigger_name(shape, "update")] = _trigger(
            shape,
            "update",
            "UPDATE",
            f"{same_key} AND ({changed})",
            [_event(shape, "update", "NEW", "NEW", "OLD")],
        )
    return made


def snapshot(shape: Shape) -> str:
    """The statement that appends an `insert` event for every row of the table, in key order."""
    source = "pj_source"
    order = ", ".join(f"pj_selected.pj_key_{i}" for i in range(len(shape.key)))
    keys = ", ".join(f"{source}.{_ident(k)} AS pj_key_{i}" for i, k in enumerate(shape.key))
    selected = (
        f"SELECT {_stream(shape, source)} AS pj_stream,"
        f" {_data(shape, 'insert', source, source, None)} AS pj_data, {keys}"
        f" FROM {_ident(shape.table)} AS {source}"
    )
    return (
        f"{_INSERT} SELECT pj_selected.pj_stream, {_version('pj_selected.pj_stream')},"
        f" {_text(RowChanged.type_name)}, {RowChanged.schema_version}, pj_selected.pj_data,"
        f" {_metadata(_SNAPSHOT)}, {_NOW} FROM ({selected}) AS pj_selected ORDER BY {order}"
    )


def _trigger(shape: Shape, name: str, on: str, when: str | None, body: list[str]) -> str:
    condition = f" WHEN {when}" if when else ""
    statements = "".join(f" {statement};" for statement in body)
    return (
        f"CREATE TRIGGER {_ident(_trigger_name(shape, name))} AFTER {on} ON {_ident(shape.table)}"
        f"{condition} BEGIN{statements} END"
    )


def _trigger_name(shape: Shape, name: str) -> str:
    return f"{TRIGGER_PREFIX}{shape.table}_{name}"


def _event(shape: Shape, op: str, key: str, row: str | None, old: str | None) -> str:
    """One INSERT of a RowChanged into the log, from the trigger's NEW or OLD row."""
    stream = _stream(shape, key)
    return (
        f"{_INSERT} SELECT pj_new.pj_stream, {_version('pj_new.pj_stream')},"
        f" {_text(RowChanged.type_name)}, {RowChanged.schema_version},"
        f" {_data(shape, op, key, row, old)}, {_metadata(_CAPTURED)}, {_NOW}"
        f" FROM (SELECT {stream} AS pj_stream) AS pj_new"
    )


def _version(stream: str) -> str:
    return (
        "(SELECT coalesce(max(pj_log.version), 0) + 1 FROM projectionist_events AS pj_log"
        f" WHERE pj_log.stream = {stream})"
    )


def _data(shape: Shape, op: str, key: str, row: str | None, old: str | None) -> str:
    """The event's data as `RowChanged.model_dump_json` writes it: fields in their order."""
    fields = {
        "table": _text(shape.table),
        "op": _text(op),
        "key": _object(key, shape.key),
        "row": _object(row, shape.columns) if row else "NULL",
        "old": _object(old, shape.columns) if old else "NULL",
    }
    return "json_object(" + ", ".join(f"{_text(k)}, {v}" for k, v in fields.items()) + ")"


def _object(source: str, columns: Sequence[str]) -> str:
    pairs = ", ".join(f"{_text(c)}, {_value(source, c)}" for c in columns)
    return f"json_object({pairs})"


def _value(source: str, column: str) -> str:
    # JSON holds no bytes: a BLOB goes as hexadecimal text, or json_object would fail the
    # writer's statement.
    ref = f"{source}.{_ident(column)}"
    return f"CASE typeof({ref}) WHEN 'blob' THEN lower(hex({ref})) ELSE {ref} END"


def _stream(shape: Shape, source: str) -> str:
    parts = " || ':' || ".join(f"ifnull({_value(source, k)}, '')" for k in shape.key)
    return f"{_text(shape.table + ':')} || {parts}"


def _metadata(command_id: str) -> str:
    return (
        "json_object('event_id', lower(hex(randomblob(16))),"
        f" 'command_id', {_text(command_id)}, 'correlation_id', {_text(_CAPTURED)},"
        " 'subject', NULL, 'token_id', NULL)"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
