"""The shop under concurrent load, and the check that its read models agree with its write
model and its log."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from projectionist import Refused, Runtime, StoreUnavailable
from projectionist_examples.shop import (
    CancelOrder,
    OrderLineIn,
    PayOrder,
    PlaceOrder,
    RegisterProduct,
    RestockProduct,
    ShipOrder,
)

SKUS = [f"sku-{n}" for n in range(6)]
CUSTOMERS = [f"customer-{n}" for n in range(5)]
PRICE = {sku: 100 * (n + 1) for n, sku in enumerate(SKUS)}

Ask = Callable[[str, dict[str, Any]], Any]
"""Answers a shop query (type name, parameters) with its `data`."""


def register_products(runtime: Runtime) -> None:
    for sku in SKUS:
        runtime.execute(RegisterProduct(sku=sku, name=f"Product {sku}", price_cents=PRICE[sku]))
        runtime.execute(RestockProduct(sku=sku, quantity=20))


def run_workload(runtime: Runtime, writer: str, commands: int, seed: int) -> Counter[str]:
    """Random shop commands; pay, ship and cancel pick any writer's orders, so writers race
    on the same orders and stock rows. Returns outcomes by command type."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    engine = runtime.store.engine if runtime.store is not None else None
    assert engine is not None
    placed = 0
    for _ in range(commands):
        roll = rng.random()
        command: Any
        if roll < 0.15:
            command = RestockProduct(sku=rng.choice(SKUS), quantity=rng.randint(1, 8))
        elif roll < 0.5:
            placed += 1
            lines = [OrderLineIn(sku=sku, quantity=rng.randint(1, 3))
                     for sku in rng.sample(SKUS, rng.randint(1, 3))]
            command = PlaceOrder(order_id=f"{writer}-{placed}",
                                 customer_id=rng.choice(CUSTOMERS), lines=lines)
        else:
            status = "placed" if roll < 0.75 else rng.choice(["placed", "paid"])
            order = pick_order(engine, status, rng)
            if order is None:
                continue
            order_id, total = order
            if roll < 0.75:
                command = PayOrder(order_id=order_id, amount_cents=total)
            elif roll < 0.9 and status == "paid":
                command = ShipOrder(order_id=order_id)
            else:
                command = CancelOrder(order_id=order_id, reason=f"by {writer}")
        try:
            runtime.execute(command)
            outcomes[f"{command.type_name}:ok"] += 1
        except Refused:
            outcomes[f"{command.type_name}:refused"] += 1
        except StoreUnavailable as error:  # nothing was written; the test reports it
            outcomes[f"{command.type_name}:unavailable: {error.detail}"] += 1
    return outcomes


def pick_order(engine: sa.Engine, status: str, rng: random.Random) -> tuple[str, int] | None:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT order_id, total_cents FROM orders WHERE status = :status"
                    " ORDER BY order_id DESC LIMIT 20"),
            {"status": status},
        ).all()
    if not rows:
        return None
    order_id, total = rng.choice(rows)
    return str(order_id), int(total)


def write_model(url: str) -> dict[str, Any]:
    """What the read models must show, computed from the write model's tables."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            stock = {r.sku: (int(r.on_hand), int(r.reserved)) for r in connection.execute(
                sa.text("SELECT sku, on_hand, reserved FROM stock"))}
            orders = {r.order_id: (r.customer_id, r.status, int(r.total_cents))
                      for r in connection.execute(sa.text(
                          "SELECT order_id, customer_id, status, total_cents FROM orders"))}
            sold = Counter[str]()
            for r in connection.execute(sa.text(
                "SELECT l.sku, l.quantity FROM order_lines l JOIN orders o USING (order_id)"
                " WHERE o.status IN ('paid', 'shipped')"
            )):
                sold[r.sku] += int(r.quantity)
            positions = list(connection.execute(sa.text(
                "SELECT position FROM projectionist_events ORDER BY position")).scalars())
    finally:
        engine.dispose()
    return {"stock": stock, "orders": orders, "sold": sold, "positions": positions}


def assert_read_models_match(ask: Ask, url: str, *, audited: bool = False) -> dict[str, Any]:
    """Every read model of the shop agrees with the write model (and, when the audit projection
    runs, every logged position was applied exactly once). Returns the write model."""
    truth = write_model(url)
    catalog = {item["sku"]: item for item in ask("ProductCatalog", {})["items"]}
    assert set(catalog) == set(truth["stock"])
    assert {sku: (item["available"], item["sold"]) for sku, item in catalog.items()} == {
        sku: (on_hand - reserved, truth["sold"][sku])
        for sku, (on_hand, reserved) in truth["stock"].items()
    }, "the catalog (available, sold) differs from the write model"

    listed: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = ask("ListOrders", {"limit": 100, "after": after})
        listed.update({item["order_id"]: item for item in page["items"]})
        after = page["next"]
        if after is None:
            break
    assert {k: (v["customer_id"], v["status"], v["total_cents"]) for k, v in listed.items()} \
        == truth["orders"]

    expected_dashboards: dict[str, dict[str, int]] = {}
    for customer, status, total in truth["orders"].values():
        board = expected_dashboards.setdefault(
            customer, {"orders": 0, "open_orders": 0, "spent_cents": 0})
        board["orders"] += 1
        board["open_orders"] += status in ("placed", "paid")
        board["spent_cents"] += total if status in ("paid", "shipped") else 0
    for customer, expected in expected_dashboards.items():
        board = ask("CustomerDashboard", {"customer_id": customer})
        assert {k: board[k] for k in expected} == expected, customer

    days = ask("SalesReport", {})["days"]
    statuses = [status for _, status, _ in truth["orders"].values()]
    assert sum(d["orders"] for d in days) == len(truth["orders"])
    assert sum(d["cancellations"] for d in days) == statuses.count("cancelled")
    assert sum(d["revenue_cents"] for d in days) == sum(
        total for _, status, total in truth["orders"].values() if status in ("paid", "shipped"))

    if audited:
        applied = ask("AuditTrail", {})["positions"]
        duplicates = [p for p, n in Counter(applied).items() if n > 1]
        assert not duplicates, f"applied more than once: {duplicates[:20]}"
        assert sorted(applied) == truth["positions"], "the audit missed logged positions"
        assert applied == sorted(applied), "events were applied out of log order"
    return truth


def ask_runtime(runtime: Runtime, *, min_position: int | None = None) -> Ask:
    """Asks in process; with `min_position`, every answer waits for the projections to get
    there first."""

    def ask(name: str, params: dict[str, Any]) -> Any:
        query = runtime.app.query_registration(name).query_type.model_validate(
            {k: v for k, v in params.items() if v is not None})
        wait_ms = None if min_position is None else 30_000
        return runtime.ask(query, min_position=min_position, wait_ms=wait_ms).data

    return ask
