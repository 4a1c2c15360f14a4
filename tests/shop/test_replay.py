"""Replaying the whole log into an empty read store gives exactly the read model built live."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from projectionist import Command, NotFound, Refused, Runtime
from projectionist_examples.shop import (
    CancelOrder,
    CustomerDashboard,
    GetOrder,
    ListOrders,
    PayOrder,
    PlaceOrder,
    ProductCatalog,
    RegisterProduct,
    RestockProduct,
    SalesReport,
    ShipOrder,
    create_app,
)
from projectionist_examples.shop.write_model import order_lines, orders, stock
from tests.helpers import read_model_rows

SKUS = ["a", "b", "c"]
CUSTOMERS = ["c1", "c2"]

Op = tuple[Any, ...]

# Orders are picked by number: most picks name an order placed earlier, 9 one never placed.
pick = st.integers(0, 9)
register = st.tuples(st.just("register"), st.sampled_from(SKUS), st.integers(0, 900))
restock = st.tuples(st.just("restock"), st.sampled_from(SKUS), st.integers(1, 12))
place = st.tuples(
    st.just("place"), pick, st.sampled_from(CUSTOMERS),
    st.lists(st.tuples(st.sampled_from(["a", "a", "a", "b", "b", "c", "unknown"]),
                       st.integers(1, 3)),
             min_size=1, max_size=2),
)
pay = st.tuples(st.just("pay"), pick, st.sampled_from([True] * 4 + [False]))
ship = st.tuples(st.just("ship"), pick)
cancel = st.tuples(st.just("cancel"), pick)
# Weighted towards orders moving through their life; refusals still come often enough.
KINDS = {"place": place, "pay": pay, "ship": ship, "cancel": cancel, "restock": restock,
         "register": register}
ops = st.sampled_from(
    ["place"] * 4 + ["pay"] * 3 + ["ship"] * 2 + ["restock"] * 2 + ["cancel", "register"]
).flatmap(KINDS.__getitem__)


@st.composite
def histories(draw: st.DrawFn) -> list[Op]:
    """A stocked shop (not always every product), then anything."""
    history: list[Op] = [("register", sku, draw(st.integers(0, 900))) for sku in SKUS[:2]]
    history += [("restock", sku, draw(st.integers(10, 30))) for sku in SKUS]
    history += draw(st.lists(ops, min_size=10, max_size=30))
    return history


class Story:
    """Turns ops into commands, remembering the order ids placed so far."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.order_ids: list[str] = []

    def order_id(self, pick: int) -> str:
        if pick == 9 or not self.order_ids:
            return "ghost"
        return self.order_ids[pick % len(self.order_ids)]

    def executed(self, command: Command) -> None:
        if isinstance(command, PlaceOrder) and command.order_id not in self.order_ids:
            self.order_ids.append(command.order_id)

    def command(self, op: Op) -> Command:
        match op:
            case ("register", sku, price):
                return RegisterProduct(sku=sku, name=f"Product {sku}", price_cents=price)
            case ("restock", sku, quantity):
                return RestockProduct(sku=sku, quantity=quantity)
            case ("place", pick, customer_id, lines):
                # A pick of 8 places again under an id already taken.
                order_id = self.order_id(pick) if pick == 8 else f"o{len(self.order_ids) + 1}"
                return PlaceOrder(order_id=order_id, customer_id=customer_id,
                                  lines=[{"sku": sku, "quantity": q} for sku, q in lines])
            case ("pay", pick, exact):
                order_id = self.order_id(pick)
                total = self.total(order_id)
                return PayOrder(order_id=order_id, amount_cents=total if exact else total + 1)
            case ("ship", pick):
                return ShipOrder(order_id=self.order_id(pick))
            case ("cancel", pick):
                return CancelOrder(order_id=self.order_id(pick), reason="replay")
        raise AssertionError(op)

    def total(self, order_id: str) -> int:
        assert self.runtime.store is not None
        with self.runtime.store.read() as connection:
            total = connection.execute(
                sa.select(orders.c.total_cents).where(orders.c.order_id == order_id)).scalar()
        return int(total or 0)


def answers(runtime: Runtime, order_ids: list[str]) -> dict[str, Any]:
    """The data of every query the shop answers, over every id the test can use."""

    def data(query: Any) -> Any:
        try:
            return runtime.ask(query).data
        except NotFound:
            return "not found"

    pages = []
    after = None
    while True:
        page = runtime.ask(ListOrders(limit=2, after=after)).data
        pages.append(page)
        if page["next"] is None:
            break
        after = page["next"]
    return {
        "catalog": data(ProductCatalog()),
        "sales": data(SalesReport()),
        "orders": pages,
        "placed": data(ListOrders(status="placed", limit=100)),
        "orders of c1": data(ListOrders(customer_id="c1", limit=100)),
        "order": {order_id: data(GetOrder(order_id=order_id))
                  for order_id in [*order_ids, "ghost"]},
        "dashboard": {c: data(CustomerDashboard(customer_id=c)) for c in [*CUSTOMERS, "c9"]},
    }


def assert_catalog_agrees_with_the_write_model(runtime: Runtime) -> None:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        held = {r.sku: (r.on_hand, r.reserved) for r in connection.execute(sa.select(stock))}
        lines = connection.execute(
            sa.select(orders.c.status, order_lines.c.sku, order_lines.c.quantity)
            .join(order_lines, orders.c.order_id == order_lines.c.order_id)
        ).all()
    sold = Counter[str]()
    for status, sku, quantity in lines:
        if status in ("paid", "shipped"):
            sold[sku] += quantity
    catalog = {i["sku"]: i for i in runtime.ask(ProductCatalog()).data["items"]}
    assert set(catalog) == set(held)
    for sku, (on_hand, reserved) in held.items():
        assert catalog[sku]["available"] == on_hand - reserved
        assert catalog[sku]["sold"] == sold[sku]


# Shrinking a failure replays many histories: give it time, and skip the explain phase.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
@settings(max_examples=12, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(history=histories(), replay_batch=st.sampled_from([1, 3, 1000]))
def test_replaying_the_log_into_an_empty_read_store_rebuilds_the_same_read_model(
    backend_name: str, make_store_url: Callable[[str], str], history: list[Op],
    replay_batch: int,
) -> None:
    write, live_read, replay_read = (make_store_url(backend_name) for _ in range(3))
    live = Runtime(create_app(), store=write, read_store=live_read)
    replay = None
    try:
        live.install()
        refused = 0
        story = Story(live)
        for op in history:
            command = story.command(op)
            try:
                live.execute(command)
                story.executed(command)
            except Refused:
                refused += 1
            live.catch_up()  # applied live, one command at a time
        event(f"refused: {refused * 4 // len(history)}/4 of the commands")
        event(f"events recorded: {min(live.head() // 10, 3) * 10}+")
        assert_catalog_agrees_with_the_write_model(live)

        replay = Runtime(create_app(), store=write, read_store=replay_read,
                         batch_size=replay_batch, roles="projector,query")
        replay.catch_up()
        assert read_model_rows(replay) == read_model_rows(live)
        assert answers(replay, story.order_ids) == answers(live, story.order_ids)
        assert replay.head() == live.head()
    finally:
        live.stop()
        if replay is not None:
            replay.stop()
