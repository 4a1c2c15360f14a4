"""A decoder of the pgoutput logical replication protocol, version 1: pure functions over bytes.

Each message is one row of `pg_logical_slot_peek_binary_changes`. Row changes name their table
by relation id; the server sends a Relation message before the first change of a relation in a
session and again whenever its columns change, so `Relations` keeps the latest per id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

Column = tuple[Literal["n", "u", "t", "b"], bytes | None]
"""One value of a tuple: null ('n'), unchanged TOAST ('u'), text ('t') or binary ('b')."""

_INT8 = struct.Struct(">b")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_UINT64 = struct.Struct(">Q")
_INT64 = struct.Struct(">q")
KEY_FLAG = 1


class DecodeError(ValueError):
    """A pgoutput message this decoder cannot read."""


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    timestamp_us: int
    """Microseconds since 2000-01-01 UTC, PostgreSQL's epoch."""
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    timestamp_us: int


@dataclass(frozen=True, slots=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    """'d' default (the primary key), 'n' nothing, 'f' full, 'i' an index."""
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class TypeInfo:
    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    old: tuple[Column, ...] | None
    """The old key ('K', when it changed) or the whole old row ('O', with REPLICA IDENTITY FULL)."""
    old_kind: str | None
    new: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old_kind: str
    old: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    options: int
    relation_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Decoded = (
    Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate | Message
)


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, layout: struct.Struct) -> int:
        try:
            (value,) = layout.unpack_from(self.data, self.offset)
        except struct.error:
            raise DecodeError(f"pgoutput message ends early at byte {self.offset}") from None
        self.offset += layout.size
        return int(value)

    def byte(self) -> str:
        if self.offset >= len(self.data):
            raise DecodeError(f"pgoutput message ends early at byte {self.offset}")
        value = chr(self.data[self.offset])
        self.offset += 1
        return value

    def string(self) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise DecodeError(f"pgoutput string at byte {self.offset} has no terminator")
        value = self.data[self.offset : end].decode()
        self.offset = end + 1
        return value

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise DecodeError(f"pgoutput value of {size} bytes at {self.offset} runs past the end")
        value = self.data[self.offset : self.offset + size]
        self.offset += size
        return bytes(value)

    def tuple_data(self) -> tuple[Column, ...]:
        count = self.unpack(_INT16)
        columns: list[Column] = []
        for _ in range(count):
            kind = self.byte()
            if kind == "n":
                columns.append(("n", None))
            elif kind == "u":
                columns.append(("u", None))
            elif kind == "t":
                columns.append(("t", self.take(self.unpack(_INT32))))
            elif kind == "b":
                columns.append(("b", self.take(self.unpack(_INT32))))
            else:
                raise DecodeError(f"unknown pgoutput column kind {kind!r}")
        return tuple(columns)


def decode(data: bytes) -> Decoded:
    """One pgoutput message, decoded."""
    reader = _Reader(data)
    kind = reader.byte()
    if kind == "B":
        return Begin(reader.unpack(_UINT64), reader.unpack(_INT64), reader.unpack(_UINT32))
    if kind == "C":
        return Commit(
            reader.unpack(_INT8),
            reader.unpack(_UINT64),
            reader.unpack(_UINT64),
            reader.unpack(_INT64),
        )
    if kind == "O":
        return Origin(reader.unpack(_UINT64), reader.string())
    if kind == "R":
        return _relation(reader)
    if kind == "Y":
        return TypeInfo(reader.unpack(_UINT32), reader.string(), reader.string())
    if kind == "I":
        relation_id = reader.unpack(_UINT32)
        _expect(reader, "N")
        return Insert(relation_id, reader.tuple_data())
    if kind == "U":
        return _update(reader)
    if kind == "D":
        relation_id = reader.unpack(_UINT32)
        old_kind = reader.byte()
        if old_kind not in ("K", "O"):
            raise DecodeError(f"a pgoutput Delete has {old_kind!r} where K or O belongs")
        return Delete(relation_id, old_kind, reader.tuple_data())
    if kind == "T":
        count = reader.unpack(_INT32)
        options = reader.unpack(_INT8)
        return Truncate(options, tuple(reader.unpack(_UINT32) for _ in range(count)))
    if kind == "M":
        flags = reader.unpack(_INT8)
        lsn = reader.unpack(_UINT64)
        prefix = reader.string()
        content = reader.take(reader.unpack(_INT32))
        return Message(bool(flags & 1), lsn, prefix, content)
    raise DecodeError(f"unknown pgoutput message type {kind!r}")


def _relation(reader: _Reader) -> Relation:
    relation_id = reader.unpack(_UINT32)
    namespace = reader.string()
    name = reader.string()
    identity = reader.byte()
    columns = []
    for _ in range(reader.unpack(_INT16)):
        flags = reader.unpack(_INT8)
        column = reader.string()
        columns.append(
            RelationColumn(column, reader.unpack(_UINT32), reader.unpack(_INT32), bool(flags & 1))
        )
    return Relation(relation_id, namespace, name, identity, tuple(columns))


def _update(reader: _Reader) -> Update:
    relation_id = reader.unpack(_UINT32)
    kind = reader.byte()
    old: tuple[Column, ...] | None = None
    old_kind: str | None = None
    if kind in ("K", "O"):
        old_kind, old = kind, reader.tuple_data()
        kind = reader.byte()
    if kind != "N":
        raise DecodeError(f"a pgoutput Update has {kind!r} where N belongs")
    return Update(relation_id, old, old_kind, reader.tuple_data())


def _expect(reader: _Reader, wanted: str) -> None:
    found = reader.byte()
    if found != wanted:
        raise DecodeError(f"a pgoutput message has {found!r} where {wanted!r} belongs")


class Relations:
    """The latest Relation message of each relation id."""

    def __init__(self) -> None:
        self._by_id: dict[int, Relation] = {}

    def add(self, relation: Relation) -> None:
        self._by_id[relation.relation_id] = relation

    def get(self, relation_id: int) -> Relation:
        try:
            return self._by_id[relation_id]
        except KeyError:
            raise DecodeError(
                f"a change names relation {relation_id}, which no Relation message described"
            ) from None


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: two hexadecimal halves, 'X/Y'."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The number of an LSN written 'X/Y'; ValueError when the text is not one."""
    high, slash, low = text.partition("/")
    if (
        not slash
        or not 1 <= len(high) <= 8
        or not 1 <= len(low) <= 8
        or not all(c in "0123456789abcdefABCDEF" for c in high + low)
    ):
        raise ValueError(f"{text[:40]!r} is not an LSN (X/Y, two hexadecimal numbers)")
    return (int(high, 16) << 32) | int(low, 16)
