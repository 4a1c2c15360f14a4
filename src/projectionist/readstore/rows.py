"""Writes to SQL views, folded per row in memory and written once per batch.

`put` replaces a row, `update` sets columns, `increment` adds to numeric columns (creating
the row if it is missing). Several calls on one row within a batch fold into one write, and
the batch writes each kind with one statement per table, so a replay of many events costs a
few statements instead of one per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..driver import Compiled
from ..errors import ConfigurationError
from . import arrays
from .tables import statement_of

Number = int | float
Key = tuple[Any, ...]


class _Pending:
    """What a batch does to one row: replace it, or set and add to some columns."""

    __slots__ = ("create", "deltas", "replace", "values")

    def __init__(self, replace: bool, values: dict[str, Any]) -> None:
        self.replace = replace
        self.values = values
        self.deltas: dict[str, Number] = {}
        self.create = False


class _TableWrites:
    """One table's pending rows, with its key and column names looked up once per batch."""

    __slots__ = ("columns", "key_name", "keys", "rows", "table")

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self.keys, self.columns = _shape(table)
        self.key_name = self.keys[0] if len(self.keys) == 1 else None
        self.rows: dict[Key, _Pending] = {}

    def key(self, row: Mapping[str, Any]) -> Key:
        try:
            if self.key_name is not None:
                return (row[self.key_name],)
            return tuple(row[name] for name in self.keys)
        except KeyError:
            raise ConfigurationError(
                f"a write to {self.table.name} needs its primary key ({', '.join(self.keys)}),"
                f" got {', '.join(row) or 'nothing'}"
            ) from None

    def check(self, row: Mapping[str, Any]) -> None:
        if not self.columns.issuperset(row):
            unknown = [name for name in row if name not in self.columns]
            raise ConfigurationError(f"{self.table.name} has no column {', '.join(unknown)}")

    def pending(self, key: Mapping[str, Any]) -> _Pending:
        index = self.key(key)
        pending = self.rows.get(index)
        if pending is None:
            pending = self.rows[index] = _Pending(False, dict(key))
        return pending


class RowWrites:
    """The pending writes of one batch to SQL views."""

    def __init__(self) -> None:
        self._tables: dict[sa.Table, _TableWrites] = {}

    def put(self, table: sa.Table, row: Mapping[str, Any]) -> None:
        writes = self._of(table)
        key = writes.key(row)
        writes.check(row)
        writes.rows[key] = _Pending(True, dict(row))

    def update(self, table: sa.Table, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        writes = self._of(table)
        writes.check(values)
        pending = writes.pending(key)
        pending.values.update(values)
        if pending.deltas:
            for name in values:
                pending.deltas.pop(name, None)

    def increment(
        self, table: sa.Table, key: Mapping[str, Any], deltas: Mapping[str, Number]
    ) -> None:
        writes = self._of(table)
        writes.check(deltas)
        pending = writes.pending(key)
        if not pending.replace:
            pending.create = True
        values, adding = pending.values, pending.deltas
        for name, delta in deltas.items():
            if name in values:
                values[name] += delta
            else:
                adding[name] = adding.get(name, 0) + delta

    def flush(self, connection: Connection) -> None:
        for writes in self._tables.values():
            if writes.rows:
                _write(connection, writes.table, writes.rows)
        self._tables.clear()

    def _of(self, table: sa.Table) -> _TableWrites:
        writes = self._tables.get(table)
        if writes is None:
            writes = self._tables[table] = _TableWrites(table)
        return writes


def _shape(table: sa.Table) -> tuple[tuple[str, ...], frozenset[str]]:
    """The names of the table's primary key and of all its columns, read once per table."""
    shape: tuple[tuple[str, ...], frozenset[str]] | None = table.info.get("projectionist_shape")
    if shape is None:
        shape = table.info["projectionist_shape"] = (
            tuple(column.name for column in table.primary_key.columns),
            frozenset(column.name for column in table.columns),
        )
    return shape


def _write(connection: Connection, table: sa.Table, rows: dict[Key, _Pending]) -> None:
    primary = list(table.primary_key.columns)
    names = {column.name for column in primary}
    replaced = [p.values for p in rows.values() if p.replace]
    if replaced:
        upsert(connection, table, replaced)
    changed = {key: p for key, p in rows.items() if not p.replace}
    if not changed:
        return
    # A row to create or add to, given every column a new row needs: one upsert, no read.
    required = _required(table)
    added = (
        {k: p for k, p in changed.items() if p.create and required <= {*p.values, *p.deltas}}
        if required is not None
        else {}
    )
    if added:
        _upsert_adding(connection, table, added.values())
        changed = {key: p for key, p in changed.items() if key not in added}
    creating = [key for key, pending in changed.items() if pending.create]
    if len(changed) == 1 and creating and connection.dialect.name == "postgresql":
        [pending] = changed.values()
        if _update_or_insert(connection, table, primary, pending):
            return
    existing = _existing(connection, table, primary, creating)
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
    inserts: list[dict[str, Any]] = []
    for key, pending in changed.items():
        if pending.create and key not in existing:
            inserts.append({**pending.values, **pending.deltas})
            continue
        columns = tuple(sorted(n for n in pending.values if n not in names))
        adds = tuple(sorted(pending.deltas))
        if not columns and not adds:
            continue
        params = {f"k_{c.name}": pending.values[c.name] for c in primary}
        params.update({f"v_{n}": pending.values[n] for n in columns})
        params.update({f"d_{n}": pending.deltas[n] for n in adds})
        groups.setdefault((columns, adds), []).append(params)
    for (columns, adds), batch in groups.items():

        def update(columns: tuple[str, ...] = columns, adds: tuple[str, ...] = adds) -> Any:
            return (
                sa.update(table)
                .where(*(c == sa.bindparam(f"k_{c.name}") for c in primary))
                .values(
                    {
                        **{table.c[n]: sa.bindparam(f"v_{n}") for n in columns},
                        **{table.c[n]: table.c[n] + sa.bindparam(f"d_{n}") for n in adds},
                    }
                )
            )

        pk_names = [c.name for c in primary]
        by_arrays = partial(arrays.update, table, connection.dialect, pk_names, columns, adds)
        _run(connection, table, ("update", columns, adds), update, batch, None, by_arrays)
    if inserts:
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in inserts:
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        for columns, group in by_columns.items():
            by_arrays = partial(arrays.insert, table, connection.dialect, columns)
            _run(
                connection, table, ("insert",), lambda: sa.insert(table), group, columns, by_arrays
            )


def _update_or_insert(
    connection: Connection, table: sa.Table, primary: list[sa.Column[Any]], pending: _Pending
) -> bool:
    """On PostgreSQL, one row to add to or create, which an upsert could not create whole
    (a required column left out, or a CHECK constraint): one statement that updates the row,
    or inserts it where the update found none, instead of a read of whether it exists (a
    round trip: this statement is held and goes with the checkpoint's move). False, having
    done nothing, for a row with nothing to set or add, or a table with Python-side defaults
    the row does not give."""
    keys = {column.name for column in primary}
    values = tuple(sorted(name for name in pending.values if name not in keys))
    adds = tuple(sorted(pending.deltas))
    given = {*keys, *values, *adds}
    if (not values and not adds) or any(
        (column.default is not None and column.name not in given) or column.onupdate is not None
        for column in table.columns
    ):
        return False  # SQLAlchemy's own insert fills Python-side defaults in
    key_params = {column.name: f"k_{column.name}" for column in primary}

    def build() -> Any:
        # Each parameter typed as its column, in both statements: its type's own conversion
        # (JSON, a TypeDecorator) applies to the value sent.
        def value(name: str, param: str) -> Any:
            return sa.bindparam(param, type_=table.c[name].type)

        updated = (
            sa.update(table)
            .where(*(c == value(c.name, key_params[c.name]) for c in primary))
            .values(
                {
                    **{table.c[n]: value(n, f"v_{n}") for n in values},
                    **{table.c[n]: table.c[n] + value(n, f"d_{n}") for n in adds},
                }
            )
            .returning(sa.literal_column("1"))
            .cte("projectionist_updated")
        )
        params = {**key_params, **{n: f"v_{n}" for n in values}, **{n: f"d_{n}" for n in adds}}
        columns = list(params)
        missing = ~sa.exists(sa.select(sa.literal_column("1")).select_from(updated))
        row = sa.select(*(sa.cast(value(n, params[n]), table.c[n].type) for n in columns))
        return sa.insert(table).from_select(columns, row.where(missing)).add_cte(updated)

    row = {f"k_{name}": pending.values[name] for name in keys}
    row.update({f"v_{name}": pending.values[name] for name in values})
    row.update({f"d_{name}": pending.deltas[name] for name in adds})
    _run(connection, table, ("update-or-insert", values, adds), build, [row])
    return True


def _run(
    connection: Connection,
    table: sa.Table,
    shape: tuple[Any, ...],
    build: Callable[[], Any],
    rows: list[dict[str, Any]],
    columns: tuple[str, ...] | None = None,
    by_arrays: Callable[[], arrays.Arrays | None] | None = None,
) -> None:
    """Runs the statement of `shape` once per row, compiled once on the driver's cursor, or
    through SQLAlchemy when the rows lack a parameter it would add (a Python-side default).

    `by_arrays`: the statement that writes the rows at once, taking each column as an array,
    used for many rows on PostgreSQL when it can be (`arrays`)."""
    if by_arrays is not None and arrays.run(connection, table, (columns, *shape), by_arrays, rows):
        return
    dialect = connection.dialect
    compiled: Compiled = statement_of(
        table,
        ("compiled", dialect.name, dialect.driver, columns, *shape),
        lambda: Compiled(build(), dialect, columns),
    )
    if compiled.covers(rows[0]):
        compiled.run_many(connection, rows, hold=True)  # sent with the checkpoint's move
    else:
        connection.execute(statement_of(table, shape, build), rows)


def _required(table: sa.Table) -> frozenset[str] | None:
    """The columns a new row must be given (NOT NULL, with no default of any kind), or None
    when an upsert would not act as an update of an existing row: a CHECK constraint (checked
    on the row proposed for insertion, before the conflict) or an `onupdate` column (which
    the conflict's UPDATE does not set)."""
    info = table.info
    if "projectionist_required" not in info:
        constraints = [*table.constraints, *(k for c in table.columns for k in c.constraints)]
        unlike_an_update = any(isinstance(k, sa.CheckConstraint) for k in constraints) or any(
            c.onupdate is not None or c.server_onupdate is not None for c in table.columns
        )
        info["projectionist_required"] = (
            None
            if unlike_an_update
            else frozenset(
                column.name
                for column in table.columns
                if not column.nullable
                and column.default is None
                and column.server_default is None
                and not (column.primary_key and column.autoincrement is True)
            )
        )
    required: frozenset[str] | None = info["projectionist_required"]
    return required


def _upsert_adding(connection: Connection, table: sa.Table, rows: Iterable[_Pending]) -> None:
    """Inserts each row, or, where its key exists, sets its values and adds its deltas."""
    dialect = connection.dialect.name
    keys = [column.name for column in table.primary_key.columns]
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
    for pending in rows:
        shape = (tuple(sorted(pending.values)), tuple(sorted(pending.deltas)))
        groups.setdefault(shape, []).append({**pending.values, **pending.deltas})
    for (values, deltas), group in groups.items():

        def build(values: tuple[str, ...] = values, deltas: tuple[str, ...] = deltas) -> Any:
            statement = _dialect_insert(table, dialect)
            sets = {n: statement.excluded[n] for n in values if n not in keys}
            sets.update({n: table.c[n] + statement.excluded[n] for n in deltas})
            if not sets:  # an increment by nothing: create the row if missing
                return statement.on_conflict_do_nothing(index_elements=keys)
            return statement.on_conflict_do_update(index_elements=keys, set_=sets)

        columns = tuple(sorted((*values, *deltas)))
        set_ = [n for n in values if n not in keys]
        by_arrays = partial(
            arrays.insert, table, connection.dialect, columns, conflict=keys, sets=set_, adds=deltas
        )
        kind = ("upsert-adding", dialect, values, deltas)
        _run(connection, table, kind, build, group, columns, by_arrays)


def _dialect_insert(table: sa.Table, dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table)


def _existing(
    connection: Connection, table: sa.Table, primary: list[sa.Column[Any]], keys: list[Key]
) -> set[Key]:
    found: set[Key] = set()
    single = len(primary) == 1

    def select() -> Any:
        keys: Any = sa.bindparam("keys", expanding=True)
        if single:
            return sa.select(primary[0]).where(primary[0].in_(keys))
        return sa.select(*primary).where(sa.tuple_(*primary).in_(keys))

    statement = statement_of(table, ("existing",), select)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows = connection.execute(statement, {"keys": [k[0] for k in chunk] if single else chunk})
        found.update(tuple(row) for row in rows)
    return found


def upsert(connection: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Inserts rows, replacing those whose primary key exists (one statement per shape)."""
    dialect = connection.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"SQL views are not supported on {dialect!r}")
    keys = [column.name for column in table.primary_key.columns]
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(row)), []).append(row)
    for columns, group in by_columns.items():

        def build(columns: tuple[str, ...] = columns) -> Any:
            statement = _dialect_insert(table, dialect)
            updates = {n: statement.excluded[n] for n in columns if n not in keys}
            if updates:
                return statement.on_conflict_do_update(index_elements=keys, set_=updates)
            return statement.on_conflict_do_nothing(index_elements=keys)

        set_ = [n for n in columns if n not in keys]
        by_arrays = partial(
            arrays.insert, table, connection.dialect, columns, conflict=keys, sets=set_
        )
        _run(connection, table, ("upsert", dialect, columns), build, group, columns, by_arrays)
