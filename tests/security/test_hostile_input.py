"""Hostile input never hurts: declared limits; odd ids refused or kept verbatim; both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from projectionist import InvalidMessage, Runtime
from tests.notes import AddNote, CountNotes
from tests.security.servers import Api, uid

MAX_BODY = 256 * 1024


def assert_refused(response: httpx.Response, field: str | None) -> None:
    """A 422 whose detail names the field (`$.sku`), or the body position when not JSON."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_message", body
    if field is not None:
        assert f"`$.{field}`" in body["detail"], body["detail"]
    else:
        assert "Invalid JSON" in body["detail"] and "line 1 column" in body["detail"], body


# The OpenAPI document declares the limits


@pytest.fixture(scope="module")
def components(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    schemas: dict[str, Any] = response.json()["components"]["schemas"]
    return schemas


@pytest.fixture(scope="module")
def openapi(api: Api) -> dict[str, Any]:
    document: dict[str, Any] = api.client.get("/openapi.json").json()
    return document


ID = {"type": "string", "minLength": 1, "maxLength": 64}


@pytest.mark.parametrize(("schema", "field", "declared"), [
    ("RegisterProduct", "sku", ID),
    ("RegisterProduct", "name", {"minLength": 1, "maxLength": 200}),
    ("RegisterProduct", "price_cents", {"type": "integer", "minimum": 0, "maximum": 10**12}),
    ("RestockProduct", "quantity", {"exclusiveMinimum": 0, "maximum": 10**6}),
    ("PlaceOrder", "order_id", ID),
    ("PlaceOrder", "customer_id", ID),
    ("PlaceOrder", "lines", {"type": "array", "minItems": 1, "maxItems": 100}),
    ("OrderLineIn", "sku", ID),
    ("OrderLineIn", "quantity", {"exclusiveMinimum": 0, "maximum": 10**6}),
    ("PayOrder", "amount_cents", {"minimum": 0, "maximum": 10**12}),
    ("ShipOrder", "order_id", ID),
    ("CancelOrder", "reason", {"maxLength": 500, "pattern": "^[^\\x00]*$"}),
])
def test_command_schemas_declare_their_limits(components: dict[str, Any], schema: str,
                                              field: str, declared: dict[str, Any]) -> None:
    spec = components[schema]["properties"][field]
    assert {key: spec.get(key) for key in declared} == declared
    assert components[schema].get("additionalProperties") is False


def test_ids_and_names_declare_that_control_characters_are_refused(
        components: dict[str, Any]) -> None:
    for schema, field in [("RegisterProduct", "sku"), ("RegisterProduct", "name"),
                          ("PlaceOrder", "order_id"), ("OrderLineIn", "sku")]:
        assert components[schema]["properties"][field]["pattern"] == (
            "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$")


def query_parameter(openapi: dict[str, Any], query: str, name: str) -> dict[str, Any]:
    parameters = openapi["paths"][f"/queries/{query}"]["get"]["parameters"]
    [parameter] = [p for p in parameters if p["name"] == name]
    schema: dict[str, Any] = parameter["schema"]
    return schema


def bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """The limits of a parameter schema, looking through `anyOf: [..., null]`."""
    found: dict[str, Any] = {}
    for option in [schema, *schema.get("anyOf", [])]:
        found.update({k: v for k, v in option.items()
                      if k in ("maxLength", "minLength", "maximum", "minimum", "pattern")})
    return found


def test_query_parameters_declare_their_limits(openapi: dict[str, Any]) -> None:
    assert bounds(query_parameter(openapi, "GetOrder", "order_id"))["maxLength"] == 64
    assert bounds(query_parameter(openapi, "CustomerDashboard", "customer_id"))["maxLength"] == 64
    assert bounds(query_parameter(openapi, "ListOrders", "limit")) == {"minimum": 1,
                                                                       "maximum": 100}
    assert bounds(query_parameter(openapi, "ListOrders", "after"))["maxLength"] == 512
    assert bounds(query_parameter(openapi, "ProductCatalog", "search"))["maxLength"] == 200
    assert bounds(query_parameter(openapi, "GetOrder", "wait_ms"))["maximum"] == 30000


def test_command_bodies_declare_the_size_limit(openapi: dict[str, Any]) -> None:
    body = openapi["paths"]["/commands/PlaceOrder"]["post"]["requestBody"]
    assert body["x-max-body-bytes"] == MAX_BODY
    assert str(MAX_BODY) in body["description"]


# Limits are enforced, on both backends, and nothing is written

LINE = {"sku": "s", "quantity": 1}

OUT_OF_LIMITS: dict[str, tuple[str, dict[str, Any], str]] = {
    "sku too long": ("RegisterProduct", {"sku": "s" * 65, "name": "n", "price_cents": 1}, "sku"),
    "64 emoji and one more": ("RegisterProduct",
                              {"sku": "🛒" * 65, "name": "n", "price_cents": 1}, "sku"),
    "empty sku": ("RegisterProduct", {"sku": "", "name": "n", "price_cents": 1}, "sku"),
    "name too long": ("RegisterProduct", {"sku": "s", "name": "n" * 201, "price_cents": 1},
                      "name"),
    "reason too long": ("CancelOrder", {"order_id": "o", "reason": "r" * 501}, "reason"),
    "price too high": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": 10**12 + 1},
                       "price_cents"),
    "price beyond 64 bits": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": 2**64},
                             "price_cents"),
    "negative price": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": -1},
                       "price_cents"),
    "price as float": ("RegisterProduct", {"sku": "s", "name": "n", "price_cents": 1e3},
                       "price_cents"),
    "quantity too high": ("RestockProduct", {"sku": "s", "quantity": 10**6 + 1}, "quantity"),
    "zero quantity": ("RestockProduct", {"sku": "s", "quantity": 0}, "quantity"),
    "101 lines": ("PlaceOrder", {"order_id": "o", "customer_id": "c", "lines": [LINE] * 101},
                  "lines"),
    "no lines": ("PlaceOrder", {"order_id": "o", "customer_id": "c", "lines": []}, "lines"),
    "line quantity too high": ("PlaceOrder", {"order_id": "o", "customer_id": "c",
                                              "lines": [{"sku": "s", "quantity": 10**6 + 1}]},
                               "lines[0].quantity"),
    "payment too high": ("PayOrder", {"order_id": "o", "amount_cents": 10**13}, "amount_cents"),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_LIMITS))
def test_values_out_of_their_limits_are_422_naming_the_field(backend_api: Api,
                                                             case: str) -> None:
    name, body, field = OUT_OF_LIMITS[case]
    before = backend_api.server.event_count()
    assert_refused(backend_api.command(name, body), field)
    assert backend_api.server.event_count() == before


def test_a_body_over_the_size_limit_is_422(backend_api: Api) -> None:
    before = backend_api.server.event_count()
    padding = "x" * MAX_BODY
    body = json.dumps({"order_id": "o", "reason": padding}).encode()
    response = backend_api.command("CancelOrder", None, content=body)
    assert response.status_code == 422, response.text
    assert "limit" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 8192

    chunked = backend_api.client.post("/commands/CancelOrder", content=chunks(),
                                      headers={**backend_api.admin,
                                               "Content-Type": "application/json"})
    assert chunked.status_code == 422, chunked.text
    assert "larger than the limit" in chunked.json()["detail"]
    assert backend_api.server.event_count() == before


@pytest.mark.parametrize("shape", ["arrays", "objects", "inside a field"])
def test_deeply_nested_json_is_422(backend_api: Api, shape: str) -> None:
    depth = 10_000
    body = {
        "arrays": "[" * depth + "]" * depth,
        "objects": '{"a":' * depth + "1" + "}" * depth,
        "inside a field": '{"order_id": "o", "reason": ' + "[" * depth + "]" * depth + "}",
    }[shape]
    before = backend_api.server.event_count()
    response = backend_api.command("CancelOrder", None, content=body.encode())
    assert_refused(response, None)
    assert "recursion limit" in response.json()["detail"]
    assert backend_api.server.event_count() == before


# Odd ids: kept verbatim, or refused naming the field; never interpreted

KEPT = {
    "single quote": "it's",
    "double quotes": 'say "hi"',
    "sql": "x'; DROP TABLE orders; --",
    "sql or": "' OR '1'='1",
    "parent path": "../x",
    "deep parent path": "../../../../etc/passwd",
    "slash": "a/b",
    "backslash": "a\\b",
    "percent": "100%_off",
    "url encoded": "%2e%2e%2f%00",
    "html": "<script>alert(1)</script>",
    "emoji": "🛒🎉👩‍👩‍👧",
    "right to left override": "abc\u202edef",
    "zero width": "a\u200bb",
    "tab": "a\tb",
    "max length emoji": "😀" * 64,
    "json": '{"$ne": null}',
    "noncharacter": "a\ufffeb\uffff",
}

REFUSED = {
    "nul": "a\u0000b",
    "only nul": "\u0000",
    "newline": "a\nb",
    "carriage return": "a\r\nb",
    "start of heading": "\u0001",
    "escape": "\u001b[31mred",
    "delete": "a\u007f",
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_odd_ids_are_stored_and_read_back_verbatim(backend_api: Api, case: str) -> None:
    api = backend_api
    text = KEPT[case]
    sku = text
    registered = api.command("RegisterProduct", {"sku": sku, "name": f"{text} {uid('n')}",
                                                 "price_cents": 5})
    if registered.status_code == 409:  # the other parametrization of this server took it
        sku = text[:50] + uid("")
        registered = api.command("RegisterProduct", {"sku": sku, "name": text,
                                                     "price_cents": 5})
    assert registered.status_code == 200, registered.text
    assert registered.json()["events"][0]["stream"] == f"product-{sku}"
    api.accepted("RestockProduct", {"sku": sku, "quantity": 3})
    order_id, customer = text[:52] + uid("o"), text[:52] + uid("c")
    _, position = api.order(customer, sku, quantity=2, order_id=order_id)

    order = api.fresh("GetOrder", {"order_id": order_id}, position)
    assert (order["order_id"], order["customer_id"]) == (order_id, customer)
    assert order["lines"] == [{"sku": sku, "quantity": 2, "unit_price_cents": 5}]
    listed = api.fresh("ListOrders", {"customer_id": customer}, position)["items"]
    assert [item["order_id"] for item in listed] == [order_id]
    dashboard = api.fresh("CustomerDashboard", {"customer_id": customer}, position)
    assert dashboard["customer_id"] == customer
    found = api.fresh("ProductCatalog", {"search": sku}, position)["items"]
    assert sku in [item["sku"] for item in found]
    assert all(sku.lower() in (item["sku"] + item["name"]).lower() for item in found)

    [row] = api.server.rows("SELECT sku, name FROM products WHERE sku = :sku", sku=sku)
    assert row["sku"] == sku
    [row] = api.server.rows("SELECT order_id, customer_id FROM orders WHERE order_id = :id",
                            id=order_id)
    assert (row["order_id"], row["customer_id"]) == (order_id, customer)
    assert api.server.scalar("SELECT count(*) FROM orders") >= 1


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_control_characters_in_ids_are_422_naming_the_field(backend_api: Api,
                                                            case: str) -> None:
    api = backend_api
    text = REFUSED[case]
    sku = api.product(stock=5)
    before = api.server.event_count()
    attempts: list[tuple[str, dict[str, Any], str]] = [
        ("RegisterProduct", {"sku": text, "name": "n", "price_cents": 1}, "sku"),
        ("RegisterProduct", {"sku": uid("s"), "name": text, "price_cents": 1}, "name"),
        ("PlaceOrder", {"order_id": text, "customer_id": "c",
                        "lines": [{"sku": sku, "quantity": 1}]}, "order_id"),
        ("PlaceOrder", {"order_id": uid("o"), "customer_id": text,
                        "lines": [{"sku": sku, "quantity": 1}]}, "customer_id"),
        ("PlaceOrder", {"order_id": uid("o"), "customer_id": "c",
                        "lines": [{"sku": sku + text, "quantity": 1}]}, "lines[0].sku"),
        ("ShipOrder", {"order_id": text}, "order_id"),
    ]
    for name, body, field in attempts:
        assert_refused(api.command(name, body), field)
    for query, params, field in [("GetOrder", {"order_id": text}, "order_id"),
                                 ("ListOrders", {"customer_id": text}, "customer_id"),
                                 ("CustomerDashboard", {"customer_id": text}, "customer_id"),
                                 ("ProductCatalog", {"search": text}, "search")]:
        assert_refused(api.query(query, params), field)
    assert api.server.event_count() == before


def test_free_text_keeps_control_characters_but_refuses_nul(backend_api: Api) -> None:
    api = backend_api
    sku = api.product(stock=5)
    order_id, position = api.order(uid("c"), sku)
    before = api.server.event_count()
    assert_refused(api.command("CancelOrder", {"order_id": order_id, "reason": "no\u0000"}),
                   "reason")
    assert api.server.event_count() == before
    reason = "line one\nline two\t\u0001 'quoted' 🛑"
    api.accepted("CancelOrder", {"order_id": order_id, "reason": reason})
    [row] = api.server.rows("SELECT data FROM projectionist_events WHERE stream = :stream"
                            " AND type = 'OrderCancelled'", stream=f"order-{order_id}")
    assert json.loads(row["data"])["reason"] == reason
    assert api.fresh("GetOrder", {"order_id": order_id}, position)["order_id"] == order_id


BAD_BYTES = {
    "invalid utf-8": b'{"sku": "\xff\xfe", "name": "n", "price_cents": 1}',
    "overlong utf-8": b'{"sku": "\xc0\xaf", "name": "n", "price_cents": 1}',
    "encoded surrogate": b'{"sku": "\xed\xa0\x80", "name": "n", "price_cents": 1}',
    "lone high surrogate": b'{"sku": "\\ud800", "name": "n", "price_cents": 1}',
    "lone low surrogate": b'{"sku": "a\\udc00", "name": "n", "price_cents": 1}',
    "truncated": b'{"sku": "abc',
    "latin-1": '{"sku": "caf\u00e9", "name": "n", "price_cents": 1}'.encode("latin-1"),
    "utf-16": '{"sku": "s", "name": "n", "price_cents": 1}'.encode("utf-16"),
    "nul byte outside strings": b'{"sku": "s",\x00 "name": "n", "price_cents": 1}',
}


@pytest.mark.parametrize("case", sorted(BAD_BYTES))
def test_bodies_that_are_not_valid_utf8_json_are_422(backend_api: Api, case: str) -> None:
    before = backend_api.server.event_count()
    assert_refused(backend_api.command("RegisterProduct", None, content=BAD_BYTES[case]), None)
    assert backend_api.server.event_count() == before


@pytest.mark.parametrize("raw", ["%ff%fe", "%ed%a0%80", "%c0%af", "%00", "..%2f..%2fx",
                                 "a%0d%0aSet-Cookie:%20x=1", "%22%27%3b--"])
def test_odd_bytes_in_query_strings_are_never_a_server_error(backend_api: Api,
                                                             raw: str) -> None:
    for path in (f"/queries/GetOrder?order_id={raw}",
                 f"/queries/CustomerDashboard?customer_id={raw}",
                 f"/queries/ListOrders?customer_id={raw}",
                 f"/queries/ListOrders?after={raw}",
                 f"/queries/ProductCatalog?search={raw}"):
        response = backend_api.client.get(path, headers=backend_api.admin)
        assert response.status_code in (200, 404, 422), (path, response.text)
        assert "Set-Cookie" not in response.headers


def test_a_nul_the_store_cannot_hold_is_422_in_the_library(notes_runtime: Runtime) -> None:
    """Apps without a pattern on their fields still get a 422 (InvalidMessage), never a crash."""
    backend = notes_runtime.store.dialect
    if backend == "postgresql":
        with pytest.raises(InvalidMessage, match="cannot hold: PostgreSQL text fields cannot"):
            notes_runtime.execute(AddNote(stream="s", text="a\x00b"))
        with pytest.raises(InvalidMessage, match="cannot search for: PostgreSQL text fields"):
            notes_runtime.ask(CountNotes(stream="s\x00"))
        return
    notes_runtime.execute(AddNote(stream="s\x00", text="a\x00b"))
    notes_runtime.catch_up()
    assert notes_runtime.ask(CountNotes(stream="s\x00")).data is not None


def test_an_order_total_over_the_largest_amount_is_409_and_writes_nothing(
        backend_api: Api) -> None:
    api = backend_api
    sku = api.product(price_cents=10**12, stock=1)
    before = api.server.event_count()
    for lines in ([{"sku": sku, "quantity": 2}],
                  [{"sku": sku, "quantity": 10**6}] * 100):  # past 64 bits
        response = api.command("PlaceOrder", {"order_id": uid("o"), "customer_id": "c",
                                              "lines": lines})
        assert response.status_code == 409, response.text
        assert "over the limit of 1000000000000" in response.json()["detail"]
    assert api.server.event_count() == before
    order_id, _ = api.order("c", sku, quantity=1)
    api.accepted("PayOrder", {"order_id": order_id, "amount_cents": 10**12})
