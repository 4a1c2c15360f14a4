"""The shop's order_summary is partitioned: /projections and /metrics show its partitions."""

from __future__ import annotations

from shop_server import Api

from tests.helpers import wait_for


def test_projections_list_each_partition_with_its_owner(api: Api) -> None:
    sku = api.product()
    _order_id, position = api.order("cust-partitions", [(sku, 1)])
    api.fresh("GetOrder", {"order_id": _order_id}, position)

    def summary() -> dict:
        rows = api.client.get("/projections", headers=api.staff).json()
        return next(r for r in rows if r["name"] == "order_summary" and r["version"] == 2)

    row = summary()
    assert [p["partition"] for p in row["partitions"]] == [0, 1, 2, 3]
    # One process serves the shop: it holds every partition.
    wait_for(lambda: len({p["owner"] for p in summary()["partitions"]} - {None}) == 1)
    # The build's position is its lowest partition's.
    wait_for(lambda: summary()["position"] >= position)
    row = summary()
    assert row["position"] == min(p["position"] for p in row["partitions"])

    metrics = api.client.get("/metrics").text
    for partition in range(4):
        series = (
            f'projectionist_projection_partition_position{{partition="{partition}",'
            'projection="order_summary",version="2"}'
        )
        assert series in metrics
