"""The shop's normalized write model and its command handlers."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from projectionist import App, Forbidden, Principal, Refused, UnitOfWork

from .messages import (
    MAX_CENTS,
    CancelOrder,
    Line,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    PayOrder,
    PlaceOrder,
    ProductRegistered,
    ProductRestocked,
    RegisterProduct,
    RestockProduct,
    ShipOrder,
)
from .queries import is_customer

write_model = sa.MetaData()

products = sa.Table(
    "products",
    write_model,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("price_cents", sa.BigInteger, nullable=False),
)

stock = sa.Table(
    "stock",
    write_model,
    sa.Column("sku", sa.String(64), sa.ForeignKey("products.sku"), primary_key=True),
    sa.Column("on_hand", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="stock_reserved_in_range"),
)

orders = sa.Table(
    "orders",
    write_model,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
)

order_lines = sa.Table(
    "order_lines",
    write_model,
    sa.Column("order_id", sa.String(64), sa.ForeignKey("orders.order_id"), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("sku", sa.String(64), sa.ForeignKey("products.sku"), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price_cents", sa.BigInteger, nullable=False),
)


def product_stream(sku: str) -> str:
    return f"product-{sku}"


def order_stream(order_id: str) -> str:
    return f"order-{order_id}"


def orders_for_themselves(principal: Principal, command: PlaceOrder) -> None:
    """Customers place orders for themselves only; staff place anyone's."""
    if is_customer(principal) and command.customer_id != principal.subject:
        raise Forbidden("a customer may place orders only for themselves")


def register(app: App) -> None:
    """Binds the shop's command handlers to `app`."""

    @app.command(RegisterProduct)
    def register_product(command: RegisterProduct, uow: UnitOfWork) -> None:
        db = uow.connection
        if db.execute(sa.select(products.c.sku).where(products.c.sku == command.sku)).first():
            raise Refused(f"product {command.sku!r} is already registered")
        db.execute(sa.insert(products).values(sku=command.sku, name=command.name,
                                              price_cents=command.price_cents))
        db.execute(sa.insert(stock).values(sku=command.sku, on_hand=0, reserved=0))
        uow.record(product_stream(command.sku),
                   ProductRegistered(sku=command.sku, name=command.name,
                                     price_cents=command.price_cents),
                   expected_version=0)

    @app.command(RestockProduct)
    def restock_product(command: RestockProduct, uow: UnitOfWork) -> None:
        changed = uow.connection.execute(
            sa.update(stock).where(stock.c.sku == command.sku)
            .values(on_hand=stock.c.on_hand + command.quantity)
        ).rowcount
        if not changed:
            raise Refused(f"product {command.sku!r} is not registered")
        uow.record(product_stream(command.sku),
                   ProductRestocked(sku=command.sku, quantity=command.quantity))

    @app.command(PlaceOrder, policy=orders_for_themselves)
    def place_order(command: PlaceOrder, uow: UnitOfWork) -> None:
        db = uow.connection
        if db.execute(sa.select(orders.c.order_id)
                      .where(orders.c.order_id == command.order_id)).first():
            raise Refused(f"order {command.order_id!r} already exists")
        wanted = Counter[str]()
        for line in command.lines:
            wanted[line.sku] += line.quantity
        prices = dict(db.execute(
            sa.select(products.c.sku, products.c.price_cents)
            .where(products.c.sku.in_(list(wanted)))
        ).all())
        unknown = [sku for sku in wanted if sku not in prices]
        if unknown:
            raise Refused(f"unknown sku {', '.join(repr(s) for s in unknown)}")
        total = sum(quantity * prices[sku] for sku, quantity in wanted.items())
        if total > MAX_CENTS:
            # An order no payment could cover, and a sum past what the stores hold.
            raise Refused(f"the order total of {total} cents is over the limit of {MAX_CENTS}")
        # Stock rows are locked in sku order everywhere, so concurrent commands cannot deadlock.
        for sku, quantity in sorted(wanted.items()):
            # A conditional update reserves atomically, even with concurrent orders.
            reserved = db.execute(
                sa.update(stock)
                .where(stock.c.sku == sku, stock.c.on_hand - stock.c.reserved >= quantity)
                .values(reserved=stock.c.reserved + quantity)
            ).rowcount
            if not reserved:
                available = db.execute(
                    sa.select(stock.c.on_hand - stock.c.reserved).where(stock.c.sku == sku)
                ).scalar_one()
                raise Refused(f"not enough stock of {sku!r}: {available} available,"
                              f" {quantity} ordered")
        lines = [Line(sku=line.sku, quantity=line.quantity,
                      unit_price_cents=prices[line.sku]) for line in command.lines]
        db.execute(sa.insert(orders).values(order_id=command.order_id,
                                            customer_id=command.customer_id,
                                            status="placed", total_cents=total))
        db.execute(sa.insert(order_lines), [
            {"order_id": command.order_id, "line_no": n, "sku": line.sku,
             "quantity": line.quantity, "unit_price_cents": line.unit_price_cents}
            for n, line in enumerate(lines)
        ])
        uow.record(order_stream(command.order_id),
                   OrderPlaced(order_id=command.order_id, customer_id=command.customer_id,
                               lines=lines, total_cents=total),
                   expected_version=0)

    @app.command(PayOrder)
    def pay_order(command: PayOrder, uow: UnitOfWork) -> None:
        order = _load_order(uow, command.order_id)
        if order.status != "placed":
            raise Refused(f"order {command.order_id!r} is {order.status}, not placed")
        if command.amount_cents != order.total_cents:
            raise Refused(f"order {command.order_id!r} totals {order.total_cents} cents,"
                          f" not {command.amount_cents}")
        _set_status(uow, command.order_id, "paid")
        uow.record(order_stream(command.order_id),
                   OrderPaid(order_id=command.order_id, customer_id=order.customer_id,
                             amount_cents=command.amount_cents,
                             lines=_lines(uow, command.order_id)))

    @app.command(ShipOrder)
    def ship_order(command: ShipOrder, uow: UnitOfWork) -> None:
        order = _load_order(uow, command.order_id)
        if order.status != "paid":
            raise Refused(f"order {command.order_id!r} is {order.status}, not paid")
        lines = _lines(uow, command.order_id)
        for line in sorted(lines, key=lambda line: line.sku):
            uow.connection.execute(
                sa.update(stock).where(stock.c.sku == line.sku).values(
                    on_hand=stock.c.on_hand - line.quantity,
                    reserved=stock.c.reserved - line.quantity,
                )
            )
        _set_status(uow, command.order_id, "shipped")
        uow.record(order_stream(command.order_id),
                   OrderShipped(order_id=command.order_id, customer_id=order.customer_id,
                                lines=lines))

    @app.command(CancelOrder)
    def cancel_order(command: CancelOrder, uow: UnitOfWork) -> None:
        order = _load_order(uow, command.order_id)
        if order.status not in ("placed", "paid"):
            raise Refused(f"order {command.order_id!r} is {order.status} and cannot be"
                          " cancelled")
        lines = _lines(uow, command.order_id)
        for line in sorted(lines, key=lambda line: line.sku):
            uow.connection.execute(
                sa.update(stock).where(stock.c.sku == line.sku)
                .values(reserved=stock.c.reserved - line.quantity)
            )
        _set_status(uow, command.order_id, "cancelled")
        refunded = order.total_cents if order.status == "paid" else 0
        uow.record(order_stream(command.order_id),
                   OrderCancelled(order_id=command.order_id, customer_id=order.customer_id,
                                  reason=command.reason, previous_status=order.status,
                                  refunded_cents=refunded, lines=lines))


def _load_order(uow: UnitOfWork, order_id: str) -> sa.Row[tuple[str, str, int]]:
    # Locked, so that two commands on one order take turns and the second sees the first's
    # status (concurrent pay and cancel would both see `placed` otherwise).
    row = uow.connection.execute(
        sa.select(orders.c.customer_id, orders.c.status, orders.c.total_cents)
        .where(orders.c.order_id == order_id).with_for_update()
    ).first()
    if row is None:
        raise Refused(f"order {order_id!r} does not exist")
    return row


def _lines(uow: UnitOfWork, order_id: str) -> list[Line]:
    rows = uow.connection.execute(
        sa.select(order_lines.c.sku, order_lines.c.quantity, order_lines.c.unit_price_cents)
        .where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_no)
    )
    return [Line(sku=r.sku, quantity=r.quantity, unit_price_cents=r.unit_price_cents)
            for r in rows]


def _set_status(uow: UnitOfWork, order_id: str, status: str) -> None:
    uow.connection.execute(sa.update(orders).where(orders.c.order_id == order_id)
                           .values(status=status))
