"""Malformed input over HTTP: a 4xx that names what is wrong and where, and nothing written."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from shop_server import Api, uid

MAX_BODY = 256 * 1024
SQL = "x'; DROP TABLE orders; --"


def order(lines: Any, **fields: Any) -> dict[str, Any]:
    return {"order_id": "o-bad", "customer_id": "c-bad", "lines": lines, **fields}


def line(quantity: Any = 1, **fields: Any) -> dict[str, Any]:
    return {"sku": "sku-bad", "quantity": quantity, **fields}


# (command, body, what the detail names)
INVALID_BODIES: dict[str, tuple[str, Any, str]] = {
    "price as string": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": "100"},
                        "`$.price_cents`"),
    "price as boolean": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": True},
                         "`$.price_cents`"),
    "price as fraction": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": 1.5},
                          "`$.price_cents`"),
    "sku as number": ("RegisterProduct", {"sku": 123, "name": "n", "price_cents": 1},
                      "`$.sku`"),
    "name as null": ("RegisterProduct", {"sku": "s", "name": None, "price_cents": 1},
                     "`$.name`"),
    "lines as string": ("PlaceOrder", order("sku-bad"), "`$.lines`"),
    "line as list": ("PlaceOrder", order([["sku-bad", 1]]), "`$.lines[0]`"),
    "quantity as string": ("PlaceOrder", order([line(), line("2")]), "`$.lines[1].quantity`"),
    "missing price": ("RegisterProduct", {"sku": "s", "name": "n"}, "`$.price_cents`"),
    "missing lines": ("PlaceOrder", {"order_id": "o", "customer_id": "c"}, "`$.lines`"),
    "missing line sku": ("PlaceOrder", order([{"quantity": 1}]), "`$.lines[0].sku`"),
    "missing everything": ("ShipOrder", {}, "`$.order_id`"),
    "unknown field": ("RegisterProduct",
                      {"sku": "s", "name": "n", "price_cents": 1, "discount": 5},
                      "`$.discount`"),
    "unknown line field": ("PlaceOrder", order([line(colour="red")]), "`$.lines[0].colour`"),
    "huge price": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": 10**30},
                   "`$.price_cents`"),
    "huge restock": ("RestockProduct", {"sku": "s", "quantity": 10**30}, "`$.quantity`"),
    "huge line quantity": ("PlaceOrder", order([line(10**30)]), "`$.lines[0].quantity`"),
    "huge payment": ("PayOrder", {"order_id": "o", "amount_cents": 10**30},
                     "`$.amount_cents`"),
    "negative price": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": -1},
                       "`$.price_cents`"),
    "negative restock": ("RestockProduct", {"sku": "s", "quantity": -3}, "`$.quantity`"),
    "zero restock": ("RestockProduct", {"sku": "s", "quantity": 0}, "`$.quantity`"),
    "negative line quantity": ("PlaceOrder", order([line(-5)]), "`$.lines[0].quantity`"),
    "negative payment": ("PayOrder", {"order_id": "o", "amount_cents": -1}, "`$.amount_cents`"),
    "101 lines": ("PlaceOrder", order([line() for _ in range(101)]), "`$.lines`"),
    "no lines": ("PlaceOrder", order([]), "`$.lines`"),
    "65-character sku": ("RegisterProduct", {"sku": "s" * 65, "name": "n", "price_cents": 1},
                         "`$.sku`"),
    "65-emoji sku": ("RegisterProduct", {"sku": "🛒" * 65, "name": "n", "price_cents": 1},
                     "`$.sku`"),
    "65-character order id": ("PlaceOrder", order([line()], order_id="o" * 65),
                              "`$.order_id`"),
    "65-character customer id": ("PlaceOrder", order([line()], customer_id="c" * 65),
                                 "`$.customer_id`"),
    "65-character line sku": ("PlaceOrder", order([{"sku": "s" * 65, "quantity": 1}]),
                              "`$.lines[0].sku`"),
    "empty sku": ("RegisterProduct", {"sku": "", "name": "n", "price_cents": 1}, "`$.sku`"),
    "empty order id": ("ShipOrder", {"order_id": ""}, "`$.order_id`"),
    "empty customer id": ("PlaceOrder", order([line()], customer_id=""), "`$.customer_id`"),
    "empty name": ("RegisterProduct", {"sku": "s", "name": "", "price_cents": 1}, "`$.name`"),
    "long reason": ("CancelOrder", {"order_id": "o", "reason": "r" * 501}, "`$.reason`"),
    "array body": ("RegisterProduct", [{"sku": "s", "name": "n", "price_cents": 1}], "`$`"),
    "null body": ("RegisterProduct", None, "`$`"),
}

# (command, raw body, what the detail says)
INVALID_RAW: dict[str, tuple[str, bytes, str]] = {
    "empty body": ("ShipOrder", b"", "Invalid JSON"),
    "form body": ("ShipOrder", b"order_id=o-1", "Invalid JSON"),
    "truncated JSON": ("ShipOrder", b'{"order_id": "o-1"', "Invalid JSON"),
    "not UTF-8": ("ShipOrder", b'{"order_id": "\xff\xfe"}', "Invalid JSON"),
    "lone surrogate": ("ShipOrder", b'{"order_id": "\\ud800"}', "Invalid JSON"),
    "NaN": ("PayOrder", b'{"order_id": "o", "amount_cents": NaN}', "`$.amount_cents`"),
    "trailing data": ("ShipOrder", b'{"order_id": "o-1"} {}', "Invalid JSON"),
    "oversized": ("RegisterProduct",
                  json.dumps({"sku": "big", "name": "n" * (MAX_BODY + 1),
                              "price_cents": 1}).encode(),
                  "limit"),
}


def assert_invalid(response: Any, names: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_message"
    assert isinstance(body["detail"], str) and names in body["detail"], body["detail"]


@pytest.mark.parametrize("case", sorted(INVALID_BODIES))
def test_a_body_that_breaks_the_schema_is_422_naming_the_field(api: Api, case: str) -> None:
    name, body, names = INVALID_BODIES[case]
    before = api.server.snapshot()
    head = api.head()
    assert_invalid(api.command(name, content=json.dumps(body).encode()), names)
    assert api.server.snapshot() == before
    assert api.head() == head


@pytest.mark.parametrize("case", sorted(INVALID_RAW))
def test_a_body_that_is_not_json_is_422(api: Api, case: str) -> None:
    name, raw, says = INVALID_RAW[case]
    before = api.server.snapshot()
    assert_invalid(api.command(name, content=raw), says)
    assert api.server.snapshot() == before


def test_an_oversized_body_without_a_length_is_422(api: Api) -> None:
    def chunks() -> Any:
        yield b'{"sku": "big", "name": "'
        for _ in range(300):
            yield b"n" * 1024
        yield b'", "price_cents": 1}'

    before = api.server.snapshot()
    response = api.client.post("/commands/RegisterProduct", content=chunks(),
                               headers={**api.staff, "Content-Type": "application/json"})
    assert_invalid(response, "limit")
    assert api.server.snapshot() == before


def test_a_body_just_under_the_limit_is_read(api: Api) -> None:
    body = {"order_id": "", "reason": " " * (MAX_BODY - 100)}
    content = json.dumps(body).encode()
    assert len(content) < MAX_BODY
    assert_invalid(api.command("CancelOrder", content=content), "`$.order_id`")


def test_an_unknown_command_type_is_404(api: Api) -> None:
    before = api.server.snapshot()
    for name in ("DropTables", "registerproduct", "GetOrder"):
        response = api.command(name, {"sku": "s"})
        assert response.status_code == 404, name
        body = response.json()
        assert body["error"] == "not_registered" and name in body["detail"]
    assert api.server.snapshot() == before


def test_an_unknown_query_type_is_404(api: Api) -> None:
    for name in ("GetEverything", "getorder", "RegisterProduct"):
        response = api.query(name, {"order_id": "o"})
        assert response.status_code == 404, name
        body = response.json()
        assert body["error"] == "not_registered" and name in body["detail"]


def test_a_command_route_answers_get_with_405(api: Api) -> None:
    response = api.client.get("/commands/RegisterProduct", headers=api.staff)
    assert response.status_code == 405
    assert set(response.json()) == {"error", "detail"}


def cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# (query, params, what the detail names)
INVALID_PARAMS: dict[str, tuple[str, Any, str]] = {
    "limit 0": ("ListOrders", {"limit": 0}, "`$.limit`"),
    "limit 101": ("ListOrders", {"limit": 101}, "`$.limit`"),
    "limit abc": ("ListOrders", {"limit": "abc"}, "`$.limit`"),
    "limit fraction": ("ListOrders", {"limit": "1.5"}, "`$.limit`"),
    "limit huge": ("ListOrders", {"limit": "9" * 40}, "`$.limit`"),
    "unknown status": ("ListOrders", {"status": "lost"}, "`$.status`"),
    "unknown param": ("ListOrders", {"colour": "red"}, "`$.colour`"),
    "duplicate param": ("ListOrders", [("limit", "1"), ("limit", "2")], "'limit'"),
    "duplicate id": ("GetOrder", [("order_id", "a"), ("order_id", "a")], "'order_id'"),
    "missing id": ("GetOrder", {}, "`$.order_id`"),
    "empty id": ("GetOrder", {"order_id": ""}, "`$.order_id`"),
    "65-character id": ("GetOrder", {"order_id": "o" * 65}, "`$.order_id`"),
    "empty customer": ("CustomerDashboard", {"customer_id": ""}, "`$.customer_id`"),
    "bad date": ("SalesReport", {"day_from": "2024-13-01"}, "`$.day_from`"),
    "not a date": ("SalesReport", {"day_to": SQL}, "`$.day_to`"),
    "dates reversed": ("SalesReport", {"day_from": "2024-05-02", "day_to": "2024-05-01"},
                       "day_from must not be after day_to"),
    "long search": ("ProductCatalog", {"search": "s" * 201}, "`$.search`"),
    "cursor not base64": ("ListOrders", {"after": "!!!"}, "cursor"),
    "cursor not JSON": ("ListOrders", {"after": "bm90IGpzb24"}, "cursor"),
    "cursor too long": ("ListOrders", {"after": "A" * 513}, "`$.after`"),
    "cursor of a list": ("ListOrders", {"after": cursor([[1, 2], "k"])}, "cursor"),
    "cursor of an object": ("ListOrders", {"after": cursor([{"a": 1}, "k"])}, "cursor"),
    "cursor of a huge number": ("ListOrders", {"after": cursor([10**30, "k"])}, "cursor"),
    "cursor of a lone surrogate": ("ListOrders", {"after": cursor(["\ud800", "k"])}, "cursor"),
    "cursor key a surrogate": ("ListOrders", {"after": cursor(["x", "\udfff"])}, "cursor"),
    "cursor key a number": ("ListOrders", {"after": cursor(["x", 5])}, "cursor"),
    "cursor too short": ("ListOrders", {"after": cursor(["x"])}, "cursor"),
}


@pytest.mark.parametrize("case", sorted(INVALID_PARAMS))
def test_bad_query_parameters_are_422_naming_the_parameter(api: Api, case: str) -> None:
    name, params, names = INVALID_PARAMS[case]
    response = api.query(name, params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_message"
    assert names in body["detail"], body["detail"]


def test_cursors_of_other_json_values_page_or_are_422(api: Api) -> None:
    # null and booleans are sort values a document may hold; either answer is sound.
    for payload in ([None, "k"], [True, "k"], [False, "k"], [0, "k"], [-1.5, "k"], ["", ""]):
        response = api.query("ListOrders", {"after": cursor(payload)})
        assert response.status_code in (200, 422), payload
        if response.status_code == 200:
            assert set(response.json()["data"]) == {"items", "next"}
        else:
            assert "cursor" in response.json()["detail"]


ODD_IDS = {
    "sql": SQL,
    "quotes": "\"double\" and 'single' and `back`",
    "sql comment": "1 OR 1=1; -- /* */",
    "like wildcards": "50%_off\\",
    "emoji": "🛒🎉👩‍👩‍👧",
    "rtl": "مرحبا-שלום",
    "combining": "e\u0301-decomposed",
    "whitespace": "  spaced\tout  ",
    "64 emoji": "🛒" * 64,
    "html": "<script>alert(1)</script>",
    "path": "../../etc/passwd",
}


@pytest.mark.parametrize("case", sorted(ODD_IDS))
def test_odd_ids_and_names_are_stored_and_read_back_verbatim(api: Api, case: str) -> None:
    text = ODD_IDS[case]
    sku, order_id, customer = text, text[:62] + "-o", text[:62] + "-c"
    name = f"{text} — {uid('name')}"
    registered = api.command("RegisterProduct", {"sku": sku, "name": name, "price_cents": 7})
    assert registered.status_code == 200, registered.text
    assert registered.json()["events"][0]["stream"] == f"product-{sku}"
    api.accepted("RestockProduct", {"sku": sku, "quantity": 3})
    _, position = api.order(customer, [(sku, 2)], order_id=order_id)

    order = api.fresh("GetOrder", {"order_id": order_id}, position)
    assert (order["order_id"], order["customer_id"]) == (order_id, customer)
    assert order["lines"] == [{"sku": sku, "quantity": 2, "unit_price_cents": 7}]
    listed = api.fresh("ListOrders", {"customer_id": customer}, position)["items"]
    assert [o["order_id"] for o in listed] == [order_id]
    dashboard = api.fresh("CustomerDashboard", {"customer_id": customer}, position)
    assert (dashboard["customer_id"], dashboard["orders"]) == (customer, 1)
    found = api.fresh("ProductCatalog", {"search": name}, position)["items"]
    assert found == [{"sku": sku, "name": name, "price_cents": 7, "available": 1, "sold": 0}]

    assert (sku, name, 7) in api.server.rows("products")
    assert [row[:2] for row in api.server.rows("orders") if row[0] == order_id] == [
        (order_id, customer)
    ]
    assert any(row[0] == sku for row in api.server.rows("stock"))


def test_search_matches_wildcard_characters_literally(api: Api) -> None:
    api.product()
    items = api.fresh("ProductCatalog", {"search": "%"}, api.head())["items"]
    assert all("%" in item["sku"] or "%" in item["name"] for item in items)
    items = api.fresh("ProductCatalog", {"search": "_"}, api.head())["items"]
    assert all("_" in item["sku"] or "_" in item["name"] for item in items)


def test_sql_in_ids_leaves_every_table_in_place(api: Api) -> None:
    sku = api.product()
    for order_id in (SQL, "'); DELETE FROM products; --", "\" OR \"\"=\""):
        api.order("c-" + uid("sql"), [(sku, 1)], order_id=order_id)
    position = api.accepted("RestockProduct", {"sku": sku, "quantity": 1})["position"]
    assert api.fresh("GetOrder", {"order_id": SQL}, position)["order_id"] == SQL
    snapshot = api.server.snapshot()
    assert {row[0] for row in snapshot["orders"]} >= {SQL, "'); DELETE FROM products; --"}
    assert len(snapshot["products"]) > 1
    assert api.fresh("ProductCatalog", {"search": sku}, position)["items"][0]["available"] == 8


def test_control_characters_in_ids_are_refused_or_kept_verbatim(api: Api) -> None:
    sku = "nul\x00and\x1fbell\x07"
    before = api.server.snapshot()
    response = api.command("RegisterProduct", {"sku": sku, "name": "ctrl", "price_cents": 1})
    if response.status_code == 422:
        assert "`$.sku`" in response.json()["detail"]
        assert api.server.snapshot() == before
        return
    assert response.status_code == 200, response.text
    position = response.json()["position"]
    assert api.fresh("ProductCatalog", {"search": "ctrl"}, position)["items"][0]["sku"] == sku
