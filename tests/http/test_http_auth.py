"""Who may do what over HTTP: tokens, scopes and the shop's customer policy."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from shop_server import PROJECTIONS, SECRET, Api, uid

from projectionist import TokenAuthority

OTHER_SECRET = "another-secret-that-is-long-enough-0123456789ab"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "staff", "scope": "commands:* queries:*", "iat": now, "nbf": now,
            "exp": now + 600, **overrides}


def unauthenticated_headers() -> dict[str, dict[str, str]]:
    now = int(time.time())
    everything = ["commands:*", "queries:*", "admin"]
    return {
        "missing": {},
        "bearer without token": {"Authorization": "Bearer"},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "no scheme": {"Authorization": TokenAuthority([SECRET]).issue(everything)},
        "malformed": {"Authorization": "Bearer not.a.jwt"},
        "garbage": {"Authorization": "Bearer " + "x" * 300},
        "expired": {"Authorization": "Bearer " + TokenAuthority([SECRET]).issue(
            everything, ttl_s=-3600)},
        "other secret": {"Authorization": "Bearer " + TokenAuthority([OTHER_SECRET]).issue(
            everything)},
        "alg none": {"Authorization": "Bearer " + jwt.encode(claims(), None, algorithm="none")},
        "other algorithm": {"Authorization": "Bearer " + jwt.encode(
            claims(), SECRET, algorithm="HS384")},
        "no expiry": {"Authorization": "Bearer " + jwt.encode(
            {k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256")},
        "scope as a list": {"Authorization": "Bearer " + jwt.encode(
            claims(scope=["commands:*", "queries:*"]), SECRET, algorithm="HS256")},
        "no subject": {"Authorization": "Bearer " + jwt.encode(
            {k: v for k, v in claims().items() if k != "sub"}, SECRET, algorithm="HS256")},
        "expiry not a number": {"Authorization": "Bearer " + jwt.encode(
            claims(exp="tomorrow"), SECRET, algorithm="HS256")},
        "not yet valid": {"Authorization": "Bearer " + jwt.encode(
            claims(nbf=now + 3600, exp=now + 7200), SECRET, algorithm="HS256")},
    }


UNAUTHENTICATED = unauthenticated_headers()


@pytest.mark.parametrize("case", sorted(UNAUTHENTICATED))
def test_commands_without_a_valid_token_are_401_and_write_nothing(api: Api, case: str) -> None:
    before = api.server.snapshot()
    response = api.command("RegisterProduct", {"sku": uid("sku"), "name": "n", "price_cents": 1},
                           headers=UNAUTHENTICATED[case])
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "unauthenticated" and body["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.server.snapshot() == before


@pytest.mark.parametrize("case", sorted(UNAUTHENTICATED))
def test_queries_and_projections_without_a_valid_token_are_401(api: Api, case: str) -> None:
    headers = UNAUTHENTICATED[case]
    for response in (api.query("ProductCatalog", headers=headers),
                     api.client.get("/projections", headers=headers)):
        assert response.status_code == 401
        assert set(response.json()) == {"error", "detail"}


def test_401_details_say_why_the_token_was_refused(api: Api) -> None:
    def detail(case: str) -> str:
        return str(api.query("ProductCatalog", headers=UNAUTHENTICATED[case]).json()["detail"])

    assert "Authorization" in detail("missing")
    assert "expired" in detail("expired")
    assert "signature" in detail("other secret")


def test_a_query_token_cannot_send_commands(api: Api) -> None:
    before = api.server.snapshot()
    for scopes in (("queries:*",), ("queries:*", "admin"), ("queries:RegisterProduct",)):
        response = api.command("RegisterProduct",
                               {"sku": uid("sku"), "name": "n", "price_cents": 1},
                               headers=api.headers(*scopes))
        assert response.status_code == 403, scopes
        body = response.json()
        assert body["error"] == "forbidden"
        assert "commands:RegisterProduct" in body["detail"]
    assert api.server.snapshot() == before


def test_a_command_token_cannot_ask_queries(api: Api) -> None:
    for scopes in (("commands:*",), ("commands:*", "admin"), ("commands:ProductCatalog",)):
        response = api.query("ProductCatalog", headers=api.headers(*scopes))
        assert response.status_code == 403, scopes
        assert "queries:ProductCatalog" in response.json()["detail"]


def test_a_command_scope_allows_that_command_only(api: Api) -> None:
    headers = api.headers("commands:RegisterProduct")
    sku = uid("sku")
    registered = api.command("RegisterProduct", {"sku": sku, "name": "n", "price_cents": 5},
                             headers=headers)
    assert registered.status_code == 200, registered.text
    before = api.server.snapshot()
    for name, body in [("PlaceOrder", {"order_id": uid("order"), "customer_id": "c",
                                       "lines": [{"sku": sku, "quantity": 1}]}),
                       ("RestockProduct", {"sku": sku, "quantity": 1})]:
        response = api.command(name, body, headers=headers)
        assert response.status_code == 403, name
        assert f"commands:{name}" in response.json()["detail"]
    assert api.server.snapshot() == before


def test_a_query_scope_allows_that_query_only(api: Api) -> None:
    headers = api.headers("queries:ProductCatalog")
    assert api.query("ProductCatalog", headers=headers).status_code == 200
    assert api.query("SalesReport", headers=headers).status_code == 403


def test_projections_need_admin_or_every_query_scope(api: Api) -> None:
    def status(*scopes: str) -> int:
        return api.client.get("/projections", headers=api.headers(*scopes)).status_code

    assert status("admin") == 200
    assert status("queries:*") == 200
    assert status("commands:*") == 403
    assert status("queries:GetOrder") == 403
    assert status("customer", "queries:GetOrder") == 403


def test_projections_list_the_four_shop_projections(api: Api) -> None:
    response = api.client.get("/projections", headers=api.headers("admin"))
    serving = [row for row in response.json() if row.get("active", True)]
    assert {row["name"] for row in serving} == PROJECTIONS
    assert len(serving) == len(PROJECTIONS)
    for row in serving:
        assert {"name", "version", "state", "position", "head", "lag_events", "lag_ms",
                "dead_letters"} <= set(row)
        assert row["state"] in {"live", "catching_up", "rebuilding", "stalled", "failed"}


def test_the_dashboard_needs_admin_or_every_query_scope(api: Api) -> None:
    def status(headers: dict[str, str]) -> int:
        return api.client.get("/dashboard", headers=headers).status_code

    assert status({}) == 401
    assert status(api.headers("commands:*")) == 403
    assert status(api.headers("queries:ProductCatalog")) == 403
    assert status(api.headers("admin")) == 200
    assert status(api.headers("queries:*")) == 200


def test_healthz_and_metrics_need_no_token(api: Api) -> None:
    bare = httpx.Client(base_url=api.server.url, timeout=10.0)
    with bare:
        assert bare.get("/healthz").status_code == 200
        assert bare.get("/metrics").status_code == 200


class Customers:
    """Two customers with an order each, and one customer's token."""

    def __init__(self, api: Api) -> None:
        sku = api.product()
        self.me, self.other = uid("me"), uid("other")
        self.my_orders = [api.order(self.me, [(sku, 1)])[0] for _ in range(2)]
        self.other_order, self.position = api.order(self.other, [(sku, 1)])
        self.headers = api.headers("customer", "queries:*", sub=self.me)


@pytest.fixture(scope="module")
def customers(api: Api) -> Customers:
    return Customers(api)


def test_a_customer_reads_their_own_order_and_dashboard(api: Api, customers: Customers) -> None:
    for name, params in [("GetOrder", {"order_id": customers.my_orders[0]}),
                         ("CustomerDashboard", {"customer_id": customers.me})]:
        response = api.query(name, {**params, "min_position": customers.position},
                             headers=customers.headers)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["customer_id"] == customers.me


def test_a_customer_may_not_read_another_customers_order_or_dashboard(
    api: Api, customers: Customers
) -> None:
    for name, params in [("GetOrder", {"order_id": customers.other_order}),
                         ("CustomerDashboard", {"customer_id": customers.other}),
                         ("ListOrders", {"customer_id": customers.other})]:
        response = api.query(name, {**params, "min_position": customers.position},
                             headers=customers.headers)
        assert response.status_code == 403, name
        body = response.json()
        assert body["error"] == "forbidden" and "customer" in body["detail"]


def test_list_orders_without_customer_id_lists_a_customers_own_orders(
    api: Api, customers: Customers
) -> None:
    response = api.query("ListOrders", {"min_position": customers.position, "limit": 100},
                         headers=customers.headers)
    assert response.status_code == 200, response.text
    items = response.json()["data"]["items"]
    assert sorted(order["order_id"] for order in items) == sorted(customers.my_orders)


def test_staff_read_every_customers_orders(api: Api, customers: Customers) -> None:
    order = api.fresh("GetOrder", {"order_id": customers.other_order}, customers.position)
    assert order["customer_id"] == customers.other
    listed = api.fresh("ListOrders", {"limit": 100}, customers.position)["items"]
    assert {customers.other, customers.me} <= {order["customer_id"] for order in listed}


def test_a_customer_token_cannot_send_commands(api: Api, customers: Customers) -> None:
    before = api.server.snapshot()
    response = api.command("CancelOrder", {"order_id": customers.my_orders[0], "reason": "x"},
                           headers=customers.headers)
    assert response.status_code == 403
    assert api.server.snapshot() == before
