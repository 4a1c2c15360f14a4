"""The "orders" workload: its app, and the command sequence every framework is compared on.

Per order index i: place, pay, ship, then deliver (or, for every tenth order, add a note).
Each command loads the order from normalized write tables, checks its rule, and commits its
state change with its one event. One projection keeps `order_summary` and `customer_stats`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from projectionist.app import App
from projectionist.commands.unit_of_work import UnitOfWork
from projectionist.driver import Sql
from projectionist.errors import Refused
from projectionist.messages import Command, Event
from projectionist.projections.context import ApplyContext
from projectionist.projections.definition import Projection

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Cents = Annotated[int, Field(ge=0, le=10**12)]

CUSTOMERS = 500
LINES_PER_ORDER = 3
COMMANDS_PER_ORDER = 4


# Commands and events


class LineIn(BaseModel):
    """One line of an order: what, how many, at what price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Id
    quantity: Annotated[int, Field(gt=0, le=10**6)]
    unit_price_cents: Cents


class PlaceOrder(Command):
    order_id: Id
    customer_id: Id
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=100)]


class PayOrder(Command):
    order_id: Id
    amount_cents: Cents


class ShipOrder(Command):
    order_id: Id


class DeliverOrder(Command):
    order_id: Id


class AddOrderNote(Command):
    order_id: Id
    note: Annotated[str, StringConstraints(max_length=500)]


class OrderPlaced(Event):
    order_id: str
    customer_id: str
    lines: list[LineIn]
    total_cents: int


class OrderPaid(Event):
    order_id: str
    customer_id: str
    amount_cents: int


class OrderShipped(Event):
    order_id: str


class OrderDelivered(Event):
    order_id: str


class OrderNoteAdded(Event):
    order_id: str
    note: str


# The write model: normalized tables

write_model = sa.MetaData()

orders = sa.Table(
    "orders",
    write_model,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
)

order_lines = sa.Table(
    "order_lines",
    write_model,
    sa.Column("order_id", sa.String(64), sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price_cents", sa.BigInteger, nullable=False),
)

order_notes = sa.Table(
    "order_notes",
    write_model,
    sa.Column("note_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(64), sa.ForeignKey("orders.order_id"), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)


def order_stream(order_id: str) -> str:
    """The stream of an order's events."""
    return f"order-{order_id}"


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order as its command handlers load it."""

    customer_id: str
    status: str
    total_cents: int


# The handlers' statements, written once as plain SQL and run on the driver's cursor
# (`uow.sql`): building and running a SQLAlchemy statement costs more than the database's work
# on a point read or a one-row write. Writes whose results go unread use `uow.write`: on
# PostgreSQL they go with the next statement or the commit.
_SELECT_ORDER = Sql("SELECT customer_id, status, total_cents FROM orders WHERE order_id = ?")
_ORDER_TAKEN = Sql("SELECT 1 FROM orders WHERE order_id = ?")
_MOVE_ORDER = Sql("UPDATE orders SET status = ? WHERE order_id = ?")
_INSERT_ORDER = Sql(
    "INSERT INTO orders (order_id, customer_id, status, total_cents) VALUES (?, ?, ?, ?)"
)
_INSERT_LINE = Sql(
    "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_cents)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_NOTE = Sql("INSERT INTO order_notes (order_id, note) VALUES (?, ?)")


def _load(uow: UnitOfWork, order_id: str) -> OrderRow:
    rows = uow.sql(_SELECT_ORDER, (order_id,))
    if not rows:
        raise Refused(f"order {order_id!r} does not exist")
    return OrderRow(*rows[0])


def _move(uow: UnitOfWork, order_id: str, status: str) -> None:
    uow.write(_MOVE_ORDER, (status, order_id))


def register_commands(app: App) -> None:
    """Binds the workload's command handlers to `app`."""

    @app.command(PlaceOrder)
    def place(command: PlaceOrder, uow: UnitOfWork) -> None:
        if uow.sql(_ORDER_TAKEN, (command.order_id,)):
            raise Refused(f"order {command.order_id!r} already exists")
        total = sum(line.quantity * line.unit_price_cents for line in command.lines)
        uow.write(_INSERT_ORDER, (command.order_id, command.customer_id, "placed", total))
        uow.write_many(_INSERT_LINE, [
            (command.order_id, n, line.sku, line.quantity, line.unit_price_cents)
            for n, line in enumerate(command.lines)
        ])
        uow.record(order_stream(command.order_id),
                   OrderPlaced(order_id=command.order_id, customer_id=command.customer_id,
                               lines=command.lines, total_cents=total),
                   expected_version=0)

    @app.command(PayOrder)
    def pay(command: PayOrder, uow: UnitOfWork) -> None:
        order = _load(uow, command.order_id)
        if order.status != "placed":
            raise Refused(f"order {command.order_id!r} is {order.status}, not placed")
        if command.amount_cents != order.total_cents:
            raise Refused(f"order {command.order_id!r} totals {order.total_cents} cents,"
                          f" not {command.amount_cents}")
        _move(uow, command.order_id, "paid")
        uow.record(order_stream(command.order_id),
                   OrderPaid(order_id=command.order_id, customer_id=order.customer_id,
                             amount_cents=command.amount_cents))

    @app.command(ShipOrder)
    def ship(command: ShipOrder, uow: UnitOfWork) -> None:
        order = _load(uow, command.order_id)
        if order.status != "paid":
            raise Refused(f"order {command.order_id!r} is {order.status}, not paid")
        _move(uow, command.order_id, "shipped")
        uow.record(order_stream(command.order_id), OrderShipped(order_id=command.order_id))

    @app.command(DeliverOrder)
    def deliver(command: DeliverOrder, uow: UnitOfWork) -> None:
        order = _load(uow, command.order_id)
        if order.status != "shipped":
            raise Refused(f"order {command.order_id!r} is {order.status}, not shipped")
        _move(uow, command.order_id, "delivered")
        uow.record(order_stream(command.order_id), OrderDelivered(order_id=command.order_id))

    @app.command(AddOrderNote)
    def add_note(command: AddOrderNote, uow: UnitOfWork) -> None:
        _load(uow, command.order_id)
        uow.write(_INSERT_NOTE, (command.order_id, command.note))
        uow.record(order_stream(command.order_id),
                   OrderNoteAdded(order_id=command.order_id, note=command.note))


# The read model

order_views = Projection("order_views", version=1)

order_summary = order_views.table(
    "order_summary",
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("item_count", sa.BigInteger, nullable=False),
    # The time of the order's latest event, in seconds since the epoch (UTC).
    sa.Column("updated_at", sa.Float, nullable=False),
)

customer_stats = order_views.table(
    "customer_stats",
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("orders", sa.BigInteger, nullable=False),
    sa.Column("spent_cents", sa.BigInteger, nullable=False),
)


# Every write is folded per row in memory and written once per batch (put/update/increment),
# so a catch-up costs a few statements per batch rather than one or two per event.


def _set(ctx: ApplyContext, order_id: str, **values: object) -> None:
    ctx.update(order_summary, {"order_id": order_id}, updated_at=ctx.recorded_at, **values)


@order_views.on(OrderPlaced)
def _placed(event: OrderPlaced, ctx: ApplyContext) -> None:
    ctx.put(order_summary, {
        "order_id": event.order_id, "customer_id": event.customer_id, "status": "placed",
        "total_cents": event.total_cents,
        "item_count": sum(line.quantity for line in event.lines),
        "updated_at": ctx.recorded_at,
    })
    ctx.increment(customer_stats, {"customer_id": event.customer_id}, orders=1, spent_cents=0)


@order_views.on(OrderPaid)
def _paid(event: OrderPaid, ctx: ApplyContext) -> None:
    _set(ctx, event.order_id, status="paid")
    ctx.increment(customer_stats, {"customer_id": event.customer_id},
                  spent_cents=event.amount_cents)


@order_views.on(OrderShipped)
def _shipped(event: OrderShipped, ctx: ApplyContext) -> None:
    _set(ctx, event.order_id, status="shipped")


@order_views.on(OrderDelivered)
def _delivered(event: OrderDelivered, ctx: ApplyContext) -> None:
    _set(ctx, event.order_id, status="delivered")


@order_views.on(OrderNoteAdded)
def _noted(event: OrderNoteAdded, ctx: ApplyContext) -> None:
    _set(ctx, event.order_id)


def create_app() -> App:
    """A new App of the orders workload."""
    app = App("orders-bench", write_model=write_model)
    register_commands(app)
    app.projection(order_views)
    return app


# The command sequence, and what the read model must hold after it


def order_id(i: int) -> str:
    """The id of order i: a UUID5 of its URL."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"/orders/{i}"))


def customer_id(i: int) -> str:
    """The customer of order i (500 customers in turn)."""
    return f"cust-{i % CUSTOMERS:03d}"


def lines(i: int) -> list[LineIn]:
    """The three lines of order i."""
    return [
        LineIn(sku=f"SKU-{(7 * i + 3 * k) % 1000:04d}", quantity=1 + (i + k) % 4,
               unit_price_cents=250 + (37 * i + 101 * k) % 9750)
        for k in range(LINES_PER_ORDER)
    ]


def order_commands(i: int) -> list[Command]:
    """The four commands of order i, in order."""
    oid = order_id(i)
    order_lines_ = lines(i)
    amount = sum(line.quantity * line.unit_price_cents for line in order_lines_)
    last: Command = (
        DeliverOrder(order_id=oid) if i % 10 != 9
        else AddOrderNote(order_id=oid, note=f"Customer asked for gift wrapping on order #{i}")
    )
    return [
        PlaceOrder(order_id=oid, customer_id=customer_id(i), lines=order_lines_),
        PayOrder(order_id=oid, amount_cents=amount),
        ShipOrder(order_id=oid),
        last,
    ]


def command_sequence(first_order: int, count: int) -> Iterator[Command]:
    """`count` commands of the sequence, starting with the first command of `first_order`."""
    i = first_order
    while count > 0:
        yield from order_commands(i)[:count]
        count -= COMMANDS_PER_ORDER
        i += 1


@dataclass
class ExpectedReadModel:
    """The rows `order_summary` and `customer_stats` must hold, without `updated_at`."""

    orders: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)
    customers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def apply(self, command: Command) -> None:
        """Plays one command of the sequence as its handler and the projection would."""
        if isinstance(command, PlaceOrder):
            total = sum(line.quantity * line.unit_price_cents for line in command.lines)
            items = sum(line.quantity for line in command.lines)
            self.orders[command.order_id] = (command.customer_id, "placed", total, items)
            count, spent = self.customers.get(command.customer_id, (0, 0))
            self.customers[command.customer_id] = (count + 1, spent)
            return
        if not isinstance(command, PayOrder | ShipOrder | DeliverOrder | AddOrderNote):
            raise TypeError(f"{command.type_name} is not a command of the orders workload")
        customer, status, total, items = self.orders[command.order_id]
        if isinstance(command, PayOrder):
            status = "paid"
            count, spent = self.customers[customer]
            self.customers[customer] = (count, spent + command.amount_cents)
        elif isinstance(command, ShipOrder):
            status = "shipped"
        elif isinstance(command, DeliverOrder):
            status = "delivered"
        self.orders[command.order_id] = (customer, status, total, items)
