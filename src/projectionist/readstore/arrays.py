"""PostgreSQL (psycopg 3): a write of many rows to a SQL view as one statement that takes each
column as an array.

A batch writes each kind of change to a view with one statement per shape (`rows.py`). Run
once per row, psycopg's `executemany` costs about 13.5 µs of client CPU a row; one statement
whose parameters are the columns as binary arrays (`INSERT ... SELECT FROM unnest(...)`, or
`UPDATE ... FROM unnest(...)`) costs about 3 µs a row for 500 rows, and its text is the same
for any count of rows, so the server parses (and psycopg prepares) it once.

It is used only where it writes what one statement per row would:

- psycopg, and two rows or more (one row keeps the held single statement of `driver.Compiled`);
- every column it names of a type in `_KINDS` (exactly that class: not a subclass such as
  `Enum`, not a `TypeDecorator`), each column's values of the Python type its array takes
  (ints of a float column made floats, ints of a numeric one Decimals, None anywhere), after
  the type's own bind processor, if it has one;
- no column with a Python-side `onupdate`, and a Python-side default only a constant;
- the rows' keys unique: `ON CONFLICT DO UPDATE` refuses to change a row twice and
  `UPDATE ... FROM` would change it once with either. `RowWrites` folds its writes per key,
  and the rows are checked anyway.

Otherwise (`Arrays.run` returns False, having sent nothing) the rows go the usual way. Errors
of the statement (a constraint, a value out of range) are raised as SQLAlchemy's, like those
of the usual way.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from ..driver import Sql
from .tables import statement_of


@dataclass(frozen=True, slots=True)
class _Kind:
    """The PostgreSQL array a column's values travel in, and the Python types it takes."""

    cast: str
    takes: frozenset[type]
    converts: type | None = None  # a Python type made one it takes
    convert: Callable[[Any], Any] | None = None


_TEXT = _Kind("text", frozenset({str}))
_INTEGER = _Kind("int8", frozenset({int}))  # bool is not an int here: type(True) is bool
_FLOAT = _Kind("float8", frozenset({float}), int, float)
_BOOLEAN = _Kind("bool", frozenset({bool}))
_NUMERIC = _Kind("numeric", frozenset({decimal.Decimal}), int, decimal.Decimal)
_TIMESTAMP = _Kind("timestamp", frozenset({datetime.datetime}))
_TIMESTAMPTZ = _Kind("timestamptz", frozenset({datetime.datetime}))
_KINDS: Mapping[type, _Kind] = {
    **dict.fromkeys((sa.String, sa.Text, sa.Unicode, sa.UnicodeText, sa.VARCHAR, sa.TEXT), _TEXT),
    **dict.fromkeys(
        (sa.Integer, sa.BigInteger, sa.SmallInteger, sa.INTEGER, sa.BIGINT, sa.SMALLINT),
        _INTEGER,
    ),
    **dict.fromkeys((sa.Float, sa.Double, sa.DOUBLE_PRECISION, sa.FLOAT, sa.DOUBLE), _FLOAT),
    **dict.fromkeys((sa.Boolean, sa.BOOLEAN), _BOOLEAN),
    **dict.fromkeys((sa.Numeric, sa.NUMERIC), _NUMERIC),
}
_NONE = type(None)
_TARGET = "pj_t"  # the table's alias: no name of the table's own can clash with the rows'
_ROWS = "pj_v"


@dataclass(frozen=True, slots=True)
class _Array:
    """One array parameter: the rows' parameter it gathers, its kind, its bind processor."""

    param: str
    kind: _Kind
    process: Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Arrays:
    """A statement of constant text taking each parameter of the rows as an array."""

    sql: Sql
    arrays: tuple[_Array, ...]
    keys: int  # the first `keys` arrays are the rows' keys
    constants: tuple[Any, ...]  # the Python-side defaults of columns the rows lack

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Writes the rows; False, sending nothing, when a value is not one its array takes,
        or two rows have one key."""
        columns = []
        for array in self.arrays:
            try:
                values = [row[array.param] for row in rows]
            except KeyError:
                return False
            column = _values(values, array.kind, array.process)
            if column is None:
                return False
            columns.append(column)
        if self.keys:
            keys = columns[: self.keys]
            if len(set(zip(*keys, strict=True))) != len(rows) or any(
                value != value
                for column in keys
                for value in column  # NaN: PostgreSQL's equal
            ):
                return False
        self.sql.run(connection, [*self.constants, *columns])
        return True


def run(
    connection: Connection,
    table: sa.Table,
    shape: tuple[Any, ...],
    build: Callable[[], Arrays | None],
    rows: Sequence[Mapping[str, Any]],
) -> bool:
    """Writes the rows with the array statement of `shape` (`build`, cached with the table),
    when it can (see the module); False, having sent nothing, when it cannot."""
    if len(rows) < 2 or connection.dialect.driver != "psycopg":
        return False
    [statement] = statement_of(table, ("arrays", *shape), lambda: [build()])
    return statement is not None and bool(statement.run(connection, rows))


def insert(
    table: sa.Table,
    dialect: Dialect,
    columns: Sequence[str],
    *,
    conflict: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    adds: Sequence[str] = (),
) -> Arrays | None:
    """`INSERT` of rows with the parameters `columns` (the columns' names). `conflict`: the
    key whose existing rows get `sets` set from the new row and `adds` added to (`ON CONFLICT
    DO UPDATE`; nothing to set or add: `DO NOTHING`). None when the table is not one for it."""
    keys = list(conflict or ())
    ordered = [*keys, *(n for n in columns if n not in keys)]
    arrays = _arrays(table, dialect, [(n, n) for n in ordered])
    found = _defaults(table, dialect, columns)
    q = _quoter(table, dialect)
    if arrays is None or found is None or q is None:
        return None
    defaults, constants = found
    aliases = [f"c{n}" for n in range(len(arrays))]
    picked = [*(f"{_ROWS}.{a}" for a in aliases), *(f"?::{a.kind.cast}" for a in defaults)]
    names = [*ordered, *(a.param for a in defaults)]
    sql = (
        f"INSERT INTO {q(table)} AS {_TARGET} ({', '.join(q(n) for n in names)})"
        f" SELECT {', '.join(picked)} FROM {_unnest(arrays, aliases)}"
    )
    if conflict is not None:
        changes = [f"{q(n)} = excluded.{q(n)}" for n in sets]
        changes += [f"{q(n)} = {_TARGET}.{q(n)} + excluded.{q(n)}" for n in adds]
        done = f"DO UPDATE SET {', '.join(changes)}" if changes else "DO NOTHING"
        sql += f" ON CONFLICT ({', '.join(q(k) for k in keys)}) {done}"
    return Arrays(Sql(sql, binary=True), tuple(arrays), len(keys), constants)


def _defaults(
    table: sa.Table, dialect: Dialect, columns: Sequence[str]
) -> tuple[list[_Array], tuple[Any, ...]] | None:
    """The columns the rows lack that have a Python-side default, and their defaults as the
    statement takes them; None when a default is not a constant (SQLAlchemy computes it per
    row) or not of its column's kind."""
    lacking = [c for c in table.columns if c.name not in columns and c.default is not None]
    arrays = _arrays(table, dialect, [(c.name, c.name) for c in lacking])
    if arrays is None:
        return None
    constants = []
    for column, array in zip(lacking, arrays, strict=True):
        default: Any = column.default
        value = _values([default.arg], array.kind, array.process) if default.is_scalar else None
        if value is None:
            return None
        constants.append(value[0])
    return arrays, tuple(constants)


def update(
    table: sa.Table,
    dialect: Dialect,
    keys: Sequence[str],
    sets: Sequence[str],
    adds: Sequence[str],
) -> Arrays | None:
    """`UPDATE` of existing rows by key: `sets` set, `adds` added to. The rows' parameters
    are named as `rows._write` names them: `k_<key>`, `v_<set>`, `d_<add>`."""
    q = _quoter(table, dialect)
    params = [
        *((f"k_{n}", n) for n in keys),
        *((f"v_{n}", n) for n in sets),
        *((f"d_{n}", n) for n in adds),
    ]
    arrays = _arrays(table, dialect, params)
    if q is None or arrays is None:
        return None
    aliases = [f"c{n}" for n in range(len(arrays))]
    changes = [
        f"{q(n)} = {_TARGET}.{q(n)} + {_ROWS}.{a}" if p[0] == "d" else f"{q(n)} = {_ROWS}.{a}"
        for (p, n), a in zip(params, aliases, strict=True)
        if p[0] != "k"
    ]
    found = [f"{_TARGET}.{q(n)} = {_ROWS}.{a}" for n, a in zip(keys, aliases, strict=False)]
    sql = (
        f"UPDATE {q(table)} AS {_TARGET} SET {', '.join(changes)}"
        f" FROM {_unnest(arrays, aliases)} WHERE {' AND '.join(found)}"
    )
    return Arrays(Sql(sql, binary=True), tuple(arrays), len(keys), ())


def _arrays(
    table: sa.Table, dialect: Dialect, params: Sequence[tuple[str, str]]
) -> list[_Array] | None:
    """The arrays of the (parameter, column) pairs; None when a column is not of a kind, or
    the table sets a column itself on updates."""
    if any(c.onupdate is not None for c in table.columns):
        return None
    arrays = []
    for param, name in params:
        column = table.c[name]
        kind = _kind_of(column.type)
        if kind is None:
            return None
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        arrays.append(_Array(param, kind, process))
    return arrays


def _kind_of(column_type: Any) -> _Kind | None:
    if getattr(column_type, "collation", None) is not None:
        return None  # its equality may not be Python's, which checks the keys are unique
    if type(column_type) in (sa.DateTime, sa.TIMESTAMP):
        return _TIMESTAMPTZ if column_type.timezone else _TIMESTAMP
    return _KINDS.get(type(column_type))


def _values(
    values: list[Any], kind: _Kind, process: Callable[[Any], Any] | None
) -> list[Any] | None:
    """The values as their array takes them; None when one is not of a type it takes (or
    cannot be made one: the usual way raises its error as it would)."""
    try:
        if process is not None:
            values = [process(v) for v in values]
        types = set(map(type, values))
        types.discard(_NONE)
        if not types <= kind.takes:
            converts = kind.converts
            if converts is None or not types <= kind.takes | {converts}:
                return None
            convert: Any = kind.convert
            values = [convert(v) if type(v) is converts else v for v in values]
    except Exception:  # a value the bind processor refuses, an int too large for a float
        return None
    # psycopg dumps a list of naive and aware datetimes as one of them: none of that.
    if kind.cast.startswith("timestamp") and len({v.tzinfo is None for v in values if v}) > 1:
        return None
    return values


def _unnest(arrays: Sequence[_Array], aliases: Sequence[str]) -> str:
    casts = ", ".join(f"?::{a.kind.cast}[]" for a in arrays)
    return f"unnest({casts}) AS {_ROWS}({', '.join(aliases)})"


def _quoter(table: sa.Table, dialect: Dialect) -> Callable[[Any], str] | None:
    """Quotes a name (a table's with its schema); None when a name holds a character that
    `driver.Sql` would read as a marker."""
    names = [table.name, table.schema or "", *(c.name for c in table.columns)]
    if any("?" in n or "%" in n for n in names):
        return None
    preparer = dialect.identifier_preparer

    def quote(name: Any) -> str:
        return preparer.format_table(name) if isinstance(name, sa.Table) else preparer.quote(name)

    return quote
