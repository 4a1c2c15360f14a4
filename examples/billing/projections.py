"""Billing's read model, built from the row changes of `customers` and `invoices`.

The handlers keep each invoice's and each customer's last known row, so an event is applied
against what the read model holds, whatever order tables change in: an invoice of a customer
not yet (or no longer) there counts for that customer, and moves into a country when the
customer comes. An `insert` of a key already held replaces it (SQLite's INSERT OR REPLACE).
"""

from __future__ import annotations

from typing import Any

from projectionist import ApplyContext, Projection, RowChanged

from .write_model import customers, invoices

ledger = Projection("billing_ledger", version=1)
customer_balances = ledger.documents("customer_balances")
invoice_rows = ledger.documents("invoice_rows")
country_revenue = ledger.documents("country_revenue")


@ledger.on_row(invoices)
def _invoice_changed(change: RowChanged, ctx: ApplyContext) -> None:
    invoice_id = str(change.key["id"])
    before = ctx[invoice_rows].get(invoice_id)
    after = None
    if change.row is not None:
        after = {
            "customer_id": str(change.row["customer_id"]),
            "amount_cents": change.row["amount_cents"],
            "status": change.row["status"],
        }
    _count(ctx, before, -1)
    _count(ctx, after, +1)
    if after is None:
        ctx[invoice_rows].delete(invoice_id)
    else:
        ctx[invoice_rows].put(invoice_id, after)


@ledger.on_row(customers)
def _customer_changed(change: RowChanged, ctx: ApplyContext) -> None:
    customer = _customer(ctx, str(change.key["id"]))
    if customer["exists"]:
        _add_to_country(ctx, customer["country"], -1, -customer["open_cents"],
                        -customer["paid_cents"])
    row = change.row
    if row is None:
        customer.update(exists=False, name=None, country=None, notes_chars=0)
    else:
        customer.update(exists=True, name=row["name"], country=row["country"],
                        notes_chars=len(str(row["notes"])))
        _add_to_country(ctx, row["country"], +1, customer["open_cents"],
                        customer["paid_cents"])
    _save_customer(ctx, customer)


def _count(ctx: ApplyContext, invoice: dict[str, Any] | None, sign: int) -> None:
    """Adds an invoice's share to its customer, and to the customer's country, or takes it off."""
    if invoice is None:
        return
    status, amount = invoice["status"], invoice["amount_cents"]
    open_cents = amount if status == "open" else 0
    paid_cents = amount if status == "paid" else 0
    customer = _customer(ctx, invoice["customer_id"])
    customer["invoices"] += sign * (status != "void")
    customer["open_cents"] += sign * open_cents
    customer["paid_cents"] += sign * paid_cents
    _save_customer(ctx, customer)
    if customer["exists"]:
        _add_to_country(ctx, customer["country"], 0, sign * open_cents, sign * paid_cents)


def _customer(ctx: ApplyContext, customer_id: str) -> dict[str, Any]:
    return ctx[customer_balances].get(customer_id) or {
        "customer_id": customer_id, "exists": False, "name": None, "country": None,
        "notes_chars": 0, "invoices": 0, "open_cents": 0, "paid_cents": 0,
    }


def _save_customer(ctx: ApplyContext, customer: dict[str, Any]) -> None:
    counts = (customer["invoices"], customer["open_cents"], customer["paid_cents"])
    if not customer["exists"] and counts == (0, 0, 0):
        ctx[customer_balances].delete(customer["customer_id"])
    else:
        ctx[customer_balances].put(customer["customer_id"], customer)


def _add_to_country(ctx: ApplyContext, country: str, customers: int, open_cents: int,
                    paid_cents: int) -> None:
    doc = ctx[country_revenue].get(country) or {
        "country": country, "customers": 0, "open_cents": 0, "paid_cents": 0,
    }
    doc["customers"] += customers
    doc["open_cents"] += open_cents
    doc["paid_cents"] += paid_cents
    # A country without customers has no sums left either: it leaves the answer.
    if doc["customers"] == 0:
        ctx[country_revenue].delete(country)
    else:
        ctx[country_revenue].put(country, doc)
