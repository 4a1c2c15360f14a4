"""Command dispatch: validation, atomic handling, optimistic concurrency."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from projectionist import (
    ConcurrencyError,
    InvalidMessage,
    NotRegistered,
    Refused,
    Runtime,
)
from projectionist_examples.shop import PlaceOrder, RegisterProduct, RestockProduct
from projectionist_examples.shop.write_model import orders, stock
from tests.notes import AddNote, AddNotes, ClaimName, Notes


def write_rows(runtime: Runtime, table: sa.Table) -> list[tuple[object, ...]]:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        return [tuple(row) for row in connection.execute(sa.select(table).order_by(*table.c))]


def test_result_lists_the_recorded_events_and_the_last_position(
    notes_runtime: Runtime,
) -> None:
    result = notes_runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
    assert [(e.type, e.stream, e.version) for e in result.events] == [
        ("NoteAdded", "s", 1), ("NoteAdded", "s", 2),
    ]
    assert result.position == result.events[-1].position == notes_runtime.head()
    assert result.to_json() == {
        "command_id": result.command_id,
        "position": result.position,
        "events": [
            {"type": "NoteAdded", "stream": "s", "version": v, "position": e.position}
            for v, e in zip((1, 2), result.events, strict=True)
        ],
    }


def test_each_command_gets_its_own_id(notes_runtime: Runtime) -> None:
    first = notes_runtime.execute(AddNote(stream="s", text="a"))
    second = notes_runtime.execute(AddNote(stream="s", text="a"))
    assert first.command_id != second.command_id


def test_refused_command_writes_neither_rows_nor_events(
    notes_runtime: Runtime, notes: Notes
) -> None:
    notes_runtime.execute(AddNote(stream="s", text="kept"))
    head = notes_runtime.head()
    with pytest.raises(Refused, match="refused after it was written"):
        notes_runtime.execute(AddNote(stream="s", text="lost", fail_after_record=True))
    assert notes_runtime.head() == head
    assert [row[2] for row in write_rows(notes_runtime, notes.rows)] == ["kept"]


def test_partial_stock_reservation_is_rolled_back_when_a_later_line_is_refused(
    shop_runtime: Runtime,
) -> None:
    for sku in ("a", "b"):
        shop_runtime.execute(RegisterProduct(sku=sku, name=sku.upper(), price_cents=100))
    shop_runtime.execute(RestockProduct(sku="a", quantity=5))
    shop_runtime.execute(RestockProduct(sku="b", quantity=1))
    head = shop_runtime.head()
    with pytest.raises(Refused, match="not enough stock of 'b'"):
        shop_runtime.execute(PlaceOrder(order_id="o1", customer_id="c1", lines=[
            {"sku": "a", "quantity": 3}, {"sku": "b", "quantity": 2},
        ]))
    assert write_rows(shop_runtime, stock) == [("a", 5, 0), ("b", 1, 0)]
    assert write_rows(shop_runtime, orders) == []
    assert shop_runtime.head() == head


def test_integrity_error_becomes_refused_and_writes_nothing(
    notes_runtime: Runtime, notes: Notes
) -> None:
    notes_runtime.execute(ClaimName(name="taken"))
    head = notes_runtime.head()
    with pytest.raises(Refused, match="ClaimName conflicts with existing data"):
        notes_runtime.execute(ClaimName(name="taken"))
    assert notes_runtime.head() == head
    assert write_rows(notes_runtime, notes.names) == [("taken",)]
    # The store is usable after the failed transaction.
    notes_runtime.execute(ClaimName(name="free"))
    assert write_rows(notes_runtime, notes.names) == [("free",), ("taken",)]


def test_expected_version_guards_against_a_stale_writer(notes_runtime: Runtime) -> None:
    notes_runtime.execute(AddNote(stream="s", text="a", expected_version=0))
    notes_runtime.execute(AddNote(stream="s", text="b", expected_version=1))
    with pytest.raises(ConcurrencyError) as raised:
        notes_runtime.execute(AddNote(stream="s", text="stale", expected_version=1))
    assert raised.value.detail == "stream 's' is at version 2, expected version 1"
    assert raised.value.status == 409


def test_concurrent_commands_expecting_the_same_version_let_exactly_one_through(
    notes_runtime: Runtime,
) -> None:
    notes_runtime.execute(AddNote(stream="hot", text="first"))
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def contender(n: int) -> None:
        start.wait()
        try:
            notes_runtime.execute(AddNote(stream="hot", text=f"n{n}", expected_version=1))
            outcome = "ok"
        except ConcurrencyError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    assert notes_runtime.log is not None
    assert [e.version for e in notes_runtime.log.read(0, 100)] == [1, 2]


def test_concurrent_commands_on_one_stream_get_consecutive_versions_or_a_conflict(
    notes_runtime: Runtime,
) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def add(n: int) -> None:
        try:
            notes_runtime.execute(AddNote(stream="s", text=str(n)))
            outcome = "ok"
        except ConcurrencyError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 6
    assert notes_runtime.log is not None
    versions = [e.version for e in notes_runtime.log.read(0, 100)]
    assert sorted(versions) == list(range(1, outcomes.count("ok") + 1))


def test_invalid_body_names_the_field_and_what_was_expected(shop_runtime: Runtime) -> None:
    assert shop_runtime.commands is not None
    with pytest.raises(InvalidMessage) as raised:
        shop_runtime.commands.parse("PlaceOrder", {
            "order_id": "o1", "customer_id": "c1",
            "lines": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 0}],
        })
    assert "$.lines[1].quantity" in raised.value.detail
    assert "greater than 0" in raised.value.detail
    assert raised.value.errors[0]["loc"] == ("lines", 1, "quantity")


def test_unknown_fields_are_invalid(shop_runtime: Runtime) -> None:
    assert shop_runtime.commands is not None
    with pytest.raises(InvalidMessage, match=r"\$\.colour"):
        shop_runtime.commands.parse(
            "RegisterProduct", {"sku": "a", "name": "A", "price_cents": 1, "colour": "red"}
        )


def test_json_bodies_are_parsed_too(shop_runtime: Runtime) -> None:
    assert shop_runtime.commands is not None
    command = shop_runtime.commands.parse(
        "RestockProduct", b'{"sku": "a", "quantity": 3}'
    )
    assert command == RestockProduct(sku="a", quantity=3)
    with pytest.raises(InvalidMessage):
        shop_runtime.commands.parse("RestockProduct", b'{"sku": "a", "quantity": ')


def test_unknown_command_type_is_not_registered(shop_runtime: Runtime) -> None:
    assert shop_runtime.commands is not None
    with pytest.raises(NotRegistered, match="'DropTables'"):
        shop_runtime.commands.parse("DropTables", {})
