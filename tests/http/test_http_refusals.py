"""Business rules over HTTP: a valid command refused by the state is 409, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from shop_server import Api, uid


class Shelf:
    """Products and orders in every state a refusal needs."""

    def __init__(self, api: Api) -> None:
        self.sku = api.product(price_cents=200, stock=10)
        self.scarce = api.product(price_cents=50, stock=2)
        self.unstocked = api.product(stock=0)
        self.customer = uid("customer")
        self.placed, _ = api.order(self.customer, [(self.sku, 1)])
        self.paid, _ = api.order(self.customer, [(self.sku, 2)])
        api.accepted("PayOrder", {"order_id": self.paid, "amount_cents": 400})
        self.shipped, _ = api.order(self.customer, [(self.sku, 1)])
        api.accepted("PayOrder", {"order_id": self.shipped, "amount_cents": 200})
        api.accepted("ShipOrder", {"order_id": self.shipped})
        self.cancelled, _ = api.order(self.customer, [(self.sku, 1)])
        api.accepted("CancelOrder", {"order_id": self.cancelled, "reason": "test"})


@pytest.fixture(scope="module")
def shelf(api: Api) -> Shelf:
    return Shelf(api)


def refusals(shelf: Shelf) -> dict[str, tuple[str, dict[str, Any], str]]:
    """(command, body, what the detail says) for every rule of docs/http.md."""
    missing = "no-such-" + uid("x")
    return {
        "duplicate sku": ("RegisterProduct",
                          {"sku": shelf.sku, "name": "again", "price_cents": 1},
                          "already registered"),
        "restock unknown sku": ("RestockProduct", {"sku": missing, "quantity": 1},
                                "not registered"),
        "order id taken": ("PlaceOrder",
                           {"order_id": shelf.placed, "customer_id": shelf.customer,
                            "lines": [{"sku": shelf.sku, "quantity": 1}]},
                           "already exists"),
        "unknown sku": ("PlaceOrder",
                        {"order_id": uid("order"), "customer_id": shelf.customer,
                         "lines": [{"sku": shelf.sku, "quantity": 1},
                                   {"sku": missing, "quantity": 1}]},
                        missing),
        "not enough stock": ("PlaceOrder",
                             {"order_id": uid("order"), "customer_id": shelf.customer,
                              "lines": [{"sku": shelf.sku, "quantity": 1},
                                        {"sku": shelf.scarce, "quantity": 3}]},
                             "not enough stock"),
        "not enough stock over two lines": ("PlaceOrder",
                                            {"order_id": uid("order"),
                                             "customer_id": shelf.customer,
                                             "lines": [{"sku": shelf.scarce, "quantity": 2},
                                                       {"sku": shelf.scarce, "quantity": 1}]},
                                            "not enough stock"),
        "no stock at all": ("PlaceOrder",
                            {"order_id": uid("order"), "customer_id": shelf.customer,
                             "lines": [{"sku": shelf.unstocked, "quantity": 1}]},
                            "not enough stock"),
        "pay wrong amount": ("PayOrder", {"order_id": shelf.placed, "amount_cents": 199},
                             "200"),
        "pay too much": ("PayOrder", {"order_id": shelf.placed, "amount_cents": 201}, "200"),
        "pay unknown order": ("PayOrder", {"order_id": missing, "amount_cents": 1},
                              "does not exist"),
        "pay twice": ("PayOrder", {"order_id": shelf.paid, "amount_cents": 400}, "paid"),
        "pay cancelled order": ("PayOrder", {"order_id": shelf.cancelled, "amount_cents": 200},
                                "cancelled"),
        "ship unpaid order": ("ShipOrder", {"order_id": shelf.placed}, "not paid"),
        "ship twice": ("ShipOrder", {"order_id": shelf.shipped}, "shipped"),
        "ship cancelled order": ("ShipOrder", {"order_id": shelf.cancelled}, "cancelled"),
        "ship unknown order": ("ShipOrder", {"order_id": missing}, "does not exist"),
        "cancel shipped order": ("CancelOrder", {"order_id": shelf.shipped, "reason": "late"},
                                 "shipped"),
        "cancel twice": ("CancelOrder", {"order_id": shelf.cancelled, "reason": "again"},
                         "cancelled"),
        "cancel unknown order": ("CancelOrder", {"order_id": missing, "reason": "?"},
                                 "does not exist"),
    }


CASES = (
    "duplicate sku", "restock unknown sku", "order id taken", "unknown sku", "not enough stock",
    "not enough stock over two lines", "no stock at all", "pay wrong amount", "pay too much",
    "pay unknown order", "pay twice", "pay cancelled order", "ship unpaid order", "ship twice",
    "ship cancelled order", "ship unknown order", "cancel shipped order", "cancel twice",
    "cancel unknown order",
)


def test_every_refusal_is_exercised(shelf: Shelf) -> None:
    assert sorted(refusals(shelf)) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_a_refused_command_is_409_and_writes_nothing(api: Api, shelf: Shelf, case: str) -> None:
    name, body, says = refusals(shelf)[case]
    before = api.server.snapshot()
    head = api.head()
    response = api.command(name, body)
    assert response.status_code == 409, response.text
    answer = response.json()
    assert set(answer) == {"error", "detail"}
    assert answer["error"] == "refused"
    assert says in answer["detail"], answer["detail"]
    assert api.server.snapshot() == before
    assert api.head() == head


def test_a_refused_order_reserves_no_stock(api: Api, shelf: Shelf) -> None:
    position = api.head()
    before = api.fresh("ProductCatalog", {"search": shelf.scarce}, position)["items"]
    response = api.command("PlaceOrder", {
        "order_id": uid("order"), "customer_id": shelf.customer,
        "lines": [{"sku": shelf.scarce, "quantity": 2}, {"sku": shelf.scarce, "quantity": 5}],
    })
    assert response.status_code == 409
    assert api.fresh("ProductCatalog", {"search": shelf.scarce}, position)["items"] == before
    assert before[0]["available"] == 2
    _, placed = api.order(shelf.customer, [(shelf.scarce, 2)])
    assert api.fresh("ProductCatalog", {"search": shelf.scarce},
                     placed)["items"][0]["available"] == 0


def test_refusals_leave_orders_as_they_were(api: Api, shelf: Shelf) -> None:
    statuses = {order_id: api.fresh("GetOrder", {"order_id": order_id}, api.head())["status"]
                for order_id in (shelf.placed, shelf.paid, shelf.shipped, shelf.cancelled)}
    assert list(statuses.values()) == ["placed", "paid", "shipped", "cancelled"]
