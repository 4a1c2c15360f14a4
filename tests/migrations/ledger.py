"""The app whose stores the fixtures hold: deposits to accounts, a SQL view of balances summed
with `increment` (applying an event twice would show), and a document per account.

The fixtures were made by the release before `projectionist_schema` with this same module, so
it uses only what both releases have.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

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

POISON = 13
"""A deposit of this amount fails its document handler: the event is parked (a dead letter)."""


class Deposit(Command):
    account: str
    amount: int


class Deposited(Event):
    account: str
    amount: int


class GetBalance(Query):
    account: str


def create_app() -> App:
    app = App("ledger")
    balances_projection = Projection("balances", version=1)
    balances = balances_projection.table(
        "balances",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("deposits", sa.BigInteger, nullable=False),
    )
    accounts_projection = Projection("accounts", version=1)
    accounts = accounts_projection.documents("accounts")

    @balances_projection.on(Deposited)
    def _sum(event: Deposited, ctx: ApplyContext) -> None:
        ctx.increment(balances, {"account": event.account}, total=event.amount, deposits=1)

    @accounts_projection.on(Deposited)
    def _account(event: Deposited, ctx: ApplyContext) -> None:
        if event.amount == POISON:
            raise ValueError(f"a deposit of {POISON} is refused by this view")
        doc = ctx[accounts].get(event.account) or {"account": event.account, "last": 0}
        doc["last"] = event.amount
        ctx[accounts].put(event.account, doc)

    @app.command(Deposit)
    def _deposit(command: Deposit, uow: UnitOfWork) -> None:
        uow.record(f"account-{command.account}", Deposited(account=command.account,
                                                           amount=command.amount))

    @app.query(GetBalance, reads=[balances_projection, accounts_projection])
    def _balance(query: GetBalance, ctx: ReadContext) -> dict[str, Any]:
        table = ctx[balances]
        row = ctx.connection.execute(
            sa.select(table).where(table.c.account == query.account)).mappings().first()
        return {"total": row["total"] if row else 0, "doc": ctx[accounts].get(query.account)}

    return app


app = create_app()
