"""Declaring a captured table, and resolving it against the store when capture is installed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ConfigurationError

RESERVED_PREFIX = "projectionist_"
ColumnRef = str | sa.Column[Any]


class CapturingApp(Protocol):
    """What capture reads of an App: its name, its captured tables and its write model."""

    @property
    def name(self) -> str: ...
    @property
    def captures(self) -> Mapping[str, CapturedTable]: ...
    @property
    def write_model(self) -> sa.MetaData: ...


@dataclass(frozen=True, slots=True)
class Shape:
    """A captured table as the store holds it: its name, primary key and kept columns."""

    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def signature(self) -> str:
        """What the capture's triggers depend on, as recorded in `projectionist_capture`."""
        return json.dumps({"key": self.key, "columns": self.columns}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """A table whose row changes become RowChanged events, keyed by its primary key.

    `table` is its declaration, or None when only its name is known: the store's table is
    read when capture is installed. `columns` are the columns kept, None for all of them.
    """

    name: str
    table: sa.Table | None
    columns: tuple[str, ...] | None

    @classmethod
    def declare(
        cls,
        table: sa.Table | str,
        columns: Sequence[ColumnRef] | None,
        write_model: sa.MetaData,
    ) -> CapturedTable:
        """A checked declaration: a Table, or a name looked up in the app's write model."""
        if isinstance(table, str):
            name, declared = table, write_model.tables.get(table)
        elif isinstance(table, sa.Table):
            name, declared = table.name, table
            if table.schema is not None:
                raise ConfigurationError(
                    f"captured table {table.fullname!r} names a schema; capture takes tables"
                    " of the store's default schema only"
                )
        else:
            raise ConfigurationError(
                f"capture() takes a sqlalchemy Table or a table name, not {table!r:.80}"
            )
        if name.startswith(RESERVED_PREFIX):
            raise ConfigurationError(
                f"table {name!r} belongs to projectionist and cannot be captured"
            )
        kept = None if columns is None else _names(name, columns)
        captured = cls(name, declared, kept)
        if declared is not None:
            captured._shape_of(declared)  # refuses a table without a key or a missing column
        return captured

    def shape(self, connection: Connection, write_model: sa.MetaData) -> Shape:
        """The table in the store, created from its declaration first if it is missing."""
        declared = self.table if self.table is not None else write_model.tables.get(self.name)
        if not sa.inspect(connection).has_table(self.name):
            if declared is None:
                raise ConfigurationError(
                    f"the captured table {self.name!r} does not exist in the write store, and"
                    " the app's write_model does not declare it"
                )
            declared.create(connection)
        stored = sa.Table(self.name, sa.MetaData(), autoload_with=connection)
        shape = self._shape_of(declared if declared is not None else stored)
        missing = [c for c in (*shape.key, *shape.columns) if c not in stored.columns]
        if missing:
            raise ConfigurationError(
                f"the captured table {self.name!r} in the write store has no column"
                f" {', '.join(repr(c) for c in missing)}; it has"
                f" {', '.join(stored.columns.keys())}"
            )
        return shape

    def _shape_of(self, table: sa.Table) -> Shape:
        key = tuple(column.name for column in table.primary_key.columns)
        if not key:
            raise ConfigurationError(
                f"the captured table {self.name!r} has no primary key; capture keys each row's"
                " stream by it"
            )
        names = list(table.columns.keys())
        if self.columns is None:
            return Shape(self.name, key, tuple(names))
        unknown = [c for c in self.columns if c not in table.columns]
        if unknown:
            raise ConfigurationError(
                f"the captured table {self.name!r} has no column"
                f" {', '.join(repr(c) for c in unknown)}; it has {', '.join(names)}"
            )
        # In the table's order, so that reordering the declaration changes nothing stored.
        return Shape(self.name, key, tuple(c for c in names if c in self.columns))

    def __repr__(self) -> str:
        kept = "all" if self.columns is None else list(self.columns)
        return f"CapturedTable({self.name!r}, columns={kept})"


def _names(table: str, columns: Sequence[ColumnRef]) -> tuple[str, ...]:
    if isinstance(columns, str):
        raise ConfigurationError(
            f"the columns captured of {table!r} must be a list of names, not the string {columns!r}"
        )
    names: list[str] = []
    for column in columns:
        name = column if isinstance(column, str) else getattr(column, "name", None)
        if not isinstance(name, str):
            raise ConfigurationError(
                f"the columns captured of {table!r} must be names or Columns, not {column!r:.80}"
            )
        if name not in names:
            names.append(name)
    return tuple(names)
