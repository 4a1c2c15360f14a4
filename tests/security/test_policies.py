"""Who may read and change what in the shop: scopes and policies, tested as a matrix over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.security.servers import Api, uid

WHO = ("staff", "c1", "c2", "no_query_scope")

# Each row: the query, whose data it asks for (from c1's side), and the status each token gets.
# "own" is c1's data, "other" is c2's; "none" is data that does not exist.
MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GetOrder", "own"): {"staff": 200, "c1": 200, "c2": 403, "no_query_scope": 403},
    ("GetOrder", "other"): {"staff": 200, "c1": 403, "c2": 200, "no_query_scope": 403},
    ("GetOrder", "none"): {"staff": 404, "c1": 404, "c2": 404, "no_query_scope": 403},
    ("ListOrders", "own"): {"staff": 200, "c1": 200, "c2": 403, "no_query_scope": 403},
    ("ListOrders", "other"): {"staff": 200, "c1": 403, "c2": 200, "no_query_scope": 403},
    ("ListOrders", "any"): {"staff": 200, "c1": 200, "c2": 200, "no_query_scope": 403},
    ("CustomerDashboard", "own"): {"staff": 200, "c1": 200, "c2": 403, "no_query_scope": 403},
    ("CustomerDashboard", "other"): {"staff": 200, "c1": 403, "c2": 200, "no_query_scope": 403},
    ("CustomerDashboard", "none"): {"staff": 404, "c1": 403, "c2": 403, "no_query_scope": 403},
    ("SalesReport", "any"): {"staff": 200, "c1": 200, "c2": 200, "no_query_scope": 403},
    ("ProductCatalog", "any"): {"staff": 200, "c1": 200, "c2": 200, "no_query_scope": 403},
}

CASES = [(query, target, who) for (query, target), row in MATRIX.items() for who in WHO]

COMMANDS = ("RegisterProduct", "RestockProduct", "PlaceOrder", "PayOrder", "ShipOrder",
            "CancelOrder")
QUERIES = ("GetOrder", "ListOrders", "CustomerDashboard", "SalesReport", "ProductCatalog")


@dataclass(frozen=True)
class Shop:
    """Two customers with one order each, and a token per kind of caller."""

    c1: str
    c2: str
    sku: str
    order1: str
    order2: str
    position: int
    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def shop(api: Api) -> Shop:
    c1, c2 = uid("c1"), uid("c2")
    sku = api.product(stock=10)
    order1, _ = api.order(c1, sku)
    order2, position = api.order(c2, sku)
    headers = {
        "staff": api.headers("admin", "queries:*", sub="staff"),
        "c1": api.headers("customer", "queries:*", sub=c1),
        "c2": api.headers("customer", "queries:*", sub=c2),
        "no_query_scope": api.headers("admin", "commands:*", sub="ops"),
    }
    return Shop(c1, c2, sku, order1, order2, position, headers)


def params(shop: Shop, query: str, target: str) -> dict[str, Any]:
    customer = {"own": shop.c1, "other": shop.c2, "none": uid("nobody")}.get(target)
    order = {"own": shop.order1, "other": shop.order2, "none": uid("no-order")}.get(target)
    by_query: dict[str, dict[str, Any]] = {
        "GetOrder": {"order_id": order},
        "ListOrders": {"customer_id": customer} if customer else {},
        "CustomerDashboard": {"customer_id": customer},
        "SalesReport": {},
        "ProductCatalog": {"search": shop.sku},
    }
    return by_query[query]


@pytest.mark.parametrize(("query", "target", "who"), CASES,
                         ids=[f"{q}-{t}-{w}" for q, t, w in CASES])
def test_query_policy_matrix(api: Api, shop: Shop, query: str, target: str, who: str) -> None:
    expected = MATRIX[(query, target)][who]
    response = api.query(query, {**params(shop, query, target), "min_position": shop.position,
                                 "wait_ms": 20000}, headers=shop.headers[who])
    assert response.status_code == expected, response.text
    body = response.json()
    if expected == 403:
        assert body["error"] == "forbidden"
        assert ("scope queries:" in body["detail"]) == (who == "no_query_scope"), body
    elif expected == 404:
        assert body["error"] == "not_found"
    else:
        assert body["freshness"]["position"] >= shop.position


def test_a_customer_reads_their_own_order(api: Api, shop: Shop) -> None:
    order = api.fresh("GetOrder", {"order_id": shop.order1}, shop.position,
                      headers=shop.headers["c1"])
    assert (order["order_id"], order["customer_id"]) == (shop.order1, shop.c1)


@pytest.mark.parametrize("who", ["c1", "c2"])
def test_list_orders_without_customer_id_lists_only_the_customers_own(
        api: Api, shop: Shop, who: str) -> None:
    customer = getattr(shop, who)
    listed = api.fresh("ListOrders", {"limit": 100}, shop.position,
                       headers=shop.headers[who])["items"]
    assert [item["customer_id"] for item in listed] == [customer]
    for status in ("placed", "paid"):
        listed = api.fresh("ListOrders", {"status": status, "limit": 100}, shop.position,
                           headers=shop.headers[who])["items"]
        assert {item["customer_id"] for item in listed} <= {customer}


def test_staff_list_every_customers_orders(api: Api, shop: Shop) -> None:
    listed = api.fresh("ListOrders", {"limit": 100}, shop.position,
                       headers=shop.headers["staff"])["items"]
    assert {shop.order1, shop.order2} <= {item["order_id"] for item in listed}


def test_dashboards_show_the_asked_customer(api: Api, shop: Shop) -> None:
    own = api.fresh("CustomerDashboard", {"customer_id": shop.c1}, shop.position,
                    headers=shop.headers["c1"])
    staff = api.fresh("CustomerDashboard", {"customer_id": shop.c2}, shop.position,
                      headers=shop.headers["staff"])
    assert (own["customer_id"], own["orders"]) == (shop.c1, 1)
    assert (staff["customer_id"], staff["orders"]) == (shop.c2, 1)


def test_a_customer_without_orders_gets_404_for_their_own_dashboard(api: Api,
                                                                    shop: Shop) -> None:
    newcomer = uid("c3")
    response = api.query("CustomerDashboard", {"customer_id": newcomer},
                         headers=api.headers("customer", "queries:*", sub=newcomer))
    assert response.status_code == 404, response.text


def valid_bodies(shop: Shop) -> dict[str, dict[str, Any]]:
    """A body per command that the shop would accept from a token allowed to send it."""
    return {
        "RegisterProduct": {"sku": uid("sku"), "name": "n", "price_cents": 1},
        "RestockProduct": {"sku": shop.sku, "quantity": 1},
        "PlaceOrder": {"order_id": uid("order"), "customer_id": shop.c1,
                       "lines": [{"sku": shop.sku, "quantity": 1}]},
        "PayOrder": {"order_id": shop.order1, "amount_cents": 250},
        "ShipOrder": {"order_id": shop.order1},
        "CancelOrder": {"order_id": shop.order1, "reason": "r"},
    }


QUERY_ONLY = {
    "queries:*": ("queries:*",),
    "customer queries:*": ("customer", "queries:*"),
    "every query by name": tuple(f"queries:{name}" for name in QUERIES),
    "admin queries:*": ("admin", "queries:*"),
    "admin": ("admin",),
}


@pytest.mark.parametrize("scopes", sorted(QUERY_ONLY))
def test_a_token_without_command_scopes_gets_403_on_every_command(api: Api, shop: Shop,
                                                                  scopes: str) -> None:
    headers = api.headers(*QUERY_ONLY[scopes], sub=shop.c1)
    before = api.server.event_count()
    for name, body in valid_bodies(shop).items():
        response = api.command(name, body, headers=headers)
        assert response.status_code == 403, (name, response.text)
        assert response.json() == {
            "error": "forbidden",
            "detail": f"the token lacks the scope commands:{name} (or commands:*)"}
    assert api.server.event_count() == before


COMMAND_ONLY = {
    "commands:*": ("commands:*",),
    "every command by name": tuple(f"commands:{name}" for name in COMMANDS),
    "admin commands:*": ("admin", "commands:*"),
    "customer commands:*": ("customer", "commands:*"),
}


@pytest.mark.parametrize("scopes", sorted(COMMAND_ONLY))
def test_a_token_without_query_scopes_gets_403_on_every_query(api: Api, shop: Shop,
                                                              scopes: str) -> None:
    headers = api.headers(*COMMAND_ONLY[scopes], sub=shop.c1)
    for name in QUERIES:
        response = api.query(name, params(shop, name, "own"), headers=headers)
        assert response.status_code == 403, (name, response.text)
        assert response.json() == {
            "error": "forbidden",
            "detail": f"the token lacks the scope queries:{name} (or queries:*)"}


def test_a_scope_for_one_type_allows_that_type_only(api: Api, shop: Shop) -> None:
    headers = api.headers("commands:RestockProduct", "queries:ProductCatalog")
    assert api.command("RestockProduct", {"sku": shop.sku, "quantity": 1},
                       headers=headers).status_code == 200
    assert api.command("RegisterProduct", {"sku": uid("sku"), "name": "n", "price_cents": 1},
                       headers=headers).status_code == 403
    assert api.query("ProductCatalog", headers=headers).status_code == 200
    assert api.query("SalesReport", headers=headers).status_code == 403


def test_a_customer_places_orders_only_for_themselves(api: Api, shop: Shop) -> None:
    headers = api.headers("customer", "commands:PlaceOrder", sub=shop.c1)
    before = api.server.event_count()
    for_other = {"order_id": uid("order"), "customer_id": shop.c2,
                 "lines": [{"sku": shop.sku, "quantity": 1}]}
    response = api.command("PlaceOrder", for_other, headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["detail"] == "a customer may place orders only for themselves"
    assert api.server.event_count() == before

    for_self = {**for_other, "customer_id": shop.c1}
    assert api.command("PlaceOrder", for_self, headers=headers).status_code == 200
    staff = api.headers("commands:PlaceOrder", sub="staff")
    anyone = {**for_other, "order_id": uid("order")}
    assert api.command("PlaceOrder", anyone, headers=staff).status_code == 200
