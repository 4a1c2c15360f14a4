"""Counters: numeric columns of SQL views, added to in memory and written once per batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ConfigurationError

Number = int | float


class Counters:
    """Folds `increment` calls per row and writes them with one UPDATE and one INSERT each."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[sa.Table, dict[tuple[Any, ...], dict[str, Number]]]] = {}

    def add(self, table: sa.Table, key: Mapping[str, Any], deltas: Mapping[str, Number]) -> None:
        primary = [column.name for column in table.primary_key.columns]
        if sorted(key) != sorted(primary):
            raise ConfigurationError(
                f"increment on {table.name} needs its primary key ({', '.join(primary)}),"
                f" got {', '.join(key) or 'nothing'}"
            )
        unknown = [name for name in deltas if name not in table.c]
        if unknown:
            raise ConfigurationError(f"{table.name} has no column {', '.join(unknown)}")
        rows = self._pending.setdefault(table.name, (table, {}))[1]
        row = rows.setdefault(tuple(key[name] for name in primary), {})
        for name, delta in deltas.items():
            row[name] = row.get(name, 0) + delta

    def flush(self, connection: Connection) -> None:
        for table, rows in self._pending.values():
            if rows:
                _write(connection, table, rows)
        self._pending.clear()


def _write(connection: Connection, table: sa.Table,
           rows: dict[tuple[Any, ...], dict[str, Number]]) -> None:
    primary = list(table.primary_key.columns)
    names = [column.name for column in primary]
    existing: set[tuple[Any, ...]] = set()
    keys = list(rows)
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        if len(primary) == 1:
            found = connection.execute(
                sa.select(primary[0]).where(primary[0].in_([k[0] for k in chunk])))
        else:
            found = connection.execute(
                sa.select(*primary).where(sa.tuple_(*primary).in_(chunk)))
        existing.update(tuple(row) for row in found)
    columns = sorted({name for deltas in rows.values() for name in deltas})
    updates = [
        {**{f"k_{n}": v for n, v in zip(names, key, strict=True)},
         **{f"d_{c}": rows[key].get(c, 0) for c in columns}}
        for key in keys if key in existing
    ]
    if updates:
        statement = (
            sa.update(table)
            .where(*(column == sa.bindparam(f"k_{column.name}") for column in primary))
            .values({table.c[c]: table.c[c] + sa.bindparam(f"d_{c}") for c in columns})
        )
        connection.execute(statement, updates)
    inserts = [
        {**dict(zip(names, key, strict=True)), **rows[key]}
        for key in keys if key not in existing
    ]
    if inserts:
        for row in inserts:
            for c in columns:
                row.setdefault(c, 0)
        connection.execute(sa.insert(table), inserts)
