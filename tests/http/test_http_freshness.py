"""Freshness over HTTP: read-your-writes with min_position, and the 503 when it is not reached."""

from __future__ import annotations

from shop_server import Api, uid


def test_a_commands_position_as_min_position_reads_the_write(api: Api) -> None:
    sku = api.product(price_cents=99, stock=0)
    for quantity in (1, 2, 3, 4, 5):
        position = api.accepted("RestockProduct", {"sku": sku, "quantity": quantity})["position"]
        response = api.query("ProductCatalog", {"search": sku, "min_position": position})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["freshness"]["position"] >= position
        assert body["freshness"]["head"] >= position
        assert body["data"]["items"][0]["available"] == sum(range(1, quantity + 1))


def test_an_order_is_readable_at_its_commands_position(api: Api) -> None:
    sku = api.product()
    customer = uid("customer")
    order_id, position = api.order(customer, [(sku, 1)])
    for name, params in [("GetOrder", {"order_id": order_id}),
                         ("ListOrders", {"customer_id": customer}),
                         ("CustomerDashboard", {"customer_id": customer})]:
        response = api.query(name, {**params, "min_position": position, "wait_ms": 5000})
        assert response.status_code == 200, response.text
        assert response.json()["freshness"]["position"] >= position
    order = api.fresh("GetOrder", {"order_id": order_id}, position)
    assert (order["order_id"], order["status"]) == (order_id, "placed")


def test_min_position_zero_answers_at_once(api: Api) -> None:
    response = api.query("ProductCatalog", {"min_position": 0, "wait_ms": 0})
    assert response.status_code == 200, response.text


def test_min_position_beyond_the_head_answers_503_with_retry_after(api: Api) -> None:
    head = api.head()
    response = api.query("ProductCatalog", {"min_position": head + 1_000_000, "wait_ms": 50})
    assert response.status_code == 503
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    body = response.json()
    assert body["error"] == "not_fresh"
    assert str(head + 1_000_000) in body["detail"]
    freshness = body["freshness"]
    assert set(freshness) == {"position", "head", "lag_events", "lag_ms", "dead_letters"}
    assert head <= freshness["head"] < head + 1_000_000
    assert freshness["position"] < head + 1_000_000


def test_wait_ms_above_30000_is_422(api: Api) -> None:
    response = api.query("ProductCatalog", {"min_position": 1, "wait_ms": 30001})
    assert response.status_code == 422
    assert "wait_ms" in response.json()["detail"]


def test_wait_ms_of_30000_is_allowed(api: Api) -> None:
    response = api.query("ProductCatalog", {"min_position": 0, "wait_ms": 30000})
    assert response.status_code == 200, response.text


def test_wait_ms_without_min_position_is_422(api: Api) -> None:
    response = api.query("ProductCatalog", {"wait_ms": 10})
    assert response.status_code == 422
    assert "min_position" in response.json()["detail"]


def test_min_position_and_wait_ms_must_be_whole_numbers(api: Api) -> None:
    for params in ({"min_position": "abc"}, {"min_position": -1}, {"min_position": "1.5"},
                   {"min_position": "9" * 40}, {"min_position": "\u00b2"},
                   {"min_position": "\u0661\u0662"}, {"min_position": "1e3"},
                   {"min_position": 1, "wait_ms": "soon"}, {"min_position": 1, "wait_ms": "\u00b3"},
                   {"min_position": 1, "wait_ms": -5}):
        response = api.query("ProductCatalog", params)
        assert response.status_code == 422, params
        name = "wait_ms" if "wait_ms" in params else "min_position"
        assert name in response.json()["detail"], params
