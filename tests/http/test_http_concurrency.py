"""Commands sent at the same time: no overselling, one winner per id, one answer per key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from shop_server import Api, uid

CALLERS = 12


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_concurrent_orders_never_sell_more_than_the_stock(api: Api) -> None:
    sku = api.product(stock=5)
    customer = uid("customer")

    def place(order_id: str) -> Callable[[], httpx.Response]:
        return lambda: api.command("PlaceOrder", {
            "order_id": order_id, "customer_id": customer,
            "lines": [{"sku": sku, "quantity": 1}],
        })

    responses = at_once([place(uid("order")) for _ in range(CALLERS)])
    assert Counter(r.status_code for r in responses) == {200: 5, 409: CALLERS - 5}
    position = max(r.json()["position"] for r in responses if r.status_code == 200)
    item = api.fresh("ProductCatalog", {"search": sku}, position)["items"][0]
    assert item["available"] == 0
    assert [row for row in api.server.rows("stock") if row[0] == sku] == [(sku, 5, 5)]
    listed = api.fresh("ListOrders", {"customer_id": customer}, position)["items"]
    assert len(listed) == 5


def test_concurrent_orders_with_one_id_have_one_winner(api: Api) -> None:
    sku = api.product(stock=100)
    order_id = uid("order")
    responses = at_once([
        lambda: api.command("PlaceOrder", {"order_id": order_id, "customer_id": uid("c"),
                                           "lines": [{"sku": sku, "quantity": 1}]})
        for _ in range(CALLERS)
    ])
    assert Counter(r.status_code for r in responses) == {200: 1, 409: CALLERS - 1}
    assert [row for row in api.server.rows("stock") if row[0] == sku] == [(sku, 100, 1)]


def test_concurrent_retries_with_one_key_get_one_answer(api: Api) -> None:
    sku = api.product(stock=0)
    key = uid("key")
    events = api.server.event_count()
    responses = at_once([
        lambda: api.command("RestockProduct", {"sku": sku, "quantity": 4}, key=key)
        for _ in range(CALLERS)
    ])
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert api.server.event_count() == events + 1
    assert [row for row in api.server.rows("stock") if row[0] == sku] == [(sku, 4, 0)]
