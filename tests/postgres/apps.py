"""Apps for the PostgreSQL process tests.

`audited_shop` is the shop plus an `audit` projection that writes one row per event it applies,
so a test can show that every position was applied exactly once. `Tally` is a one-command app
whose handler can be held open at a gate, to interleave transactions on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from projectionist import (
    App,
    ApplyContext,
    Command,
    Event,
    Projection,
    Query,
    ReadContext,
    UnitOfWork,
)
from projectionist_examples.shop import create_app
from projectionist_examples.shop.messages import (
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    ProductRegistered,
    ProductRestocked,
)

# The audit projection: no key on `position`, so a second application of an event would show
# up as a second row instead of failing the batch.
audit = Projection("audit")
audit_rows = audit.table(
    "audit_applied",
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
)


@audit.on(ProductRegistered, ProductRestocked, OrderPlaced, OrderPaid, OrderShipped,
          OrderCancelled)
def _audited(event: Event, ctx: ApplyContext) -> None:
    ctx.connection.execute(sa.insert(ctx[audit_rows]).values(position=ctx.position,
                                                             type=event.type_name))


class AuditTrail(Query):
    """Every position the audit projection applied, in the order it applied them."""


def _audit_trail(_query: AuditTrail, ctx: ReadContext) -> dict[str, Any]:
    table = ctx[audit_rows]
    positions = ctx.connection.execute(sa.select(table.c.position).order_by(table.c.id))
    return {"positions": list(positions.scalars())}


def create_audited_shop() -> App:
    """The shop, plus the audit projection and its query."""
    app = create_app()
    app.query(AuditTrail, reads=[audit])(_audit_trail)
    return app


audited_shop = create_audited_shop()


# Tally: deposits on accounts, a balance per account in the write model and the read model.


@dataclass
class Gate:
    """Holds a Deposit handler after its write-model change, before its events are recorded."""

    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    transaction_id: int | None = None


class Deposit(Command):
    account: str
    amount: int


class Deposited(Event):
    account: str
    amount: int


class Ledger(Query):
    """Every applied position (in the order applied) and the balance of every account."""


class Tally:
    """A new tally App; `gates[account]` holds the next deposit on that account."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.write_model = sa.MetaData()
        self.balances = sa.Table(
            "balances",
            self.write_model,
            sa.Column("account", sa.String(64), primary_key=True),
            sa.Column("total", sa.BigInteger, nullable=False),
        )
        self.app = App("tally", write_model=self.write_model)
        self.ledger = Projection("ledger")
        self.applied = self.ledger.table(
            "ledger_applied",
            sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("account", sa.String(64), nullable=False),
            sa.Column("amount", sa.BigInteger, nullable=False),
        )
        balances, applied = self.balances, self.applied

        @self.app.command(Deposit)
        def deposit(command: Deposit, uow: UnitOfWork) -> None:
            upsert = postgresql.insert(balances).values(account=command.account,
                                                        total=command.amount)
            uow.connection.execute(upsert.on_conflict_do_update(
                index_elements=[balances.c.account],
                set_={"total": balances.c.total + command.amount},
            ))
            gate = self.gates.pop(command.account, None)
            if gate is not None:
                gate.transaction_id = int(
                    uow.connection.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar()
                )
                gate.entered.set()
                if not gate.release.wait(30):
                    raise TimeoutError("the gate was never opened")
            uow.record(f"account-{command.account}",
                       Deposited(account=command.account, amount=command.amount))

        @self.ledger.on(Deposited)
        def apply(event: Deposited, ctx: ApplyContext) -> None:
            ctx.connection.execute(sa.insert(ctx[applied]).values(
                position=ctx.position, account=event.account, amount=event.amount))

        @self.app.query(Ledger, reads=[self.ledger])
        def ledger(_query: Ledger, ctx: ReadContext) -> dict[str, Any]:
            table = ctx[applied]
            rows = ctx.connection.execute(
                sa.select(table.c.position, table.c.account, table.c.amount).order_by(table.c.id)
            ).all()
            totals: dict[str, int] = {}
            for row in rows:
                totals[row.account] = totals.get(row.account, 0) + row.amount
            return {"positions": [row.position for row in rows], "balances": totals}

    @contextmanager
    def gate(self, account: str) -> Iterator[Gate]:
        """Holds the next deposit on `account` until the block ends (or the gate opens)."""
        gate = self.gates[account] = Gate()
        try:
            yield gate
        finally:
            gate.release.set()
