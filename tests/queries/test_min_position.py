"""Read-your-writes: a query can wait, a bounded time, for a position to be applied."""

from __future__ import annotations

import threading

import pytest

from projectionist import InvalidMessage, NotFresh, Runtime
from projectionist_examples.shop import ProductCatalog, RegisterProduct, RestockProduct


def register(runtime: Runtime, sku: str = "a") -> int:
    return runtime.execute(RegisterProduct(sku=sku, name=sku.upper(), price_cents=100)).position


def test_min_position_waits_for_the_projector_thread_and_succeeds(
    shop_runtime: Runtime,
) -> None:
    shop_runtime.start()
    for n in range(5):
        register(shop_runtime, f"sku{n}")
        position = shop_runtime.execute(RestockProduct(sku=f"sku{n}", quantity=n + 1)).position
        answer = shop_runtime.ask(ProductCatalog(), min_position=position, wait_ms=10_000)
        assert answer.freshness.position >= position
        assert [i["available"] for i in answer.data["items"]] == list(range(1, n + 2))


def test_min_position_waits_for_a_catch_up_in_another_thread(shop_runtime: Runtime) -> None:
    position = register(shop_runtime)
    projector = threading.Timer(0.1, shop_runtime.catch_up)
    projector.start()
    try:
        answer = shop_runtime.ask(ProductCatalog(), min_position=position, wait_ms=10_000)
    finally:
        projector.join()
    assert [i["sku"] for i in answer.data["items"]] == ["a"]
    assert answer.freshness.position == position


def test_a_position_already_applied_answers_without_waiting(shop_runtime: Runtime) -> None:
    position = register(shop_runtime)
    shop_runtime.catch_up()
    answer = shop_runtime.ask(ProductCatalog(), min_position=position, wait_ms=0)
    assert answer.freshness.position == position
    assert shop_runtime.ask(ProductCatalog(), min_position=0).freshness.position == position


def test_not_fresh_when_the_position_is_not_applied_within_the_wait(
    shop_runtime: Runtime,
) -> None:
    position = register(shop_runtime)
    with pytest.raises(NotFresh) as raised:
        shop_runtime.ask(ProductCatalog(), min_position=position, wait_ms=50)
    assert raised.value.status == 503
    assert raised.value.freshness.position == 0
    assert raised.value.freshness.head == position
    assert f"not {position}, within 50 ms" in raised.value.detail


def test_not_fresh_for_a_position_beyond_the_head(shop_runtime: Runtime) -> None:
    position = register(shop_runtime)
    shop_runtime.catch_up()
    with pytest.raises(NotFresh) as raised:
        shop_runtime.ask(ProductCatalog(), min_position=position + 1, wait_ms=0)
    assert raised.value.freshness.position == position


def test_wait_ms_above_30000_is_invalid(shop_runtime: Runtime) -> None:
    with pytest.raises(InvalidMessage, match="wait_ms must be between 0 and 30000, got 30001"):
        shop_runtime.ask(ProductCatalog(), min_position=0, wait_ms=30_001)
    shop_runtime.ask(ProductCatalog(), min_position=0, wait_ms=30_000)


@pytest.mark.parametrize(("min_position", "wait_ms"), [(0, -1), (-1, 10), (None, 10)])
def test_bad_wait_parameters_are_invalid(
    shop_runtime: Runtime, min_position: int | None, wait_ms: int
) -> None:
    with pytest.raises(InvalidMessage):
        shop_runtime.ask(ProductCatalog(), min_position=min_position, wait_ms=wait_ms)
