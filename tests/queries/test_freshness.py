"""Freshness: every answer says how far its read models are from the head of the log."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from projectionist import Freshness, Runtime
from projectionist_examples.shop import ProductCatalog, RegisterProduct, RestockProduct
from tests.notes import AddNote, CountBoth, CountNotes, FindNotes, Notes


def stock_three_events(runtime: Runtime) -> int:
    runtime.execute(RegisterProduct(sku="a", name="A", price_cents=100))
    runtime.execute(RegisterProduct(sku="b", name="B", price_cents=200))
    return runtime.execute(RestockProduct(sku="a", quantity=4)).position


def test_freshness_of_a_projection_that_is_behind(shop_runtime: Runtime) -> None:
    started = time.time()
    head = stock_three_events(shop_runtime)
    answer = shop_runtime.ask(ProductCatalog())
    asked = time.time()
    assert answer.data == {"items": []}
    freshness = answer.freshness
    assert (freshness.position, freshness.head, freshness.lag_events) == (0, head, head)
    assert 0 < freshness.lag_ms <= (asked - started) * 1000


def test_freshness_of_a_projection_that_caught_up(shop_runtime: Runtime) -> None:
    head = stock_three_events(shop_runtime)
    shop_runtime.catch_up()
    answer = shop_runtime.ask(ProductCatalog())
    assert [item["sku"] for item in answer.data["items"]] == ["a", "b"]
    assert answer.freshness == Freshness(position=head, head=head, lag_events=0, lag_ms=0.0)


def test_freshness_with_an_empty_log(shop_runtime: Runtime) -> None:
    assert shop_runtime.ask(ProductCatalog()).freshness == Freshness(0, 0, 0, 0.0)


def test_lag_ms_is_the_age_of_the_oldest_unapplied_event(
    notes: Notes, store_urls: tuple[str, str]
) -> None:
    runtime = Runtime(notes.app, store=store_urls[0], read_store=store_urls[1], batch_size=1)
    try:
        runtime.execute(AddNote(stream="s", text="a"))
        time.sleep(0.05)  # so that the two events' ages differ
        runtime.execute(AddNote(stream="s", text="b"))
        [counting] = [r for r in runtime.runners if r.name == "note_counts"]
        assert counting.run_once().applied == 1
        assert runtime.log is not None
        oldest_unapplied = runtime.log.read(0, 10)[1]

        before = time.time()
        freshness = runtime.ask(CountNotes(stream="s")).freshness
        after = time.time()
        assert (freshness.position, freshness.lag_events) == (oldest_unapplied.position - 1, 1)
        assert ((before - oldest_unapplied.recorded_at) * 1000 - 1
                <= freshness.lag_ms
                <= (after - oldest_unapplied.recorded_at) * 1000 + 1)
    finally:
        runtime.stop()


def test_freshness_position_is_the_lowest_checkpoint_among_the_projections_read(
    notes_runtime: Runtime,
) -> None:
    head = notes_runtime.execute(AddNote(stream="s", text="a")).position
    [listing] = [r for r in notes_runtime.runners if r.name == "note_list"]
    listing.run_until_caught_up()

    assert notes_runtime.ask(FindNotes()).freshness.position == head
    assert notes_runtime.ask(CountNotes(stream="s")).freshness.position == 0
    both = notes_runtime.ask(CountBoth(stream="s"))
    assert both.data == {"count": 0, "docs": 1}
    assert (both.freshness.position, both.freshness.head, both.freshness.lag_events) == (
        0, head, head,
    )


def test_answer_serializes_data_and_freshness(shop_runtime: Runtime) -> None:
    head = stock_three_events(shop_runtime)
    shop_runtime.catch_up()
    body = shop_runtime.ask(ProductCatalog(search="b")).to_json()
    assert body == {
        "data": {"items": [{"sku": "b", "name": "B", "price_cents": 200, "available": 0,
                            "sold": 0}]},
        "freshness": {"position": head, "head": head, "lag_events": 0, "lag_ms": 0.0,
                      "dead_letters": 0},
    }


@pytest.fixture
def query_only(shop_runtime: Runtime, store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """A second process on the same read store that runs only the query role."""
    from projectionist_examples.shop import create_app

    runtime = Runtime(create_app(), store=store_urls[0], read_store=store_urls[1],
                      roles="query")
    yield runtime
    runtime.stop()


def test_a_query_process_reports_the_freshness_the_projector_recorded(
    shop_runtime: Runtime, query_only: Runtime
) -> None:
    head = stock_three_events(shop_runtime)
    shop_runtime.catch_up()
    answer = query_only.ask(ProductCatalog())
    assert len(answer.data["items"]) == 2
    assert answer.freshness == Freshness(position=head, head=head, lag_events=0, lag_ms=0.0)
