"""Committed transactions, grouped from the pgoutput messages between a Begin and its Commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import pgoutput
from .pgoutput import Delete, Insert, Relation, Relations, Truncate, Update

POSTGRES_EPOCH = 946_684_800
"""2000-01-01 UTC in Unix seconds: pgoutput's timestamps count from it."""

RowMessage = Insert | Update | Delete | Truncate


@dataclass(frozen=True, slots=True)
class Change:
    """One row change (or a truncate) with the relation as it stood when it was made."""

    relation: Relation
    message: RowMessage


@dataclass(slots=True)
class Transaction:
    """A committed transaction: its id, commit LSN and time, and its row changes in order."""

    xid: int
    commit_lsn: int
    end_lsn: int = 0
    committed_at: float = 0.0
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Peeked:
    """What one peek at the slot held: whole transactions, and where the last one ended."""

    transactions: list[Transaction]
    read_through: int | None
    """The end LSN of the last transaction (or message) read whole; None when nothing was."""
    rows: int


class Grouper:
    """Groups pgoutput messages into whole transactions as they arrive, a batch at a time."""

    def __init__(self, relations: Relations) -> None:
        self.relations = relations
        self.done: list[Transaction] = []
        self.current: Transaction | None = None
        self.read_through: int | None = None
        """The end LSN of the last transaction (or message) read whole; None when nothing was."""
        self.changes = 0
        """Row changes in `done`."""

    def take(self) -> list[Transaction]:
        """The whole transactions grouped since the last take."""
        done, self.done, self.changes = self.done, [], 0
        return done

    def feed(self, data: bytes) -> None:
        """Takes one message: a Commit closes its transaction and adds it to `done`."""
        message = pgoutput.decode(data)
        current = self.current
        if isinstance(message, Insert | Update | Delete):
            if current is None:
                raise pgoutput.DecodeError("a row change outside a transaction")
            current.changes.append(Change(self.relations.get(message.relation_id), message))
        elif isinstance(message, pgoutput.Begin):
            self.current = Transaction(message.xid, message.final_lsn)
            self.current.committed_at = message.timestamp_us / 1e6 + POSTGRES_EPOCH
        elif isinstance(message, pgoutput.Commit):
            if current is None:
                raise pgoutput.DecodeError(f"a Commit at {message.commit_lsn} without a Begin")
            current.commit_lsn = message.commit_lsn
            current.end_lsn = message.end_lsn
            self.done.append(current)
            self.changes += len(current.changes)
            self.read_through = message.end_lsn
            self.current = None
        elif isinstance(message, Relation):
            self.relations.add(message)
        elif isinstance(message, Truncate):
            if current is not None:
                current.changes.extend(
                    Change(self.relations.get(rid), message) for rid in message.relation_ids
                )
        elif isinstance(message, pgoutput.Message) and current is None:
            self.read_through = max(self.read_through or 0, message.lsn)


def group(rows: Iterable[tuple[bytes]], relations: Relations) -> Peeked:
    """Whole transactions from peeked rows; a transaction without its Commit is left out."""
    grouper = Grouper(relations)
    count = 0
    for (data,) in rows:
        count += 1
        grouper.feed(bytes(data))
    return Peeked(grouper.take(), grouper.read_through, count)
