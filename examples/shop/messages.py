"""The shop's commands, events, queries and the results of its queries."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from projectionist import Command, Event, Query

# Ids, names and searches are one line of text (no control character but tab); free text may
# hold any character but NUL, which PostgreSQL cannot store. A refusal names the field.
PRINTABLE = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
MAX_CENTS = 10**12
Cents = Annotated[int, Field(ge=0, le=MAX_CENTS)]
Quantity = Annotated[int, Field(gt=0, le=10**6)]
Status = Literal["placed", "paid", "shipped", "cancelled"]


class OrderLineIn(BaseModel):
    """One line of an order being placed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Id
    quantity: Quantity


# Commands


class RegisterProduct(Command):
    sku: Id
    name: Name
    price_cents: Cents


class RestockProduct(Command):
    sku: Id
    quantity: Quantity


class PlaceOrder(Command):
    order_id: Id
    customer_id: Id
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=100)]


class PayOrder(Command):
    order_id: Id
    amount_cents: Cents


class ShipOrder(Command):
    order_id: Id


class CancelOrder(Command):
    order_id: Id
    reason: Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)]


# Events


class Line(BaseModel):
    """One line of a placed order, at the price it was placed at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str
    quantity: int
    unit_price_cents: int


class ProductRegistered(Event):
    sku: str
    name: str
    price_cents: int


class ProductRestocked(Event):
    sku: str
    quantity: int


class OrderPlaced(Event):
    order_id: str
    customer_id: str
    lines: list[Line]
    total_cents: int


class OrderPaid(Event):
    order_id: str
    customer_id: str
    amount_cents: int
    lines: list[Line]


class OrderShipped(Event):
    order_id: str
    customer_id: str
    lines: list[Line]


class OrderCancelled(Event):
    order_id: str
    customer_id: str
    reason: str
    previous_status: str
    refunded_cents: int
    lines: list[Line]


# Queries


class GetOrder(Query):
    order_id: Id


class ListOrders(Query):
    customer_id: Id | None = None
    status: Status | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    after: Annotated[str, StringConstraints(max_length=512)] | None = None


class CustomerDashboard(Query):
    customer_id: Id


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: object) -> object:
    # Pydantic alone would also read numbers, and strings of numbers, as Unix times.
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        return value
    raise ValueError("expected an ISO date, like 2024-05-31")


Day = Annotated[date, BeforeValidator(_iso_day)]


class SalesReport(Query):
    day_from: Day | None = None
    day_to: Day | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SalesReport:
        if self.day_from and self.day_to and self.day_from > self.day_to:
            raise ValueError("day_from must not be after day_to")
        return self


class ProductCatalog(Query):
    search: Annotated[str, StringConstraints(max_length=200, pattern=PRINTABLE)] | None = None


# Query results: what each query's `data` holds (the OpenAPI document states them)


class OrderLine(BaseModel):
    """One line of an order, at the price it was placed at."""

    sku: str
    quantity: int
    unit_price_cents: int


class Order(BaseModel):
    """An order as the orders read model holds it (GetOrder; the items of ListOrders)."""

    order_id: str
    customer_id: str
    status: Status
    total_cents: int
    lines: list[OrderLine]
    placed_at: str
    updated_at: str


class OrderPage(BaseModel):
    """A page of orders, newest first; `next` is the cursor of the next page (None: no more)."""

    items: list[Order]
    next: str | None


class Dashboard(BaseModel):
    """A customer's counters."""

    customer_id: str
    orders: int
    open_orders: int
    spent_cents: int
    last_order_at: str | None


class SalesDay(BaseModel):
    """One day of sales."""

    day: str
    orders: int
    revenue_cents: int
    cancellations: int


class Sales(BaseModel):
    """Days of sales, oldest first."""

    days: list[SalesDay]


class CatalogItem(BaseModel):
    """A product: its price, how many can be bought now, and how many were sold."""

    sku: str
    name: str
    price_cents: int
    available: int
    sold: int


class Catalog(BaseModel):
    """Products in SKU order."""

    items: list[CatalogItem]
