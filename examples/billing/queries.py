"""Billing's queries, answered from the ledger."""

from __future__ import annotations

from typing import Any

from projectionist import App, NotFound, ReadContext

from .messages import CustomerBalance, RevenueByCountry
from .projections import country_revenue, customer_balances, ledger

BALANCE_FIELDS = (
    "customer_id", "name", "country", "notes_chars", "invoices", "open_cents", "paid_cents",
)


def register(app: App) -> None:
    """Binds billing's query handlers to `app`."""

    @app.query(CustomerBalance, reads=[ledger])
    def customer_balance(query: CustomerBalance, ctx: ReadContext) -> dict[str, Any]:
        doc = ctx[customer_balances].get(query.customer_id)
        if doc is None or not doc["exists"]:
            raise NotFound(f"there is no customer {query.customer_id!r}")
        return {field: doc[field] for field in BALANCE_FIELDS}

    @app.query(RevenueByCountry, reads=[ledger])
    def revenue_by_country(query: RevenueByCountry, ctx: ReadContext) -> dict[str, Any]:
        countries = sorted((doc for _, doc in ctx[country_revenue]), key=lambda d: d["country"])
        return {"countries": countries}
