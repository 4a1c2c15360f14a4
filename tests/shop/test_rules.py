"""The shop's business rules (docs/http.md): refusals, stock, and what each query answers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import Command, Forbidden, NotFound, Principal, Refused, Runtime
from projectionist_examples.shop import (
    CancelOrder,
    CustomerDashboard,
    GetOrder,
    ListOrders,
    PayOrder,
    PlaceOrder,
    ProductCatalog,
    RegisterProduct,
    RestockProduct,
    SalesReport,
    ShipOrder,
)
from projectionist_examples.shop.write_model import stock

STAFF = Principal(subject="staff", scopes=frozenset({"queries:*"}))
C1 = Principal(subject="c1", scopes=frozenset({"customer", "queries:*"}))


def place(order_id: str, customer_id: str, **lines: int) -> PlaceOrder:
    return PlaceOrder(order_id=order_id, customer_id=customer_id,
                      lines=[{"sku": sku, "quantity": q} for sku, q in lines.items()])


def stock_row(runtime: Runtime, sku: str) -> tuple[int, int]:
    """(on hand, reserved) in the write model."""
    assert runtime.store is not None
    with runtime.store.read() as connection:
        row = connection.execute(
            sa.select(stock.c.on_hand, stock.c.reserved).where(stock.c.sku == sku)).one()
    return int(row.on_hand), int(row.reserved)


def refused(runtime: Runtime, command: Command, match: str) -> None:
    """Asserts the command is refused with a message matching `match`, and writes nothing."""
    head = runtime.head()
    with pytest.raises(Refused, match=match) as raised:
        runtime.execute(command)
    assert raised.value.status == 409
    assert runtime.head() == head


def catalog(runtime: Runtime, **query: Any) -> dict[str, dict[str, Any]]:
    runtime.catch_up()
    items = runtime.ask(ProductCatalog(**query)).data["items"]
    return {item["sku"]: item for item in items}


@pytest.fixture
def shop(shop_runtime: Runtime) -> Runtime:
    """Products a (2.50) and b (10.00) in stock: 10 of a, 5 of b."""
    shop_runtime.execute(RegisterProduct(sku="a", name="Apple", price_cents=250))
    shop_runtime.execute(RegisterProduct(sku="b", name="Banana_Box 100%", price_cents=1000))
    shop_runtime.execute(RestockProduct(sku="a", quantity=10))
    shop_runtime.execute(RestockProduct(sku="b", quantity=5))
    return shop_runtime


@pytest.fixture
def trading(shop: Runtime) -> Runtime:
    """o1 (c1) shipped, o2 (c1) paid then cancelled, o3 (c2) placed."""
    shop.execute(place("o1", "c1", a=2))
    shop.execute(PayOrder(order_id="o1", amount_cents=500))
    shop.execute(ShipOrder(order_id="o1"))
    shop.execute(place("o2", "c1", b=1))
    shop.execute(PayOrder(order_id="o2", amount_cents=1000))
    shop.execute(CancelOrder(order_id="o2", reason="changed my mind"))
    shop.execute(place("o3", "c2", a=1, b=2))
    shop.catch_up()
    return shop


# Commands: what each refuses (409), and nothing is written when it does.


def test_register_product_refuses_a_registered_sku(shop: Runtime) -> None:
    refused(shop, RegisterProduct(sku="a", name="Other", price_cents=1), "already registered")
    assert catalog(shop)["a"]["name"] == "Apple"


def test_restock_refuses_an_unknown_sku(shop: Runtime) -> None:
    refused(shop, RestockProduct(sku="zzz", quantity=1), "'zzz' is not registered")


def test_restock_adds_to_on_hand(shop: Runtime) -> None:
    shop.execute(RestockProduct(sku="a", quantity=3))
    assert stock_row(shop, "a") == (13, 0)
    assert catalog(shop)["a"]["available"] == 13


def test_place_order_refuses_a_taken_order_id(shop: Runtime) -> None:
    shop.execute(place("o1", "c1", a=1))
    refused(shop, place("o1", "c2", b=1), "'o1' already exists")
    assert stock_row(shop, "b") == (5, 0)


def test_place_order_refuses_an_unknown_sku(shop: Runtime) -> None:
    refused(shop, place("o1", "c1", a=1, nope=1), "unknown sku 'nope'")
    assert stock_row(shop, "a") == (10, 0)


def test_place_order_refuses_more_than_is_available(shop: Runtime) -> None:
    shop.execute(place("o1", "c1", a=7))
    refused(shop, place("o2", "c1", a=4), "not enough stock of 'a': 3 available, 4 ordered")
    assert stock_row(shop, "a") == (10, 7)


def test_place_order_counts_repeated_lines_of_one_sku_together(shop: Runtime) -> None:
    refused(shop, PlaceOrder(order_id="o1", customer_id="c1", lines=[
        {"sku": "b", "quantity": 3}, {"sku": "b", "quantity": 3},
    ]), "not enough stock of 'b'")
    shop.execute(PlaceOrder(order_id="o1", customer_id="c1", lines=[
        {"sku": "b", "quantity": 2}, {"sku": "b", "quantity": 3},
    ]))
    assert stock_row(shop, "b") == (5, 5)


def test_place_order_reserves_stock_at_the_current_price(shop: Runtime) -> None:
    shop.execute(place("o1", "c1", a=3, b=1))
    assert stock_row(shop, "a") == (10, 3)
    shop.catch_up()
    order = shop.ask(GetOrder(order_id="o1")).data
    assert order["total_cents"] == 3 * 250 + 1000
    assert order["lines"] == [
        {"sku": "a", "quantity": 3, "unit_price_cents": 250},
        {"sku": "b", "quantity": 1, "unit_price_cents": 1000},
    ]
    assert catalog(shop)["a"]["available"] == 7


def test_pay_order_refuses_an_unknown_order(shop: Runtime) -> None:
    refused(shop, PayOrder(order_id="ghost", amount_cents=0), "'ghost' does not exist")


def test_pay_order_refuses_an_amount_that_differs_from_the_total(shop: Runtime) -> None:
    shop.execute(place("o1", "c1", a=2))
    refused(shop, PayOrder(order_id="o1", amount_cents=499), "totals 500 cents, not 499")
    refused(shop, PayOrder(order_id="o1", amount_cents=501), "totals 500 cents, not 501")


@pytest.mark.parametrize("status", ["paid", "shipped", "cancelled"])
def test_pay_order_refuses_an_order_that_is_not_placed(shop: Runtime, status: str) -> None:
    move_to(shop, "o1", status)
    refused(shop, PayOrder(order_id="o1", amount_cents=500), f"is {status}, not placed")


@pytest.mark.parametrize("status", ["placed", "shipped", "cancelled"])
def test_ship_order_refuses_an_order_that_is_not_paid(shop: Runtime, status: str) -> None:
    move_to(shop, "o1", status)
    refused(shop, ShipOrder(order_id="o1"), f"is {status}, not paid")


def test_ship_order_refuses_an_unknown_order(shop: Runtime) -> None:
    refused(shop, ShipOrder(order_id="ghost"), "does not exist")


def test_ship_order_takes_the_reserved_units_off_on_hand(shop: Runtime) -> None:
    move_to(shop, "o1", "shipped")
    assert stock_row(shop, "a") == (8, 0)
    assert catalog(shop)["a"] == {"sku": "a", "name": "Apple", "price_cents": 250,
                                  "available": 8, "sold": 2}


def test_cancel_order_refuses_an_unknown_order(shop: Runtime) -> None:
    refused(shop, CancelOrder(order_id="ghost", reason=""), "does not exist")


@pytest.mark.parametrize("status", ["shipped", "cancelled"])
def test_cancel_order_refuses_a_shipped_or_cancelled_order(shop: Runtime, status: str) -> None:
    move_to(shop, "o1", status)
    refused(shop, CancelOrder(order_id="o1", reason="late"), f"is {status} and cannot be")


@pytest.mark.parametrize("status", ["placed", "paid"])
def test_cancel_order_releases_the_reservation(shop: Runtime, status: str) -> None:
    move_to(shop, "o1", status)
    shop.execute(CancelOrder(order_id="o1", reason="no longer needed"))
    assert stock_row(shop, "a") == (10, 0)
    assert catalog(shop)["a"]["available"] == 10
    assert catalog(shop)["a"]["sold"] == 0


def test_cancelling_a_paid_order_refunds_it(shop: Runtime) -> None:
    move_to(shop, "o1", "paid")
    shop.execute(CancelOrder(order_id="o1", reason="refund"))
    shop.catch_up()
    [day] = shop.ask(SalesReport()).data["days"]
    assert (day["orders"], day["revenue_cents"], day["cancellations"]) == (1, 0, 1)
    assert shop.ask(CustomerDashboard(customer_id="c1")).data["spent_cents"] == 0


def move_to(shop: Runtime, order_id: str, status: str) -> None:
    """Places an order of two apples (500 cents) and moves it to `status`."""
    shop.execute(place(order_id, "c1", a=2))
    if status in ("paid", "shipped"):
        shop.execute(PayOrder(order_id=order_id, amount_cents=500))
    if status == "shipped":
        shop.execute(ShipOrder(order_id=order_id))
    if status == "cancelled":
        shop.execute(CancelOrder(order_id=order_id, reason="test"))


# Queries: data shapes and meaning.


def test_get_order_returns_the_order_document(trading: Runtime) -> None:
    order = trading.ask(GetOrder(order_id="o3")).data
    assert set(order) == {"order_id", "customer_id", "status", "total_cents", "lines",
                          "placed_at", "updated_at"}
    assert (order["order_id"], order["customer_id"], order["status"]) == ("o3", "c2", "placed")
    assert order["total_cents"] == 250 + 2 * 1000
    assert order["placed_at"] == order["updated_at"]
    datetime.fromisoformat(order["placed_at"])


def test_get_order_follows_the_status_and_the_update_time(trading: Runtime) -> None:
    order = trading.ask(GetOrder(order_id="o1")).data
    assert order["status"] == "shipped"
    assert order["updated_at"] >= order["placed_at"]
    assert trading.ask(GetOrder(order_id="o2")).data["status"] == "cancelled"


def test_get_order_of_an_unknown_order_is_not_found(trading: Runtime) -> None:
    with pytest.raises(NotFound, match="'nope'") as raised:
        trading.ask(GetOrder(order_id="nope"))
    assert raised.value.status == 404


def test_list_orders_pages_with_a_cursor_newest_first(shop: Runtime) -> None:
    for n in range(7):
        shop.execute(place(f"o{n}", f"c{n % 2}", a=1))
    shop.catch_up()
    seen: list[dict[str, Any]] = []
    after = None
    pages = 0
    while True:
        page = shop.ask(ListOrders(limit=3, after=after)).data
        assert len(page["items"]) <= 3
        seen += page["items"]
        pages += 1
        if page["next"] is None:
            break
        after = page["next"]
    assert pages == 3
    assert sorted(o["order_id"] for o in seen) == [f"o{n}" for n in range(7)]
    order = [(o["placed_at"], o["order_id"]) for o in seen]
    assert order == sorted(order, reverse=True)


def test_list_orders_filters_by_customer_and_status(trading: Runtime) -> None:
    def ids(**query: Any) -> list[str]:
        return sorted(o["order_id"] for o in trading.ask(ListOrders(**query)).data["items"])

    assert ids() == ["o1", "o2", "o3"]
    assert ids(customer_id="c1") == ["o1", "o2"]
    assert ids(status="placed") == ["o3"]
    assert ids(customer_id="c1", status="cancelled") == ["o2"]
    assert ids(customer_id="nobody") == []
    assert trading.ask(ListOrders(limit=1)).data["next"] is not None


def test_customer_dashboard_counts(trading: Runtime) -> None:
    c1 = trading.ask(CustomerDashboard(customer_id="c1")).data
    c2 = trading.ask(CustomerDashboard(customer_id="c2")).data
    last_order_at = {o["customer_id"]: o["placed_at"]
                     for o in sorted(trading.ask(ListOrders()).data["items"],
                                     key=lambda o: o["placed_at"])}
    assert c1 == {"customer_id": "c1", "orders": 2, "open_orders": 0, "spent_cents": 500,
                  "last_order_at": last_order_at["c1"]}
    assert c2 == {"customer_id": "c2", "orders": 1, "open_orders": 1, "spent_cents": 0,
                  "last_order_at": last_order_at["c2"]}


def test_customer_dashboard_of_a_customer_without_orders_is_not_found(
    trading: Runtime,
) -> None:
    with pytest.raises(NotFound):
        trading.ask(CustomerDashboard(customer_id="c9"))


def test_sales_report_counts_orders_revenue_and_cancellations_by_day(
    trading: Runtime,
) -> None:
    days = trading.ask(SalesReport()).data["days"]
    assert days and all(set(d) == {"day", "orders", "revenue_cents", "cancellations"}
                        for d in days)
    assert sum(d["orders"] for d in days) == 3
    assert sum(d["revenue_cents"] for d in days) == 500 + 1000 - 1000
    assert sum(d["cancellations"] for d in days) == 1
    assert [d["day"] for d in days] == sorted(d["day"] for d in days)


def test_sales_report_keeps_the_days_asked_for(trading: Runtime) -> None:
    days = [date.fromisoformat(d["day"]) for d in trading.ask(SalesReport()).data["days"]]
    first, last = days[0], days[-1]
    assert trading.ask(SalesReport(day_from=last + timedelta(days=1))).data == {"days": []}
    assert trading.ask(SalesReport(day_to=first - timedelta(days=1))).data == {"days": []}
    kept = trading.ask(SalesReport(day_from=first, day_to=last)).data["days"]
    assert [date.fromisoformat(d["day"]) for d in kept] == days


def test_sales_report_leaves_out_days_without_activity(shop: Runtime) -> None:
    shop.catch_up()
    assert shop.ask(SalesReport()).data == {"days": []}


def test_product_catalog_available_and_sold(trading: Runtime) -> None:
    assert catalog(trading) == {
        # a: 10 on hand, 2 shipped (o1), 1 reserved (o3); sold 2 (o1).
        "a": {"sku": "a", "name": "Apple", "price_cents": 250, "available": 7, "sold": 2},
        # b: 5 on hand, 2 reserved (o3); o2 was paid, then cancelled: not sold.
        "b": {"sku": "b", "name": "Banana_Box 100%", "price_cents": 1000, "available": 3,
              "sold": 0},
    }


def test_product_catalog_search_matches_sku_or_name_literally(shop: Runtime) -> None:
    shop.catch_up()
    # `%` and `_` match themselves only: "_pple" and "n%" would match as LIKE wildcards.
    cases = {"APP": ["a"], "b": ["b"], "box": ["b"], "100%": ["b"], "a_b": ["b"],
             "_pple": [], "n%": [], "a%b": [], "": ["a", "b"], "zzz": []}
    found = {search: [i["sku"] for i in shop.ask(ProductCatalog(search=search)).data["items"]]
             for search in cases}
    assert found == cases


# Customers read only their own orders and dashboard.


def test_a_customer_cannot_read_another_customers_dashboard(trading: Runtime) -> None:
    with pytest.raises(Forbidden):
        trading.ask(CustomerDashboard(customer_id="c2"), principal=C1)
    assert trading.ask(CustomerDashboard(customer_id="c1"), principal=C1).data["orders"] == 2


def test_a_customer_cannot_read_another_customers_order(trading: Runtime) -> None:
    with pytest.raises(Forbidden):
        trading.ask(GetOrder(order_id="o3"), principal=C1)
    assert trading.ask(GetOrder(order_id="o1"), principal=C1).data["customer_id"] == "c1"


def test_a_customer_lists_only_their_own_orders(trading: Runtime) -> None:
    items = trading.ask(ListOrders(), principal=C1).data["items"]
    assert sorted(o["order_id"] for o in items) == ["o1", "o2"]
    with pytest.raises(Forbidden):
        trading.ask(ListOrders(customer_id="c2"), principal=C1)
    assert len(trading.ask(ListOrders(customer_id="c1"), principal=C1).data["items"]) == 2


def test_staff_read_every_customer(trading: Runtime) -> None:
    assert trading.ask(CustomerDashboard(customer_id="c2"), principal=STAFF).data["orders"] == 1
    assert trading.ask(GetOrder(order_id="o3"), principal=STAFF).data["customer_id"] == "c2"
    assert len(trading.ask(ListOrders(), principal=STAFF).data["items"]) == 3
