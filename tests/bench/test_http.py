"""The HTTP benchmark serves the shop, drives it briefly, and reports every phase."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from projectionist import Runtime
from projectionist.http import create_http_app
from projectionist_bench.bare import create_app
from projectionist_bench.http import HttpSettings, run_http
from projectionist_examples.shop import PayOrder, PlaceOrder, RegisterProduct, RestockProduct
from tests.conftest import PG_ADMIN_URL, require_postgres

ANCHOR = ("getorder_reads_per_s", "getorder_p50_ms", "getorder_p99_ms", "bare_reads_per_s",
          "bare_p50_ms", "bare_p99_ms", "getorder_vs_bare", "bare_loop_reads_per_s",
          "bare_loop_p50_ms", "bare_loop_p99_ms", "getorder_vs_bare_loop")


def test_every_phase_answers_without_errors(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql":
        require_postgres()
    settings = HttpSettings(
        backend=backend, duration_s=0.5, query_clients=2, command_clients=1, query_rate=40,
        seed_orders=8, products=5, customers=4,
        url=PG_ADMIN_URL if backend == "postgresql" else None,
        directory=tmp_path if backend == "sqlite" else None,
    )
    result = run_http(settings)
    assert [phase["writes"] for phase in result["phases"]] == [
        False, True, False, True, False, False, False]
    assert [phase["name"] for phase in result["phases"]][4:] == [
        "reads max GetOrder", "bare reads max", "bare reads max, on the loop"]
    assert [phase["server"] for phase in result["phases"]][4:] == [
        "projectionist", "bare", "bare"]
    for phase in result["phases"]:
        assert phase["queries"]["count"] > 0, phase
        assert phase["queries"]["errors"] == 0, phase
        assert phase["commands"]["errors"] == 0, phase
        assert (phase["commands"]["count"] > 0) == phase["writes"], phase
    summary = result["summary"]
    assert summary["errors"] == 0
    for figure in ("query_p99_ms_at_rate", "query_p99_ms_at_rate_under_writes", "reads_per_s",
                   "reads_per_s_under_writes", "read_ratio_under_writes"):
        assert isinstance(summary[figure], float), figure
    for figure in ANCHOR:
        assert isinstance(result[figure], float) and result[figure] > 0, figure
    assert result["anchor"]["getorder_auth"] is True
    assert result["anchor"]["bare_auth"] is False
    assert result["anchor"]["same_document_checked"] == "seed-0"
    json.dumps(result)


def test_the_bare_stack_answers_projectionists_document(shop_runtime: Runtime,
                                                        store_urls: tuple[str, str]) -> None:
    runtime = shop_runtime
    runtime.execute(RegisterProduct(sku="SKU-1", name="One", price_cents=250))
    runtime.execute(RestockProduct(sku="SKU-1", quantity=10))
    runtime.execute(PlaceOrder(order_id="o-1", customer_id="c-1",
                               lines=[{"sku": "SKU-1", "quantity": 2}]))
    runtime.execute(PayOrder(order_id="o-1", amount_cents=500))
    runtime.catch_up()
    _, read_url = store_urls

    bare_app = create_app(read_url)
    assert bare_app.state.reader.table.startswith("orders_g")

    async def get(app: Any, order_id: str, prefix: str = "") -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get(f"{prefix}/queries/GetOrder", params={"order_id": order_id})

    try:
        ours = asyncio.run(get(create_http_app(runtime, authority=None), "o-1"))
        theirs = asyncio.run(get(bare_app, "o-1"))
        on_loop = asyncio.run(get(bare_app, "o-1", "/loop"))
        missing = asyncio.run(get(bare_app, "nope"))
        missing_on_loop = asyncio.run(get(bare_app, "nope", "/loop"))
    finally:
        bare_app.state.reader.close()
    assert ours.status_code == theirs.status_code == on_loop.status_code == 200
    assert theirs.json()["data"] == on_loop.json()["data"] == ours.json()["data"]
    assert theirs.json()["data"]["status"] == "paid"
    assert missing.status_code == missing_on_loop.status_code == 404
