"""Blue/green rebuilds under load: queries never fail and never see an empty or partial view."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from projectionist import RebuildInProgress, Runtime
from projectionist_examples.shop import CustomerDashboard, ProductCatalog, create_app
from tests.helpers import wait_for
from tests.lifecycle.support import (
    Hammer,
    Processes,
    bearer,
    dump_build,
    seed_shop,
    serving_generation,
)

CUSTOMERS = [f"customer-{i}" for i in range(5)]


def test_queries_see_the_whole_view_while_it_is_rebuilt(store_urls: tuple[str, str]) -> None:
    write, read = store_urls
    runtime = Runtime(create_app(), store=write, read_store=read, batch_size=3,
                      poll_interval_s=0.05)
    with runtime:
        seed_shop(runtime, products=30, orders=30)
        head = runtime.head()
        catalog = runtime.ask(ProductCatalog(), min_position=head, wait_ms=15000).data
        dashboards = {c: runtime.ask(CustomerDashboard(customer_id=c), min_position=head,
                                     wait_ms=15000).data for c in CUSTOMERS}
        assert len(catalog["items"]) == 30
        old_catalog = dump_build(runtime, "product_catalog", 1)
        old_dashboards = dump_build(runtime, "customer_dashboard", 1)

        def same_views() -> None:
            assert runtime.ask(ProductCatalog()).data == catalog
            customer = CUSTOMERS[threading.get_ident() % len(CUSTOMERS)]
            assert (runtime.ask(CustomerDashboard(customer_id=customer)).data
                    == dashboards[customer])

        progress: set[int] = set()
        builds: list[Any] = []
        watching = threading.Event()

        def serving_builds() -> set[tuple[str, int]]:
            # The checkpoints themselves: a cheap read, so that a fast rebuild is still seen
            # mid-way (status() also measures the read models' storage).
            with runtime.read_store.read() as connection:
                rows = runtime.checkpoints.all(connection)
            progress.update(r.position for r in rows if not r.active)
            return {(r.name, r.generation) for r in rows if r.active}

        def swapped() -> bool:
            serving = serving_builds()
            return len(builds) == 2 and all((b.name, b.generation) in serving for b in builds)

        def watch() -> None:  # from before the rebuilds start, without pauses
            while not watching.is_set():
                swapped()

        hammer = Hammer(same_views)
        watcher = threading.Thread(target=watch)
        with hammer.running():
            time.sleep(0.05)
            before = hammer.count
            watcher.start()
            builds.append(runtime.rebuild("product_catalog"))
            builds.append(runtime.rebuild("customer_dashboard"))
            catalog_build, dashboard_build = builds
            wait_for(swapped, timeout_s=60, what="the swap of both rebuilds")
            watching.set()
            watcher.join()
            during = hammer.count - before
            time.sleep(0.05)
        hammer.assert_clean(at_least=20)
        assert during >= 10, f"only {during} queries ran during the rebuilds"
        assert len(progress - {0, head}) >= 2, f"the rebuilds were not seen mid-way: {progress}"

        assert dump_build(runtime, "product_catalog", catalog_build.generation) == old_catalog
        assert (dump_build(runtime, "customer_dashboard", dashboard_build.generation)
                == old_dashboards)
        assert runtime.ask(ProductCatalog()).data == catalog
        assert [r.generation for r in runtime.status() if r.name == "product_catalog"] == [2]


def test_a_second_rebuild_of_the_same_projection_is_refused(store_urls: tuple[str, str]) -> None:
    write, read = store_urls
    with Runtime(create_app(), store=write, read_store=read) as runtime:
        seed_shop(runtime, products=3, orders=0)
        runtime.pause_projector()
        build = runtime.rebuild("product_catalog")
        with pytest.raises(RebuildInProgress, match="product_catalog"):
            runtime.rebuild("product_catalog")
        # Another process (one without the projector role) is refused as well.
        other = Runtime(create_app(), store=write, read_store=read, roles=["query"])
        try:
            with pytest.raises(RebuildInProgress):
                other.rebuild("product_catalog")
        finally:
            other.stop()
        # Other projections can still be rebuilt meanwhile.
        runtime.rebuild("daily_sales")
        runtime.resume_projector()
        wait_for(lambda: serving_generation(runtime, "product_catalog") == build.generation,
                 what="the swap")
        runtime.rebuild("product_catalog")  # finished: a new one may start


def _check_catalog(client: httpx.Client, baseline: dict[str, Any], seen: list[int]) -> None:
    response = client.get("/queries/ProductCatalog")
    assert response.status_code == 200, response.text
    items = {item["sku"]: item for item in response.json()["data"]["items"]}
    for sku, item in baseline.items():
        assert items.get(sku) == item, f"{sku}: {items.get(sku)} != {item}"
    # Products registered meanwhile only ever add up: the view never shrinks.
    assert len(items) >= seen[-1], f"{len(items)} items after {seen[-1]}"
    seen.append(len(items))


def test_rebuild_over_http_while_queries_and_commands_run(
    store_urls: tuple[str, str], processes: Processes
) -> None:
    write, read = store_urls
    server = processes.serve("shop", "shop", "--store", write, "--read-store", read,
                             "--batch-size", "5")
    # The log: 150 products, stocked, and 150 orders, half of them paid: a rebuild long enough
    # to be watched even with the log read from the server's memory.
    products = 150
    position = 0
    for i in range(products):
        sku = f"sku-{i:03d}"
        for name, body in (("RegisterProduct", {"sku": sku, "name": f"P{i}", "price_cents": 100}),
                           ("RestockProduct", {"sku": sku, "quantity": 10})):
            response = server.http.post(f"/commands/{name}", json=body)
            assert response.status_code == 200, response.text
        response = server.http.post("/commands/PlaceOrder", json={
            "order_id": f"o-{i}", "customer_id": "c", "lines": [{"sku": sku, "quantity": 1}]})
        assert response.status_code == 200, response.text
        if i % 2:
            response = server.http.post("/commands/PayOrder",
                                        json={"order_id": f"o-{i}", "amount_cents": 100})
            position = response.json()["position"]
    response = server.http.get("/queries/ProductCatalog",
                               params={"min_position": position, "wait_ms": 15000})
    assert response.status_code == 200, response.text
    baseline = {item["sku"]: item for item in response.json()["data"]["items"]}
    assert len(baseline) == products

    clients: dict[int, httpx.Client] = {}
    counts: dict[int, list[int]] = {}
    lock = threading.Lock()

    def check() -> None:
        ident = threading.get_ident()
        with lock:
            client = clients.setdefault(ident, httpx.Client(base_url=server.url, timeout=30,
                                                            headers=bearer()))
            seen = counts.setdefault(ident, [0])
        _check_catalog(client, baseline, seen)

    registered: list[int] = []
    writer_client = httpx.Client(base_url=server.url, timeout=30, headers=bearer())
    clients[0] = writer_client

    def register_more() -> None:
        n = len(registered)
        response = writer_client.post("/commands/RegisterProduct", json={
            "sku": f"new-{threading.get_ident()}-{n}", "name": "new", "price_cents": 1})
        assert response.status_code == 200, response.text
        position = response.json()["position"]
        registered.append(position)
        # Read-your-writes holds before, during and after the swap.
        response = writer_client.get("/queries/ProductCatalog",
                                     params={"min_position": position, "wait_ms": 10000})
        assert response.status_code == 200, response.text
        assert response.json()["freshness"]["position"] >= position
        assert len(response.json()["data"]["items"]) == products + len(registered)
        time.sleep(0.1)

    readers, writer = Hammer(check, threads=2), Hammer(register_more, threads=1)
    try:
        with readers.running(), writer.running():
            time.sleep(0.1)
            before = readers.count
            started = server.http.post("/projections/product_catalog/rebuild")
            assert started.status_code == 202, started.text
            generation = started.json()["generation"]
            assert started.json()["state"] == "rebuilding"
            again = server.http.post("/projections/product_catalog/rebuild")
            assert again.status_code == 409, again.text
            assert again.json()["error"] == "rebuild_in_progress"
            rebuilding: list[dict[str, Any]] = []

            def swapped() -> bool:
                rows = server.http.get("/projections").json()
                rows = [r for r in rows if r["name"] == "product_catalog"]
                rebuilding.extend(r for r in rows if not r["active"])
                return [(r["generation"], r["active"]) for r in rows] == [(generation, True)]

            wait_for(swapped, timeout_s=60, what="the swap")
            during = readers.count - before
            time.sleep(0.2)
    finally:
        for client in clients.values():
            client.close()
    readers.assert_clean(at_least=10)
    writer.assert_clean(at_least=3)
    assert rebuilding, "the rebuild was never listed"
    assert during >= 3, f"only {during} queries ran during the rebuild"
    assert all(r["state"] == "rebuilding" and 0 <= r["progress"] <= 1 for r in rebuilding)

    # After the swap, the rebuilt view holds the old products and every one added meanwhile.
    response = server.http.get("/queries/ProductCatalog",
                               params={"min_position": max(registered), "wait_ms": 15000})
    assert response.status_code == 200, response.text
    items = {item["sku"]: item for item in response.json()["data"]["items"]}
    assert {sku: items[sku] for sku in baseline} == baseline
    assert len(items) == products + len(registered)
    assert "Traceback" not in server.output()


def test_back_to_back_swaps_never_fail_a_query(store_urls: tuple[str, str]) -> None:
    """Each swap drops the build that queries in flight may have chosen a moment before."""
    write, read = store_urls
    with Runtime(create_app(), store=write, read_store=read, batch_size=50,
                 poll_interval_s=0.01) as runtime:
        seed_shop(runtime, products=10, orders=5)
        catalog = runtime.ask(ProductCatalog(), min_position=runtime.head(), wait_ms=15000).data

        def same_catalog() -> None:
            assert runtime.ask(ProductCatalog()).data == catalog

        hammer = Hammer(same_catalog, threads=4)
        with hammer.running():
            for _ in range(30):
                # A new rebuild may start as soon as the previous one serves.
                generation = runtime.rebuild("product_catalog").generation

                def swapped(generation: int = generation) -> bool:
                    return serving_generation(runtime, "product_catalog") == generation

                wait_for(swapped, what="the swap")
        hammer.assert_clean(at_least=100)
        assert [r.generation for r in runtime.status() if r.name == "product_catalog"] == [31]
