"""Idempotency keys: the same request again gets the first answer again, and nothing new."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from projectionist import CommandResult, IdempotencyKeyReused, Principal, Refused, Runtime
from projectionist_examples.shop import PlaceOrder, RegisterProduct, RestockProduct, create_app
from projectionist_examples.shop.write_model import stock

CLERK = Principal(subject="clerk", scopes=frozenset({"commands:*"}))
OTHER_CLERK = Principal(subject="other", scopes=frozenset({"commands:*"}))


@pytest.fixture
def stocked(shop_runtime: Runtime) -> Runtime:
    shop_runtime.execute(RegisterProduct(sku="a", name="A", price_cents=250))
    shop_runtime.execute(RestockProduct(sku="a", quantity=10))
    return shop_runtime


def order(order_id: str = "o1", quantity: int = 2) -> PlaceOrder:
    return PlaceOrder(order_id=order_id, customer_id="c1",
                      lines=[{"sku": "a", "quantity": quantity}])


def reserved(runtime: Runtime) -> int:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        return int(connection.execute(
            sa.select(stock.c.reserved).where(stock.c.sku == "a")).scalar_one())


def test_same_key_and_command_returns_the_first_result_without_new_events(
    stocked: Runtime,
) -> None:
    first = stocked.execute(order(), principal=CLERK, idempotency_key="k1")
    head = stocked.head()
    again = stocked.execute(order(), principal=CLERK, idempotency_key="k1")
    assert again == first
    assert isinstance(again, CommandResult)
    assert stocked.head() == head
    assert reserved(stocked) == 2


def test_same_key_with_a_different_command_is_refused(stocked: Runtime) -> None:
    stocked.execute(order(), principal=CLERK, idempotency_key="k1")
    head = stocked.head()
    with pytest.raises(IdempotencyKeyReused) as raised:
        stocked.execute(order(quantity=3), principal=CLERK, idempotency_key="k1")
    assert raised.value.status == 422
    assert "different request" in raised.value.detail
    with pytest.raises(IdempotencyKeyReused):
        stocked.execute(RestockProduct(sku="a", quantity=2), principal=CLERK,
                        idempotency_key="k1")
    assert stocked.head() == head
    assert reserved(stocked) == 2


def test_different_keys_run_the_command_each_time(stocked: Runtime) -> None:
    stocked.execute(RestockProduct(sku="a", quantity=1), principal=CLERK, idempotency_key="x")
    stocked.execute(RestockProduct(sku="a", quantity=1), principal=CLERK, idempotency_key="y")
    stocked.execute(RestockProduct(sku="a", quantity=1), principal=CLERK)
    stocked.execute(RestockProduct(sku="a", quantity=1), principal=CLERK)
    assert stocked.store is not None
    with stocked.store.read() as connection:
        assert connection.execute(sa.select(stock.c.on_hand)).scalar_one() == 14


def test_keys_belong_to_their_subject(stocked: Runtime) -> None:
    mine = stocked.execute(order("o1"), principal=CLERK, idempotency_key="k")
    theirs = stocked.execute(order("o2"), principal=OTHER_CLERK, idempotency_key="k")
    assert mine.command_id != theirs.command_id
    assert reserved(stocked) == 4


def test_a_refused_command_does_not_use_up_its_key(stocked: Runtime) -> None:
    with pytest.raises(Refused, match="not enough stock"):
        stocked.execute(order(quantity=50), principal=CLERK, idempotency_key="k")
    stocked.execute(RestockProduct(sku="a", quantity=40))
    result = stocked.execute(order(quantity=50), principal=CLERK, idempotency_key="k")
    assert result.events[0].type == "OrderPlaced"


@pytest.fixture
def other_processes(stocked: Runtime, store_urls: tuple[str, str]) -> Iterator[list[Runtime]]:
    """Two more command sides on the same stores: their transactions really run concurrently."""
    others = [Runtime(create_app(), store=store_urls[0], read_store=store_urls[1],
                      roles="command") for _ in range(2)]
    yield others
    for runtime in others:
        runtime.stop()


def test_concurrent_retries_with_one_key_record_the_command_once(
    stocked: Runtime, other_processes: list[Runtime]
) -> None:
    runtimes = [stocked, *other_processes]
    results: list[CommandResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def retry(n: int) -> None:
        start.wait()
        try:
            result = runtimes[n % 3].execute(order(), principal=CLERK, idempotency_key="k")
            with lock:
                results.append(result)
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=retry, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.command_id for r in results}) == 1
    assert reserved(stocked) == 2
