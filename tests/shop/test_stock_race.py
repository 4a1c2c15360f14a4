"""Many concurrent orders for the last units: never oversold, refusals are clean 409s."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import Refused, Runtime
from projectionist_examples.shop import (
    CancelOrder,
    PayOrder,
    PlaceOrder,
    ProductCatalog,
    RegisterProduct,
    RestockProduct,
    create_app,
)
from projectionist_examples.shop.write_model import order_lines, orders, stock

PROCESSES = 4
THREADS = 16
ORDERS_PER_THREAD = 4
STOCK = {"hot": 20, "warm": 12}
PRICES = {"hot": 100, "warm": 300}


def lines_of(thread: int, n: int) -> list[dict[str, Any]]:
    """Mostly one unit of `hot`; some orders want both products, listed in either order."""
    kind = (thread + n) % 4
    if kind == 0:
        return [{"sku": "hot", "quantity": 2}]
    if kind == 1:
        return [{"sku": "hot", "quantity": 1}, {"sku": "warm", "quantity": 1}]
    if kind == 2:
        return [{"sku": "warm", "quantity": 2}, {"sku": "hot", "quantity": 1}]
    return [{"sku": "hot", "quantity": 1}]


def write_model(runtime: Runtime) -> tuple[dict[str, tuple[int, int]], list[Any]]:
    """Stock (on hand, reserved) by sku, and every order line with its order's status."""
    assert runtime.store is not None
    with runtime.store.read() as connection:
        stock_rows = {r.sku: (int(r.on_hand), int(r.reserved))
                      for r in connection.execute(sa.select(stock))}
        lines = connection.execute(
            sa.select(orders.c.status, order_lines.c.sku, order_lines.c.quantity)
            .join(order_lines, orders.c.order_id == order_lines.c.order_id)
        ).all()
    return stock_rows, lines


@pytest.fixture
def processes(shop_runtime: Runtime, store_urls: tuple[str, str]) -> Iterator[list[Runtime]]:
    """Four command sides on the same stores, as four server processes would be: their
    commands run in concurrent transactions, not in one process's group commit."""
    others = [Runtime(create_app(), store=store_urls[0], read_store=store_urls[1],
                      roles="command") for _ in range(PROCESSES - 1)]
    yield [shop_runtime, *others]
    for runtime in others:
        runtime.stop()


def test_concurrent_orders_for_the_last_units_never_oversell(
    shop_runtime: Runtime, processes: list[Runtime]
) -> None:
    for sku, quantity in STOCK.items():
        shop_runtime.execute(RegisterProduct(sku=sku, name=sku, price_cents=PRICES[sku]))
        shop_runtime.execute(RestockProduct(sku=sku, quantity=quantity))

    placed: list[str] = []
    refusals: list[Refused] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def customer(thread: int) -> None:
        runtime = processes[thread % PROCESSES]
        start.wait()
        for n in range(ORDERS_PER_THREAD):
            order_id = f"t{thread}-o{n}"
            lines = lines_of(thread, n)
            try:
                runtime.execute(PlaceOrder(order_id=order_id, customer_id=f"c{thread}",
                                                lines=lines))
                with lock:
                    placed.append(order_id)
                if n % 2 == 0:
                    total = sum(line["quantity"] * PRICES[line["sku"]] for line in lines)
                    runtime.execute(PayOrder(order_id=order_id, amount_cents=total))
                if n == 1:
                    # Released units go back to the others.
                    runtime.execute(CancelOrder(order_id=order_id, reason="changed mind"))
            except Refused as refusal:
                with lock:
                    refusals.append(refusal)
            except BaseException as error:
                with lock:
                    unexpected.append(error)

    threads = [threading.Thread(target=customer, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert unexpected == []
    assert all(r.status == 409 and "not enough stock" in r.detail for r in refusals), [
        r.detail for r in refusals if "not enough stock" not in r.detail
    ]
    demanded = Counter[str]()
    for t in range(THREADS):
        for n in range(ORDERS_PER_THREAD):
            for line in lines_of(t, n):
                demanded[line["sku"]] += line["quantity"]
    assert all(demanded[sku] > STOCK[sku] for sku in STOCK)  # the race is real
    assert refusals and placed

    stock_rows, lines = write_model(shop_runtime)
    reserved = Counter[str]()
    sold = Counter[str]()
    for status, sku, quantity in lines:
        if status in ("placed", "paid"):
            reserved[sku] += quantity
        if status == "paid":
            sold[sku] += quantity
    for sku, on_hand in STOCK.items():
        assert stock_rows[sku] == (on_hand, reserved[sku])
        assert 0 <= reserved[sku] <= on_hand

    shop_runtime.catch_up()
    catalog = {i["sku"]: i for i in shop_runtime.ask(ProductCatalog()).data["items"]}
    for sku, (on_hand, held) in stock_rows.items():
        assert catalog[sku]["available"] == on_hand - held
        assert catalog[sku]["sold"] == sold[sku]
