"""What the server says about itself: OpenAPI, the docs page, Prometheus metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from shop_server import PROJECTIONS, Api, uid

COMMANDS = {
    "RegisterProduct": {"sku", "name", "price_cents"},
    "RestockProduct": {"sku", "quantity"},
    "PlaceOrder": {"order_id", "customer_id", "lines"},
    "PayOrder": {"order_id", "amount_cents"},
    "ShipOrder": {"order_id"},
    "CancelOrder": {"order_id", "reason"},
}
QUERIES = {
    "GetOrder": {"order_id"},
    "ListOrders": {"customer_id", "status", "limit", "after"},
    "CustomerDashboard": {"customer_id"},
    "SalesReport": {"day_from", "day_to"},
    "ProductCatalog": {"search"},
}


@pytest.fixture(scope="module")
def openapi(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def refs(node: Any) -> set[str]:
    """Every `$ref` in a JSON document."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(item) for item in node))
    return set()


def test_openapi_lists_a_post_route_per_command_with_its_schema(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    for name, fields in COMMANDS.items():
        operation = openapi["paths"][f"/commands/{name}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}"}
        assert set(schemas[name]["properties"]) == fields
        assert set(schemas[name]["required"]) == fields
        assert {"200", "401", "403", "404", "409", "422"} <= set(operation["responses"])
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert "Idempotency-Key" in headers


def test_openapi_command_schemas_carry_their_constraints(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    lines = schemas["PlaceOrder"]["properties"]["lines"]
    assert (lines["minItems"], lines["maxItems"]) == (1, 100)
    assert schemas["RegisterProduct"]["properties"]["sku"]["maxLength"] == 64
    assert schemas["RegisterProduct"]["properties"]["price_cents"]["minimum"] == 0
    assert schemas["RegisterProduct"].get("additionalProperties") is False


def test_openapi_lists_a_get_route_per_query_with_its_parameters(
    openapi: dict[str, Any],
) -> None:
    for name, fields in QUERIES.items():
        operation = openapi["paths"][f"/queries/{name}"]["get"]
        parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert set(parameters) == fields | {"min_position", "wait_ms"}
        assert parameters["wait_ms"]["schema"]["maximum"] == 30000
        assert {"200", "401", "403", "404", "422", "503"} <= set(operation["responses"])
    assert openapi["paths"]["/queries/GetOrder"]["get"]["parameters"][0]["required"] is True


def test_openapi_refs_all_resolve(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    prefix = "#/components/schemas/"
    for ref in refs(openapi):
        assert ref.startswith(prefix) and ref.removeprefix(prefix) in schemas, ref


def test_openapi_lists_the_operations_routes_and_no_catch_alls(openapi: dict[str, Any]) -> None:
    assert {"/healthz", "/metrics", "/projections"} <= set(openapi["paths"])
    assert "/commands/{name}" not in openapi["paths"]
    assert "/queries/{name}" not in openapi["paths"]


def test_docs_answer_200_with_a_page(api: Api) -> None:
    response = api.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


def test_healthz_answers_ok_with_the_roles(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "roles": ["command", "projector", "query"]}


def samples(api: Api) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_metrics_count_commands_by_type_and_outcome(api: Api) -> None:
    sku = uid("sku")
    api.accepted("RegisterProduct", {"sku": sku, "name": "metered", "price_cents": 1})
    assert api.command("RegisterProduct", {"sku": sku, "name": "again",
                                           "price_cents": 1}).status_code == 409
    counted = {(labels["type"], labels["outcome"]): value
               for labels, value in samples(api)["projectionist_commands_total"]}
    assert counted[("RegisterProduct", "ok")] >= 1
    assert counted[("RegisterProduct", "refused")] >= 1


def test_metrics_count_commands_as_they_happen(api: Api) -> None:
    def ok_restocks() -> float:
        return sum(value for labels, value in samples(api)["projectionist_commands_total"]
                   if labels == {"type": "RestockProduct", "outcome": "ok"})

    sku = api.product(stock=0)
    before = ok_restocks()
    for _ in range(3):
        api.accepted("RestockProduct", {"sku": sku, "quantity": 1})
    assert ok_restocks() == before + 3


def test_metrics_state_each_projections_lag(api: Api) -> None:
    api.fresh("ProductCatalog", {}, api.head())
    found = samples(api)
    lags = {labels["projection"]: value
            for labels, value in found["projectionist_projection_lag_events"]}
    assert set(lags) == PROJECTIONS
    assert all(value >= 0 for value in lags.values())
    assert {labels["projection"] for labels, _ in found["projectionist_projection_position"]} \
        == PROJECTIONS


def test_metrics_count_http_responses_refused_before_any_handler(api: Api) -> None:
    def responses() -> dict[tuple[str, str, str], float]:
        return {(labels["method"], labels["route"], labels["status"]): value
                for labels, value in samples(api)["projectionist_http_responses_total"]}

    before = responses()
    assert api.command("RegisterProduct", {"sku": "x"}, headers={}).status_code == 401
    assert api.command("RegisterProduct", {"sku": "x"}).status_code == 422
    assert api.command("NoSuchCommand", {}).status_code == 404
    assert api.client.get("/no/such/path").status_code == 404
    assert api.query("ProductCatalog", {}).status_code == 200
    after = responses()

    def grew(key: tuple[str, str, str]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("POST", "/commands/RegisterProduct", "401")) == 1
    assert grew(("POST", "/commands/RegisterProduct", "422")) == 1
    assert grew(("POST", "/commands/{name}", "404")) == 1
    assert grew(("GET", "unmatched", "404")) >= 1
    assert grew(("GET", "/queries/ProductCatalog", "200")) >= 1
    # A request's path never becomes a label value of its own.
    assert not any("NoSuchCommand" in route or "/no/such" in route for _, route, _ in after)
