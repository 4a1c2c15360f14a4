"""Billing's tables, written by plain SQL from outside the app, and captured."""

from __future__ import annotations

import sqlalchemy as sa

from projectionist import App

write_model = sa.MetaData()

customers = sa.Table(
    "customers",
    write_model,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("country", sa.Text, nullable=False),
    sa.Column("notes", sa.Text, nullable=False, server_default=""),
)

invoices = sa.Table(
    "invoices",
    write_model,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    # timestamptz on PostgreSQL; SQLite keeps CURRENT_TIMESTAMP's text.
    sa.Column(
        "issued_at",
        sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite"),
        nullable=False,
        server_default=sa.text("CURRENT_TIMESTAMP"),
    ),
    sa.CheckConstraint("amount_cents > 0", name="invoices_amount_positive"),
    sa.CheckConstraint("status IN ('open', 'paid', 'void')", name="invoices_status_known"),
)

INVOICE_COLUMNS = ("customer_id", "amount_cents", "status")
"""What the read models need of an invoice: `issued_at` changes no answer, so it is not kept."""


def register(app: App) -> None:
    """Captures both tables: every customer column, and the invoice columns the answers use."""
    app.capture(customers)
    app.capture(invoices, columns=INVOICE_COLUMNS)
