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


def group(rows: Iterable[tuple[bytes]], relations: Relations) -> Peeked:
    """Whole transactions from peeked rows; a transaction without its Commit is left out."""
    done: list[Transaction] = []
    current: Transaction | None = None
    read_through: int | None = None
    count = 0
    for (data,) in rows:
        count += 1
        message = pgoutput.decode(bytes(data))
        if isinstance(message, pgoutput.Begin):
            current = Transaction(message.xid, message.final_lsn)
            current.committed_at = message.timestamp_us / 1e6 + POSTGRES_EPOCH
        elif isinstance(message, pgoutput.Commit):
            if current is None:
                raise pgoutput.DecodeError(f"a Commit at {message.commit_lsn} without a Begin")
            current.commit_lsn = message.commit_lsn
            current.end_lsn = message.end_lsn
            done.append(current)
            read_through = message.end_lsn
            current = None
        elif isinstance(message, Relation):
            relations.add(message)
        elif isinstance(message, Truncate):
            if current is not None:
                current.changes.extend(
                    Change(relations.get(rid), message) for rid in message.relation_ids
                )
        elif isinstance(message, Insert | Update | Delete):
            if current is None:
                raise pgoutput.DecodeError("a row change outside a transaction")
            current.changes.append(Change(relations.get(message.relation_id), message))
        elif isinstance(message, pgoutput.Message) and current is None:
            read_through = max(read_through or 0, message.lsn)
    return Peeked(done, read_through, count)
