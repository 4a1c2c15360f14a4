"""The orders workload is the one the issue writes down: it is how frameworks are compared."""

from __future__ import annotations

import uuid

from projectionist_bench.workload import (
    AddOrderNote,
    DeliverOrder,
    ExpectedReadModel,
    PayOrder,
    PlaceOrder,
    ShipOrder,
    command_sequence,
    order_commands,
)


def test_order_zero_has_the_written_lines_and_amount() -> None:
    place, pay, ship, deliver = order_commands(0)
    assert isinstance(place, PlaceOrder)
    assert place.order_id == str(uuid.uuid5(uuid.NAMESPACE_URL, "/orders/0"))
    assert place.customer_id == "cust-000"
    assert [(line.sku, line.quantity, line.unit_price_cents) for line in place.lines] == [
        ("SKU-0000", 1, 250), ("SKU-0003", 2, 351), ("SKU-0006", 3, 452),
    ]
    assert isinstance(pay, PayOrder) and pay.amount_cents == 250 + 2 * 351 + 3 * 452
    assert isinstance(ship, ShipOrder)
    assert isinstance(deliver, DeliverOrder)


def test_every_tenth_order_gets_a_note_instead_of_delivery() -> None:
    last = order_commands(509)[-1]
    assert isinstance(last, AddOrderNote)
    assert last.note == "Customer asked for gift wrapping on order #509"
    place = order_commands(509)[0]
    assert isinstance(place, PlaceOrder) and place.customer_id == "cust-009"
    assert place.lines[2].sku == f"SKU-{(7 * 509 + 6) % 1000:04d}"
    assert place.lines[2].unit_price_cents == 250 + (37 * 509 + 202) % 9750


def test_the_sequence_runs_each_order_to_the_end_before_the_next() -> None:
    commands = list(command_sequence(3, 6))
    assert [type(c).__name__ for c in commands] == [
        "PlaceOrder", "PayOrder", "ShipOrder", "DeliverOrder", "PlaceOrder", "PayOrder",
    ]
    assert {c.model_dump()["order_id"] for c in commands[:4]} == {
        order_commands(3)[0].model_dump()["order_id"]
    }


def test_expected_read_model_follows_statuses_and_spending() -> None:
    expected = ExpectedReadModel()
    for command in command_sequence(0, 10 * 4):
        expected.apply(command)
    statuses = sorted(row[1] for row in expected.orders.values())
    assert statuses == ["delivered"] * 9 + ["shipped"]
    assert sum(orders for orders, _ in expected.customers.values()) == 10
    assert sum(spent for _, spent in expected.customers.values()) == sum(
        row[2] for row in expected.orders.values()
    )
