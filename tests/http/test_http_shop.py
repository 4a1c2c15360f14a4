"""Every shop command and query over HTTP: status codes and the exact shapes of docs/http.md."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import pytest
from shop_server import Api, uid

COMMAND_KEYS = {"command_id", "position", "events"}
EVENT_KEYS = {"type", "stream", "version", "position"}
ANSWER_KEYS = {"data", "freshness"}
FRESHNESS_KEYS = {"position", "head", "lag_events", "lag_ms", "dead_letters"}
ORDER_KEYS = {"order_id", "customer_id", "status", "total_cents", "lines", "placed_at",
              "updated_at"}


def assert_command_answer(body: dict[str, Any], events: list[tuple[str, str, int]]) -> None:
    """A command's 200 body: a uuid, the last event's position, and (type, stream, version)s."""
    assert set(body) == COMMAND_KEYS
    assert str(uuid.UUID(body["command_id"])) == body["command_id"]
    assert [(e["type"], e["stream"], e["version"]) for e in body["events"]] == events
    for event in body["events"]:
        assert set(event) == EVENT_KEYS
        assert type(event["position"]) is int and event["position"] > 0
    assert body["position"] == body["events"][-1]["position"]


def assert_query_answer(body: dict[str, Any]) -> None:
    """A query's 200 body: data, and freshness with integer positions and a numeric lag."""
    assert set(body) == ANSWER_KEYS
    freshness = body["freshness"]
    assert set(freshness) == FRESHNESS_KEYS
    for key in ("position", "head", "lag_events"):
        assert type(freshness[key]) is int and freshness[key] >= 0
    assert isinstance(freshness["lag_ms"], int | float) and freshness["lag_ms"] >= 0
    assert freshness["position"] <= freshness["head"]
    assert freshness["lag_events"] == freshness["head"] - freshness["position"]


def timestamp(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


def sales_totals(api: Api, position: int) -> dict[str, int]:
    days = api.fresh("SalesReport", {}, position)["days"]
    return {key: sum(day[key] for day in days)
            for key in ("orders", "revenue_cents", "cancellations")}


class Story:
    """Two products and one customer's four orders, taken through every command."""

    def __init__(self, api: Api) -> None:
        self.sales_before = sales_totals(api, api.head())
        self.sku_a, self.sku_b = uid("sku-a"), uid("sku-b")
        self.customer = uid("customer")
        self.orders = {name: uid(f"order-{name}") for name in ("o1", "o2", "o3", "o4")}
        self.answers: dict[str, dict[str, Any]] = {}
        o = self.orders
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("register_a", "RegisterProduct",
             {"sku": self.sku_a, "name": f"Apple {self.sku_a}", "price_cents": 125}),
            ("register_b", "RegisterProduct",
             {"sku": self.sku_b, "name": f"Bread {self.sku_b}", "price_cents": 300}),
            ("restock_a", "RestockProduct", {"sku": self.sku_a, "quantity": 10}),
            ("restock_b", "RestockProduct", {"sku": self.sku_b, "quantity": 5}),
            ("place_o1", "PlaceOrder", {"order_id": o["o1"], "customer_id": self.customer,
                                        "lines": [{"sku": self.sku_a, "quantity": 2},
                                                  {"sku": self.sku_b, "quantity": 1}]}),
            ("place_o2", "PlaceOrder", {"order_id": o["o2"], "customer_id": self.customer,
                                        "lines": [{"sku": self.sku_a, "quantity": 3}]}),
            ("place_o3", "PlaceOrder", {"order_id": o["o3"], "customer_id": self.customer,
                                        "lines": [{"sku": self.sku_b, "quantity": 1}]}),
            ("place_o4", "PlaceOrder", {"order_id": o["o4"], "customer_id": self.customer,
                                        "lines": [{"sku": self.sku_a, "quantity": 1}]}),
            ("pay_o1", "PayOrder", {"order_id": o["o1"], "amount_cents": 550}),
            ("ship_o1", "ShipOrder", {"order_id": o["o1"]}),
            ("pay_o2", "PayOrder", {"order_id": o["o2"], "amount_cents": 375}),
            ("cancel_o2", "CancelOrder", {"order_id": o["o2"], "reason": "changed my mind"}),
            ("cancel_o4", "CancelOrder", {"order_id": o["o4"], "reason": ""}),
        ]
        for label, name, body in steps:
            self.answers[label] = api.accepted(name, body)
        self.position = self.answers["cancel_o4"]["position"]


@pytest.fixture(scope="module")
def story(api: Api) -> Story:
    return Story(api)


def expected_events(story: Story) -> dict[str, list[tuple[str, str, int]]]:
    a, b = f"product-{story.sku_a}", f"product-{story.sku_b}"
    o = {name: f"order-{order_id}" for name, order_id in story.orders.items()}
    return {
        "register_a": [("ProductRegistered", a, 1)],
        "register_b": [("ProductRegistered", b, 1)],
        "restock_a": [("ProductRestocked", a, 2)],
        "restock_b": [("ProductRestocked", b, 2)],
        "place_o1": [("OrderPlaced", o["o1"], 1)],
        "place_o2": [("OrderPlaced", o["o2"], 1)],
        "place_o3": [("OrderPlaced", o["o3"], 1)],
        "place_o4": [("OrderPlaced", o["o4"], 1)],
        "pay_o1": [("OrderPaid", o["o1"], 2)],
        "ship_o1": [("OrderShipped", o["o1"], 3)],
        "pay_o2": [("OrderPaid", o["o2"], 2)],
        "cancel_o2": [("OrderCancelled", o["o2"], 3)],
        "cancel_o4": [("OrderCancelled", o["o4"], 2)],
    }


def test_every_command_answers_its_id_position_and_events(story: Story) -> None:
    expected = expected_events(story)
    assert set(story.answers) == set(expected)
    for label, body in story.answers.items():
        assert_command_answer(body, expected[label])


def test_command_positions_grow_in_the_order_commands_were_handled(story: Story) -> None:
    positions = [body["position"] for body in story.answers.values()]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    ids = [body["command_id"] for body in story.answers.values()]
    assert len(set(ids)) == len(ids)


def test_get_order_answers_the_order_with_its_lines_and_times(api: Api, story: Story) -> None:
    response = api.query("GetOrder", {"order_id": story.orders["o1"],
                                      "min_position": story.position})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_query_answer(body)
    order = body["data"]
    assert set(order) == ORDER_KEYS
    assert {k: order[k] for k in ("order_id", "customer_id", "status", "total_cents", "lines")} == {
        "order_id": story.orders["o1"],
        "customer_id": story.customer,
        "status": "shipped",
        "total_cents": 550,
        "lines": [{"sku": story.sku_a, "quantity": 2, "unit_price_cents": 125},
                  {"sku": story.sku_b, "quantity": 1, "unit_price_cents": 300}],
    }
    assert timestamp(order["placed_at"]) < timestamp(order["updated_at"])


def test_get_order_states_each_orders_status(api: Api, story: Story) -> None:
    statuses = {name: api.fresh("GetOrder", {"order_id": order_id}, story.position)["status"]
                for name, order_id in story.orders.items()}
    assert statuses == {"o1": "shipped", "o2": "cancelled", "o3": "placed", "o4": "cancelled"}


def test_get_order_of_an_unknown_order_is_404(api: Api, story: Story) -> None:
    response = api.query("GetOrder", {"order_id": "no-such-order"})
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert "no-such-order" in body["detail"]


def test_list_orders_pages_a_customers_orders_newest_first(api: Api, story: Story) -> None:
    everything = api.fresh("ListOrders", {"customer_id": story.customer}, story.position)
    assert set(everything) == {"items", "next"}
    assert [o["order_id"] for o in everything["items"]] == [
        story.orders[name] for name in ("o4", "o3", "o2", "o1")
    ]
    assert everything["next"] is None
    assert all(set(order) == ORDER_KEYS for order in everything["items"])
    paged, cursor = [], None
    for _ in range(5):
        params = {"customer_id": story.customer, "limit": 1}
        if cursor is not None:
            params["after"] = cursor
        page = api.fresh("ListOrders", params, story.position)
        assert len(page["items"]) == 1
        paged += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert paged == everything["items"]


def test_list_orders_filters_by_status(api: Api, story: Story) -> None:
    cancelled = api.fresh("ListOrders", {"customer_id": story.customer, "status": "cancelled"},
                          story.position)
    assert {o["order_id"] for o in cancelled["items"]} == {story.orders["o2"], story.orders["o4"]}
    assert all(o["status"] == "cancelled" for o in cancelled["items"])


def test_customer_dashboard_counts_orders_open_orders_and_spending(api: Api,
                                                                   story: Story) -> None:
    response = api.query("CustomerDashboard", {"customer_id": story.customer,
                                                "min_position": story.position})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_query_answer(body)
    dashboard = body["data"]
    assert set(dashboard) == {"customer_id", "orders", "open_orders", "spent_cents",
                              "last_order_at"}
    last_placed = api.fresh("GetOrder", {"order_id": story.orders["o4"]},
                            story.position)["placed_at"]
    assert dashboard == {"customer_id": story.customer, "orders": 4, "open_orders": 1,
                         "spent_cents": 550, "last_order_at": last_placed}


def test_customer_dashboard_of_a_customer_without_orders_is_404(api: Api) -> None:
    response = api.query("CustomerDashboard", {"customer_id": "nobody-at-all"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_sales_report_adds_orders_revenue_and_cancellations_by_day(api: Api,
                                                                   story: Story) -> None:
    response = api.query("SalesReport", {"min_position": story.position})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_query_answer(body)
    assert set(body["data"]) == {"days"}
    for day in body["data"]["days"]:
        assert set(day) == {"day", "orders", "revenue_cents", "cancellations"}
        date.fromisoformat(day["day"])
    after = sales_totals(api, story.position)
    before = story.sales_before
    assert {key: after[key] - before[key] for key in after} == {
        "orders": 4, "revenue_cents": 550 + 375 - 375, "cancellations": 2,
    }


def test_sales_report_leaves_out_days_without_activity(api: Api, story: Story) -> None:
    days = api.fresh("SalesReport", {"day_from": "2001-01-01", "day_to": "2001-12-31"},
                     story.position)
    assert days == {"days": []}
    today = api.fresh("SalesReport", {}, story.position)["days"][-1]["day"]
    one_day = api.fresh("SalesReport", {"day_from": today, "day_to": today}, story.position)
    assert [day["day"] for day in one_day["days"]] == [today]


def test_product_catalog_states_availability_and_units_sold(api: Api, story: Story) -> None:
    response = api.query("ProductCatalog", {"search": story.sku_a,
                                             "min_position": story.position})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_query_answer(body)
    assert body["data"] == {"items": [
        {"sku": story.sku_a, "name": f"Apple {story.sku_a}", "price_cents": 125,
         "available": 8, "sold": 2},
    ]}
    bread = api.fresh("ProductCatalog", {"search": story.sku_b}, story.position)["items"]
    assert bread == [{"sku": story.sku_b, "name": f"Bread {story.sku_b}", "price_cents": 300,
                      "available": 3, "sold": 1}]


def test_product_catalog_lists_every_product_in_sku_order(api: Api, story: Story) -> None:
    items = api.fresh("ProductCatalog", {}, story.position)["items"]
    skus = [item["sku"] for item in items]
    assert skus == sorted(skus)
    assert {story.sku_a, story.sku_b} <= set(skus)
    assert api.fresh("ProductCatalog", {"search": "Bread " + story.sku_b[:12]},
                     story.position)["items"][0]["sku"] == story.sku_b
