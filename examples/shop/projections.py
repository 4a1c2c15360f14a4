"""The shop's read models: orders, customer dashboards, daily sales and the product catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from projectionist import ApplyContext, Projection

from .messages import (
    Line,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    ProductRegistered,
    ProductRestocked,
)


def timestamp(ctx: ApplyContext) -> str:
    return datetime.fromtimestamp(ctx.recorded_at, UTC).isoformat().replace("+00:00", "Z")


def day(ctx: ApplyContext) -> str:
    return datetime.fromtimestamp(ctx.recorded_at, UTC).date().isoformat()


# Orders: one document per order, found by customer and status.

# Keyed by order, so its four partitions (by the order's stream) never write one document
# twice: projector processes share them (version 2 brought the partitions in).
order_summary = Projection("order_summary", version=2, partitions=4)
orders = order_summary.documents(
    "orders", indexes={"customer_id": str, "status": str, "placed_at": str}
)


@order_summary.on(OrderPlaced)
def _order_placed(event: OrderPlaced, ctx: ApplyContext) -> None:
    now = timestamp(ctx)
    ctx[orders].put(event.order_id, {
        "order_id": event.order_id,
        "customer_id": event.customer_id,
        "status": "placed",
        "total_cents": event.total_cents,
        "lines": [line.model_dump() for line in event.lines],
        "placed_at": now,
        "updated_at": now,
    })


@order_summary.on(OrderPaid, OrderShipped, OrderCancelled)
def _order_moved(event: OrderPaid | OrderShipped | OrderCancelled, ctx: ApplyContext) -> None:
    status = {OrderPaid: "paid", OrderShipped: "shipped", OrderCancelled: "cancelled"}
    doc = ctx[orders].get(event.order_id)
    if doc is None:
        return
    doc["status"] = status[type(event)]
    doc["updated_at"] = timestamp(ctx)
    ctx[orders].put(event.order_id, doc)


# Customer dashboards: counters per customer.

customer_dashboard = Projection("customer_dashboard", version=1)
customers = customer_dashboard.documents("customers")


def _customer(ctx: ApplyContext, customer_id: str) -> dict[str, Any]:
    return ctx[customers].get(customer_id) or {
        "customer_id": customer_id, "orders": 0, "open_orders": 0, "spent_cents": 0,
        "last_order_at": None,
    }


@customer_dashboard.on(OrderPlaced)
def _dashboard_placed(event: OrderPlaced, ctx: ApplyContext) -> None:
    doc = _customer(ctx, event.customer_id)
    doc["orders"] += 1
    doc["open_orders"] += 1
    doc["last_order_at"] = timestamp(ctx)
    ctx[customers].put(event.customer_id, doc)


@customer_dashboard.on(OrderPaid)
def _dashboard_paid(event: OrderPaid, ctx: ApplyContext) -> None:
    doc = _customer(ctx, event.customer_id)
    doc["spent_cents"] += event.amount_cents
    ctx[customers].put(event.customer_id, doc)


@customer_dashboard.on(OrderShipped)
def _dashboard_shipped(event: OrderShipped, ctx: ApplyContext) -> None:
    doc = _customer(ctx, event.customer_id)
    doc["open_orders"] -= 1
    ctx[customers].put(event.customer_id, doc)


@customer_dashboard.on(OrderCancelled)
def _dashboard_cancelled(event: OrderCancelled, ctx: ApplyContext) -> None:
    doc = _customer(ctx, event.customer_id)
    doc["open_orders"] -= 1
    doc["spent_cents"] -= event.refunded_cents
    ctx[customers].put(event.customer_id, doc)


# Daily sales: a SQL table, written with SQL.

daily_sales = Projection("daily_sales", version=1)
sales_days = daily_sales.table(
    "sales_days",
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("orders", sa.BigInteger, nullable=False),
    sa.Column("revenue_cents", sa.BigInteger, nullable=False),
    sa.Column("cancellations", sa.BigInteger, nullable=False),
)


def _add_to_day(ctx: ApplyContext, *, orders: int = 0, revenue_cents: int = 0,
                cancellations: int = 0) -> None:
    # Folded per day in memory, written once per batch: replays stay fast.
    ctx.increment(sales_days, {"day": day(ctx)}, orders=orders, revenue_cents=revenue_cents,
                  cancellations=cancellations)


@daily_sales.on(OrderPlaced)
def _sales_placed(event: OrderPlaced, ctx: ApplyContext) -> None:
    _add_to_day(ctx, orders=1)


@daily_sales.on(OrderPaid)
def _sales_paid(event: OrderPaid, ctx: ApplyContext) -> None:
    _add_to_day(ctx, revenue_cents=event.amount_cents)


@daily_sales.on(OrderCancelled)
def _sales_cancelled(event: OrderCancelled, ctx: ApplyContext) -> None:
    _add_to_day(ctx, revenue_cents=-event.refunded_cents, cancellations=1)


# Product catalog: what can be bought and what sold.

product_catalog = Projection("product_catalog", version=1)
catalog = product_catalog.table(
    "catalog",
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("price_cents", sa.BigInteger, nullable=False),
    sa.Column("on_hand", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("sold", sa.BigInteger, nullable=False),
)


def _adjust(ctx: ApplyContext, lines: list[Line], **signs: int) -> None:
    for line in lines:
        ctx.increment(catalog, {"sku": line.sku},
                      **{column: sign * line.quantity for column, sign in signs.items()})


@product_catalog.on(ProductRegistered)
def _catalog_registered(event: ProductRegistered, ctx: ApplyContext) -> None:
    ctx.connection.execute(sa.insert(ctx[catalog]).values(
        sku=event.sku, name=event.name, price_cents=event.price_cents, on_hand=0, reserved=0,
        sold=0,
    ))


@product_catalog.on(ProductRestocked)
def _catalog_restocked(event: ProductRestocked, ctx: ApplyContext) -> None:
    ctx.increment(catalog, {"sku": event.sku}, on_hand=event.quantity)


@product_catalog.on(OrderPlaced)
def _catalog_reserved(event: OrderPlaced, ctx: ApplyContext) -> None:
    _adjust(ctx, event.lines, reserved=+1)


@product_catalog.on(OrderPaid)
def _catalog_sold(event: OrderPaid, ctx: ApplyContext) -> None:
    _adjust(ctx, event.lines, sold=+1)


@product_catalog.on(OrderShipped)
def _catalog_shipped(event: OrderShipped, ctx: ApplyContext) -> None:
    _adjust(ctx, event.lines, on_hand=-1, reserved=-1)


@product_catalog.on(OrderCancelled)
def _catalog_cancelled(event: OrderCancelled, ctx: ApplyContext) -> None:
    if event.previous_status == "paid":
        _adjust(ctx, event.lines, reserved=-1, sold=-1)
    else:
        _adjust(ctx, event.lines, reserved=-1)
