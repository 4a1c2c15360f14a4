"""Query answers are typed in OpenAPI: `data` has the schema of the query's result model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from in_process import InProcess
from pydantic import BaseModel

from projectionist import App, ConfigurationError, Projection, Query, ReadContext, Runtime
from projectionist.http import create_http_app
from projectionist_examples.shop import create_app
from projectionist_examples.shop.messages import Order, OrderLineIn, PlaceOrder, RestockProduct


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Runtime, InProcess]]:
    runtime = Runtime(create_app(), store=f"sqlite:///{tmp_path / 'shop.db'}")
    runtime.install()
    yield runtime, InProcess(create_http_app(runtime, authority=None))
    runtime.stop()


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def answer_schema(document: dict[str, Any], query: str) -> dict[str, Any]:
    ok = document["paths"][f"/queries/{query}"]["get"]["responses"]["200"]
    return resolve(document, ok["content"]["application/json"]["schema"])


def test_get_order_data_has_the_fields_of_the_shops_order(
    shop: tuple[Runtime, InProcess],
) -> None:
    _, client = shop
    document = client.get("/openapi.json").json()
    envelope = answer_schema(document, "GetOrder")
    assert envelope["required"] == ["data", "freshness"]
    assert resolve(document, envelope["properties"]["freshness"])["required"] == [
        "position", "head", "lag_events", "lag_ms", "dead_letters"]
    data = resolve(document, envelope["properties"]["data"])
    assert set(data["properties"]) == {"order_id", "customer_id", "status", "total_cents",
                                       "lines", "placed_at", "updated_at"}
    assert set(data["required"]) == set(data["properties"])
    assert data["properties"]["status"]["enum"] == ["placed", "paid", "shipped", "cancelled"]
    line = resolve(document, data["properties"]["lines"]["items"])
    assert set(line["properties"]) == {"sku", "quantity", "unit_price_cents"}


def test_every_shop_query_declares_its_data(shop: tuple[Runtime, InProcess]) -> None:
    _, client = shop
    document = client.get("/openapi.json").json()
    for query in ("GetOrder", "ListOrders", "CustomerDashboard", "SalesReport",
                  "ProductCatalog"):
        data = answer_schema(document, query)["properties"]["data"]
        assert data == {"$ref": f"#/components/schemas/{query}Result"}, query
        assert resolve(document, data)["type"] == "object", query


def test_a_get_order_answer_is_what_its_schema_says(shop: tuple[Runtime, InProcess]) -> None:
    runtime, client = shop
    assert client.post("/commands/RegisterProduct",
                       json={"sku": "s1", "name": "Spoon", "price_cents": 250}).status_code == 200
    runtime.execute(RestockProduct(sku="s1", quantity=5))
    runtime.execute(PlaceOrder(order_id="o1", customer_id="c1",
                               lines=[OrderLineIn(sku="s1", quantity=2)]))
    runtime.catch_up()
    data = client.get("/queries/GetOrder", params={"order_id": "o1"}).json()["data"]
    assert Order.model_validate(data).model_dump() == data
    assert data["lines"] == [{"sku": "s1", "quantity": 2, "unit_price_cents": 250}]


class Note(BaseModel):
    text: str


class GetNote(Query):
    key: str


class CountNotes(Query):
    pass


def notes_app() -> App:
    app = App("typed")
    notes = Projection("notes")

    @app.query(GetNote, reads=[notes])
    def get_note(query: GetNote, ctx: ReadContext) -> Note:
        return Note(text=query.key)

    @app.query(CountNotes, reads=[notes])
    def count(query: CountNotes, ctx: ReadContext) -> int:
        return 0

    return app


def test_a_handlers_return_annotation_declares_its_result(tmp_path: Path) -> None:
    app = notes_app()
    assert app.queries["GetNote"].result is Note
    assert app.queries["CountNotes"].result is None
    runtime = Runtime(app, store=f"sqlite:///{tmp_path / 'typed.db'}")
    try:
        document = InProcess(create_http_app(runtime, authority=None)).get(
            "/openapi.json").json()
    finally:
        runtime.stop()
    assert answer_schema(document, "GetNote")["properties"]["data"] == {
        "$ref": "#/components/schemas/GetNoteResult"}
    assert document["components"]["schemas"]["GetNoteResult"]["required"] == ["text"]
    untyped = answer_schema(document, "CountNotes")
    assert untyped["properties"]["data"] == {}


def test_a_result_that_is_not_a_model_is_refused_at_registration() -> None:
    app = App("typed")
    with pytest.raises(ConfigurationError, match=r"query GetNote: result must be a Pydantic"
                                                 r" model class, got <class 'dict'>"):
        app.query(GetNote, reads=[Projection("notes")], result=dict)  # type: ignore[arg-type]
