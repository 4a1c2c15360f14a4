"""The reference application: a shop with a normalized write model and four read models."""

from __future__ import annotations

from projectionist import App

from . import queries, write_model
from .messages import (
    CancelOrder,
    CustomerDashboard,
    GetOrder,
    ListOrders,
    OrderLineIn,
    PayOrder,
    PlaceOrder,
    ProductCatalog,
    RegisterProduct,
    RestockProduct,
    SalesReport,
    ShipOrder,
)


def create_app() -> App:
    """A new shop App."""
    app = App("shop", write_model=write_model.write_model)
    write_model.register(app)
    queries.register(app)
    return app


app = create_app()

__all__ = [
    "CancelOrder",
    "CustomerDashboard",
    "GetOrder",
    "ListOrders",
    "OrderLineIn",
    "PayOrder",
    "PlaceOrder",
    "ProductCatalog",
    "RegisterProduct",
    "RestockProduct",
    "SalesReport",
    "ShipOrder",
    "app",
    "create_app",
]
