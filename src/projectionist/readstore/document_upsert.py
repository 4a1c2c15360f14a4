"""PostgreSQL's fast write of changed documents: one statement of constant text whose values
travel as text and are cast by the server as the columns' types would take them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..driver import Sql
from .tables import DocumentCollection


def upsert_as_text(
    connection: Connection,
    table: sa.Table,
    collection: DocumentCollection,
    rows: list[dict[str, Any]],
) -> bool:
    """Upserts the rows (key, doc, index columns); False, writing nothing, when an index value
    is not of its column's type, so that its text would not be what the column takes."""
    if not _plain(rows, collection):
        return False
    columns = ["key", "doc", *(f"ix_{f}" for f in collection.indexes)]
    if len(rows) == 1:
        [row] = rows
        _upsert_of(table, collection, one=True).rows(connection, [_text(row[c]) for c in columns])
    else:
        _upsert_of(table, collection).rows(
            connection, [[_text(row[c]) for row in rows] for c in columns]
        )
    return True


def quoted(table: sa.Table) -> str:
    """The table's name, quoted for SQL."""
    return '"' + table.name.replace('"', '""') + '"'


_UPSERTS: dict[tuple[str, tuple[tuple[str, type], ...], bool], Sql] = {}
_CASTS: Mapping[type, str] = {
    str: "",
    int: "::numeric::bigint",
    float: "::float8",
    bool: "::boolean",
}


def _upsert_of(table: sa.Table, collection: DocumentCollection, *, one: bool = False) -> Sql:
    """PostgreSQL: one statement of constant text for any count of documents, the values sent
    as text arrays (binary) and cast by the server as the columns' types would take them.

    `one`: the statement for a single document, its values sent as scalars (text), which cost
    the driver far less than arrays.
    """
    shape = (table.name, tuple(collection.indexes.items()), one)
    statement = _UPSERTS.get(shape)
    if statement is None:
        fields = [(f"ix_{f}", _CASTS[t]) for f, t in collection.indexes.items()]
        names = ", ".join(f'"{n}"' for n in ["key", "doc", *(n for n, _ in fields)])
        picked = ", ".join(["k", "d", *(f"i{n}{cast}" for n, (_, cast) in enumerate(fields))])
        arrays = ", ".join(["?::text[]"] * (2 + len(fields)))
        aliases = ", ".join(["k", "d", *(f"i{n}" for n in range(len(fields)))])
        updates = ", ".join(f'"{n}" = excluded."{n}"' for n in ["doc", *(n for n, _ in fields)])
        if one:
            values = ", ".join(["?", "?", *(f"?::text{cast}" for _, cast in fields)])
            statement = _UPSERTS[shape] = Sql(
                f"INSERT INTO {quoted(table)} ({names}) VALUES ({values})"
                f' ON CONFLICT ("key") DO UPDATE SET {updates} RETURNING 1'
            )
            return statement
        statement = _UPSERTS[shape] = Sql(
            f"INSERT INTO {quoted(table)} ({names}) SELECT {picked}"
            f" FROM unnest({arrays}) AS u({aliases})"
            f' ON CONFLICT ("key") DO UPDATE SET {updates} RETURNING 1',
            binary=True,
        )
    return statement


def _plain(rows: list[dict[str, Any]], collection: DocumentCollection) -> bool:
    """Whether each index value has its column's type (or is None, or an int for a float),
    so that its text, cast by the server, is what the column would take."""
    for field, declared in collection.indexes.items():
        name = f"ix_{field}"
        for row in rows:
            kind = type(row[name])
            if not (kind is declared or row[name] is None or (kind is int and declared is float)):
                return False
    return True


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value) is float and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return str(value)
