"""Read-model storage declarations: SQL view tables and document collections.

A projection declares its storage once; each build (generation) of the projection gets tables
of its own, named `<name>_g<generation>`, so a rebuild never touches what queries read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from ..errors import ConfigurationError

INDEX_TYPES: Mapping[type, type[sa.types.TypeEngine[Any]]] = {
    str: sa.String,
    int: sa.BigInteger,
    float: sa.Float,
    bool: sa.Boolean,
}


def statement_of(table: sa.Table, shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The statement of this shape on `table`, built once and kept with the table: building a
    SQLAlchemy statement costs more than running a small one."""
    cache: dict[tuple[Any, ...], Any] = table.info.setdefault("projectionist_statements", {})
    statement = cache.get(shape)
    if statement is None:
        statement = cache[shape] = build()
    return statement


def physical_name(name: str, generation: int) -> str:
    """The table name of one generation (one build) of a read-model table."""
    return f"{name}_g{generation}"


class Stored(ABC):
    """Storage a projection (its `owner`) declares once and creates again for each build."""

    def __init__(self, owner: str, name: str) -> None:
        self.owner = owner
        self.name = name
        self._tables: dict[int, sa.Table] = {}

    def physical(self, generation: int) -> sa.Table:
        """The SQLAlchemy table of one generation."""
        table = self._tables.get(generation)
        if table is None:
            table = self._table(physical_name(self.name, generation))
            self._tables[generation] = table
        return table

    @abstractmethod
    def _table(self, name: str) -> sa.Table:
        """A new SQLAlchemy table of this storage, named `name`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.owner}.{self.name})"


class ViewTable(Stored):
    """A SQL table of a projection, declared once and created per build."""

    def __init__(
        self,
        owner: str,
        name: str,
        columns: tuple[sa.Column[Any], ...],
        indexes: tuple[tuple[str, ...], ...],
    ) -> None:
        super().__init__(owner, name)
        self._columns = columns
        self._indexes = indexes

    def _table(self, name: str) -> sa.Table:
        table = sa.Table(name, sa.MetaData(), *(column._copy() for column in self._columns))
        for columns in self._indexes:
            sa.Index(f"ix_{name}_{'_'.join(columns)}", *(table.c[c] for c in columns))
        return table


class DocumentCollection(Stored):
    """A key → JSON document view with declared, indexed fields; needs no SQL from its user."""

    def __init__(self, owner: str, name: str, indexes: Mapping[str, type]) -> None:
        for field, python_type in indexes.items():
            if python_type not in INDEX_TYPES:
                raise ConfigurationError(
                    f"index {field!r} of documents {name!r} has type {python_type.__name__};"
                    f" use one of {', '.join(t.__name__ for t in INDEX_TYPES)}"
                )
            if not field.isidentifier():
                raise ConfigurationError(f"index name {field!r} must be an identifier")
        super().__init__(owner, name)
        self.indexes = dict(indexes)

    def _table(self, name: str) -> sa.Table:
        table = sa.Table(
            name,
            sa.MetaData(),
            sa.Column("key", sa.String, primary_key=True),
            sa.Column("doc", sa.Text, nullable=False),
            *(
                sa.Column(f"ix_{field}", INDEX_TYPES[python_type], nullable=True)
                for field, python_type in self.indexes.items()
            ),
        )
        for field in self.indexes:
            sa.Index(f"ix_{name}_{field}", table.c[f"ix_{field}"], table.c.key)
        return table
