"""The shop's queries, served from its read models, and who may ask them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from projectionist import App, Forbidden, NotFound, Principal, ReadContext

from .messages import (
    Catalog,
    CustomerDashboard,
    Dashboard,
    GetOrder,
    ListOrders,
    Order,
    OrderPage,
    ProductCatalog,
    Sales,
    SalesReport,
)
from .projections import (
    catalog,
    customer_dashboard,
    customers,
    daily_sales,
    order_summary,
    orders,
    product_catalog,
    sales_days,
)

CUSTOMER_SCOPE = "customer"


def is_customer(principal: Principal) -> bool:
    """A customer's token: its subject is the customer id."""
    return principal.has(CUSTOMER_SCOPE)


def own_orders_only(principal: Principal, query: ListOrders) -> ListOrders:
    """Customers list their own orders; staff list anyone's."""
    if not is_customer(principal):
        return query
    if query.customer_id is None:
        return query.model_copy(update={"customer_id": principal.subject})
    if query.customer_id != principal.subject:
        raise Forbidden("a customer may list only their own orders")
    return query


def own_dashboard_only(principal: Principal, query: CustomerDashboard) -> None:
    """Customers see their own dashboard only."""
    if is_customer(principal) and query.customer_id != principal.subject:
        raise Forbidden("a customer may see only their own dashboard")


def register(app: App) -> None:
    """Binds the shop's query handlers to `app`."""

    @app.query(GetOrder, reads=[order_summary], result=Order)
    def get_order(query: GetOrder, ctx: ReadContext) -> dict[str, Any]:
        doc = ctx[orders].get(query.order_id)
        if doc is None:
            raise NotFound(f"there is no order {query.order_id!r}")
        if is_customer(ctx.principal) and doc["customer_id"] != ctx.principal.subject:
            raise Forbidden("a customer may see only their own orders")
        return doc

    @app.query(ListOrders, reads=[order_summary], policy=own_orders_only, result=OrderPage)
    def list_orders(query: ListOrders, ctx: ReadContext) -> dict[str, Any]:
        where = {k: v for k, v in (("customer_id", query.customer_id),
                                   ("status", query.status)) if v is not None}
        page = ctx[orders].find(where=where, order_by="placed_at", descending=True,
                                limit=query.limit, after=query.after)
        return {"items": page.items, "next": page.next}

    @app.query(CustomerDashboard, reads=[customer_dashboard], policy=own_dashboard_only,
               result=Dashboard)
    def dashboard(query: CustomerDashboard, ctx: ReadContext) -> dict[str, Any]:
        doc = ctx[customers].get(query.customer_id)
        if doc is None:
            raise NotFound(f"customer {query.customer_id!r} has no orders")
        return doc

    @app.query(SalesReport, reads=[daily_sales], result=Sales)
    def sales_report(query: SalesReport, ctx: ReadContext) -> dict[str, Any]:
        table = ctx[sales_days]
        statement = sa.select(table).order_by(table.c.day)
        if query.day_from:
            statement = statement.where(table.c.day >= query.day_from.isoformat())
        if query.day_to:
            statement = statement.where(table.c.day <= query.day_to.isoformat())
        rows = ctx.connection.execute(statement).mappings()
        return {"days": [dict(row) for row in rows]}

    @app.query(ProductCatalog, reads=[product_catalog], result=Catalog)
    def product_list(query: ProductCatalog, ctx: ReadContext) -> dict[str, Any]:
        table = ctx[catalog]
        statement = sa.select(table).order_by(table.c.sku)
        if query.search:
            pattern = "%" + query.search.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            statement = statement.where(sa.or_(table.c.sku.ilike(pattern, escape="\\"),
                                               table.c.name.ilike(pattern, escape="\\")))
        items = [
            {"sku": r.sku, "name": r.name, "price_cents": r.price_cents,
             "available": r.on_hand - r.reserved, "sold": r.sold}
            for r in ctx.connection.execute(statement)
        ]
        return {"items": items}
