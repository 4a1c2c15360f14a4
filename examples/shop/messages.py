"""The shop's commands, events and queries."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from projectionist import Command, Event, Query

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Cents = Annotated[int, Field(ge=0, le=10**12)]
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
    reason: Annotated[str, StringConstraints(max_length=500)]


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


class SalesReport(Query):
    day_from: date | None = None
    day_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SalesReport:
        if self.day_from and self.day_to and self.day_from > self.day_to:
            raise ValueError("day_from must not be after day_to")
        return self


class ProductCatalog(Query):
    search: Annotated[str, StringConstraints(max_length=200)] | None = None
