"""`projectionist serve --events`: a command process relays, a projector-and-query process on
another "machine" serves the shop from the feed, with no route to the write store."""

from __future__ import annotations

import json
from typing import Any

from tests.feeds.test_feeds import UNREACHABLE_STORE
from tests.lifecycle.support import Processes, bearer, run_cli


def test_the_shop_served_from_a_feed_by_a_process_without_the_write_store(
    store_urls: tuple[str, str], events_url: str, processes: Processes,
) -> None:
    write, read = store_urls
    writer = processes.serve("writer", "--roles", "command", "--store", write,
                             "--read-store", read, "--events", events_url)
    reader = processes.serve("reader", "--roles", "projector,query", "--store",
                             UNREACHABLE_STORE, "--read-store", read, "--events", events_url)

    def command(name: str, body: dict[str, Any]) -> int:
        response = writer.http.post(f"/commands/{name}", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["position"])

    command("RegisterProduct", {"sku": "tea", "name": "Tea", "price_cents": 350})
    command("RestockProduct", {"sku": "tea", "quantity": 10})
    position = command("PlaceOrder", {"order_id": "o1", "customer_id": "ann",
                                      "lines": [{"sku": "tea", "quantity": 4}]})
    response = reader.http.get("/queries/GetOrder", params={
        "order_id": "o1", "min_position": position, "wait_ms": 10000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["data"]["status"], body["data"]["total_cents"]) == ("placed", 1400)
    assert body["freshness"]["position"] >= position
    catalog = reader.http.get("/queries/ProductCatalog", params={
        "min_position": position, "wait_ms": 10000}).json()["data"]["items"]
    assert [(i["sku"], i["available"]) for i in catalog] == [("tea", 6)]

    # The reader's operations view takes the head from the feed.
    projections = reader.http.get("/projections", headers=bearer()).json()
    assert {p["name"]: p["head"] for p in projections}["order_summary"] == position
    # So does `projectionist status --events`, with no write store either.
    status = run_cli("status", "--store", UNREACHABLE_STORE, "--read-store", read,
                     "--events", events_url, "--json", cwd=processes.workdir)
    assert status.returncode == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert rows["order_summary"]["head"] == position
    assert rows["order_summary"]["lag_events"] == 0
