"""Query dispatch: parameters, registration, and what a handler may read."""

from __future__ import annotations

from typing import Any

import pytest

from projectionist import (
    App,
    ConfigurationError,
    InvalidMessage,
    NotRegistered,
    ReadContext,
    Runtime,
)
from projectionist_examples.shop import ListOrders, SalesReport
from tests.notes import CountNotes, Notes


def test_query_parameters_are_validated_with_their_location(shop_runtime: Runtime) -> None:
    assert shop_runtime.queries is not None
    with pytest.raises(InvalidMessage) as raised:
        shop_runtime.queries.parse("ListOrders", {"limit": "0"})
    assert "$.limit" in raised.value.detail
    with pytest.raises(InvalidMessage, match=r"\$\.status"):
        shop_runtime.queries.parse("ListOrders", {"status": "lost"})
    with pytest.raises(InvalidMessage, match="day_from must not be after day_to"):
        shop_runtime.queries.parse("SalesReport", {"day_from": "2024-02-02",
                                                   "day_to": "2024-02-01"})


def test_query_parameters_from_a_query_string_are_coerced(shop_runtime: Runtime) -> None:
    assert shop_runtime.queries is not None
    query = shop_runtime.queries.parse("ListOrders", {"limit": "5", "customer_id": "c1"})
    assert query == ListOrders(limit=5, customer_id="c1")
    assert shop_runtime.queries.parse("SalesReport", {}) == SalesReport()


def test_unknown_query_type_is_not_registered(shop_runtime: Runtime) -> None:
    assert shop_runtime.queries is not None
    with pytest.raises(NotRegistered, match="'AllSecrets'"):
        shop_runtime.queries.parse("AllSecrets", {})


def test_a_query_must_name_the_projections_it_reads() -> None:
    app = App("bad")
    with pytest.raises(ConfigurationError, match="reads="):
        app.query(CountNotes, reads=[])


def test_a_handler_that_reads_an_undeclared_view_is_a_configuration_error(
    store_urls: tuple[str, str],
) -> None:
    notes = Notes()
    app = App("sneaky")
    app.projection(notes.counting)

    @app.query(CountNotes, reads=[notes.listing])
    def count(query: CountNotes, ctx: ReadContext) -> Any:
        return ctx[notes.counts]

    runtime = Runtime(app, store=store_urls[0], read_store=store_urls[1])
    try:
        with pytest.raises(ConfigurationError, match="list it in reads="):
            runtime.ask(CountNotes(stream="s"))
    finally:
        runtime.stop()
