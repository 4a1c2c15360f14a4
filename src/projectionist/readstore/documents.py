"""Document views: key → JSON document, with indexed fields, cached and written in bulk."""

from __future__ import annotations

import base64
import itertools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..driver import Sql
from ..errors import ConfigurationError, InvalidMessage
from .document_upsert import quoted, upsert_as_text
from .rows import upsert
from .tables import DocumentCollection

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of documents and the cursor of the next page (None on the last one)."""

    items: list[dict[str, Any]]
    next: str | None


_READS: dict[tuple[str, bool], Sql] = {}


def _read_of(table: sa.Table, lock: bool = False) -> Sql:
    """The point read of one document table; a query's hottest statement, on the driver."""
    statement = _READS.get((table.name, lock))
    if statement is None:
        name = quoted(table)
        locking = " FOR UPDATE" if lock else ""
        statement = _READS[(table.name, lock)] = Sql(
            f'SELECT doc FROM {name} WHERE "key" = ?{locking}'
        )
    return statement


class DocumentCache:
    """Documents a runner keeps between its batches.

    The runner holding a build's lease is the only writer of its tables, so what it wrote is
    what the table holds. `complete` means every document of the table is in the cache or was
    forgotten by `trim` (a build that started empty), so a miss of a key never forgotten needs
    no query. Cleared on any rollback, lease change or outside write.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.docs: dict[str, dict[str, Any] | None] = {}
        self.complete = False
        self.limit = limit
        self._forgotten: KeyFilter | set[str] | None = None

    def learn(self, connection: Connection, table: sa.Table) -> None:
        """Reads the keys of `table` if it holds at most `limit`: the cache becomes complete
        without the documents (read at their first use), so a read of a key the table does not
        hold needs no query. New keys are most of a live stream's misses. For the only writer
        of the table, from when it starts writing."""
        if self.complete:
            return
        keys = connection.execute(sa.select(table.c.key).limit(self.limit + 1)).scalars().all()
        if len(keys) <= self.limit:
            self.docs.clear()
            self._forgotten = set(keys) if keys else None
            self.complete = True

    def clear(self) -> None:
        self.docs.clear()
        self.complete = False
        self._forgotten = None

    def absent(self, key: str) -> bool:
        """Whether `key` is known to have no document, though it is not in `docs`."""
        if not self.complete:
            return False
        return self._forgotten is None or key not in self._forgotten

    def trim(self) -> None:
        """Past its limit, forgets the older half of the documents.

        Starting over instead would turn every later miss of a new key into a query, and
        make a rebuild slower per event once its view outgrew the limit.
        """
        docs = self.docs
        if len(docs) <= self.limit:
            return
        old = list(itertools.islice(docs, len(docs) - self.limit // 2))
        if self.complete:
            if self._forgotten is None:
                self._forgotten = KeyFilter()
            elif isinstance(self._forgotten, set) and len(self._forgotten) > self.limit:
                # The keys read by `know` kept exactly while few; past the limit, a filter.
                known = KeyFilter()
                for key in self._forgotten:
                    known.add(key)
                self._forgotten = known
            for key in old:
                if docs[key] is not None:
                    self._forgotten.add(key)
        for key in old:
            del docs[key]


class KeyFilter:
    """A Bloom filter of keys: `in` may say yes wrongly, never no wrongly.

    16 MiB and four probes: up to 10^7 keys, fewer than 1 in 200 keys never added are taken
    for added ones (a query each); at 3 x 10^7 keys, about 1 in 8.
    """

    BITS = 1 << 27
    PROBES = 4

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def _positions(self, key: str) -> Iterator[int]:
        # Keys live only in this process, so its (salted) string hash serves.
        h = hash(key) & 0xFFFF_FFFF_FFFF_FFFF
        first, step = h & (self.BITS - 1), (h >> 27) | 1
        for i in range(self.PROBES):
            yield (first + i * step) & (self.BITS - 1)

    def add(self, key: str) -> None:
        bits = self._bits
        for p in self._positions(key):
            bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))


class Documents:
    """One version of a document collection, seen through one transaction.

    During a projection batch, reads go through a cache and writes are held until `flush`,
    which writes every changed document in one statement.
    """

    def __init__(
        self,
        connection: Connection,
        collection: DocumentCollection,
        table: sa.Table,
        cache: DocumentCache | None = None,
        *,
        lock: bool = False,
    ) -> None:
        self.connection = connection
        self.collection = collection
        self.table = table
        # Locked reads, for writers that share the table (partitions of one build): on
        # PostgreSQL a document read to be changed is locked until the batch commits.
        self._lock = lock and connection.dialect.name == "postgresql"
        self._shared = cache
        self._cache: dict[str, dict[str, Any] | None] = cache.docs if cache is not None else {}
        self._dirty: set[str] = set()

    def get(self, key: str) -> dict[str, Any] | None:
        """The document under `key`, or None."""
        cached = self._cache.get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        if self._shared is not None and self._shared.absent(key):
            return None
        rows = _read_of(self.table, self._lock).rows(self.connection, (key,))
        doc = json.loads(rows[0][0]) if rows else None
        self._cache[key] = doc
        return doc

    def put(self, key: str, doc: dict[str, Any]) -> None:
        """Stores `doc` under `key`, replacing what was there."""
        self._cache[key] = doc
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        """Removes the document under `key`, if any."""
        self._cache[key] = None
        self._dirty.add(key)

    def flush(self) -> None:
        """Writes the changed documents."""
        if not self._dirty:
            return
        upserts = []
        deletes = []
        for key in self._dirty:
            doc = self._cache[key]
            if doc is None:
                deletes.append(key)
            else:
                upserts.append(self._row(key, doc))
        self._dirty.clear()
        if deletes:
            self.connection.execute(sa.delete(self.table).where(self.table.c.key.in_(deletes)))
        if upserts and not (
            self.connection.dialect.name == "postgresql"
            and upsert_as_text(self.connection, self.table, self.collection, upserts)
        ):
            upsert(self.connection, self.table, upserts)

    def find(
        self,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 20,
        after: str | None = None,
    ) -> Page:
        """Documents matching `where` (indexed fields), ordered, one page at a time."""
        self.flush()  # let SQL see this batch's writes
        table = self.table
        statement = sa.select(table.c.key, table.c.doc)
        for field, value in (where or {}).items():
            statement = statement.where(self._column(field) == value)
        sort = self._column(order_by) if order_by else None
        key = table.c.key
        sort_type = self.collection.indexes[order_by] if order_by else None
        if after is not None:
            sort_value, after_key = _decode_cursor(after, sort_type=sort_type)
            if sort is None:
                statement = statement.where(key < after_key if descending else key > after_key)
            else:
                statement = statement.where(
                    _after(sort, sort_value, key, after_key, descending=descending)
                )
        # Documents without the sort field sort lowest, the same way on every backend.
        order = [key.desc() if descending else key.asc()]
        if sort is not None:
            order.insert(0, sort.desc().nulls_last() if descending else sort.asc().nulls_first())
        statement = statement.order_by(*order).limit(limit + 1)
        rows = self.connection.execute(statement).fetchall()
        items = [json.loads(row.doc) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            last_doc = items[-1]
            next_cursor = _encode_cursor(
                last_doc.get(order_by) if order_by else None, last.key, with_sort=sort is not None
            )
        return Page(items=items, next=next_cursor)

    def count(self, *, where: Mapping[str, Any] | None = None) -> int:
        """How many documents match `where`."""
        self.flush()  # let SQL see this batch's writes
        statement = sa.select(sa.func.count()).select_from(self.table)
        for field, value in (where or {}).items():
            statement = statement.where(self._column(field) == value)
        return int(self.connection.execute(statement).scalar_one())

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (key, document), in key order."""
        self.flush()  # let SQL see this batch's writes
        rows = self.connection.execute(
            sa.select(self.table.c.key, self.table.c.doc).order_by(self.table.c.key)
        )
        for row in rows:
            yield row.key, json.loads(row.doc)

    def _column(self, field: str) -> sa.Column[Any]:
        if field not in self.collection.indexes:
            raise ConfigurationError(
                f"documents {self.collection.name!r} have no index {field!r}; declare it in"
                f" indexes= (declared: {', '.join(self.collection.indexes) or 'none'})"
            )
        return self.table.c[f"ix_{field}"]

    def _row(self, key: str, doc: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"key": key, "doc": json.dumps(doc, separators=(",", ":"))}
        for field in self.collection.indexes:
            row[f"ix_{field}"] = doc.get(field)
        return row


def _encode_cursor(sort_value: Any, key: str, *, with_sort: bool) -> str:
    payload = [sort_value, key] if with_sort else [key]
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(
    sort: sa.Column[Any], sort_value: Any, key: sa.Column[Any], after_key: str, *, descending: bool
) -> sa.ColumnElement[bool]:
    """The rows past a cursor in (sort, key) order, where NULL sort values are the lowest."""
    if sort_value is None:
        if descending:
            return sa.and_(sort.is_(None), key < after_key)
        return sa.or_(sort.is_not(None), key > after_key)
    value = sa.literal(sort_value, sort.type)  # a bound value, even for True and False
    if descending:
        return sa.or_(sort < value, sa.and_(sort == value, key < after_key), sort.is_(None))
    return sa.or_(sort > value, sa.and_(sort == value, key > after_key))


def _sortable(value: Any, sort_type: type) -> bool:
    """Whether a cursor's sort value can be compared with the index column of `sort_type`."""
    if value is None:
        return True
    if sort_type is bool or type(value) is bool:
        return sort_type is bool and type(value) is bool
    if sort_type is str:
        return isinstance(value, str)
    if sort_type is float and type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -(2**63) <= value < 2**63


def _decode_cursor(cursor: str, *, sort_type: type | None) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if sort_type is not None:
            sort_value, key = payload
        else:
            (key,) = payload
            sort_value = None
        # A forged cursor may carry what the database cannot bind or compare: lists, values
        # of another type than the index, integers beyond 64 bits, lone surrogates.
        if not isinstance(key, str) or not (sort_type is None or _sortable(sort_value, sort_type)):
            raise ValueError
        for text in (key, sort_value):
            if isinstance(text, str):
                text.encode()
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidMessage(f"the cursor {cursor[:80]!r} is not one this query returned") from None
    return sort_value, key
