"""A shop whose log was seeded with orders and whose projections caught up on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projectionist import Runtime
from projectionist_bench.rebuild import seed_shop_log
from projectionist_examples.shop import create_app

EVENTS = 600
BATCH = 100


def shop(write: str, read: str, *, roles: str = "command,projector,query") -> Runtime:
    """The shop on these stores, in batches small enough that a catch-up takes several."""
    return Runtime(create_app(), store=write, read_store=read, roles=roles, batch_size=BATCH)


@pytest.fixture
def seeded(schema_store_urls: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """(write store URL, read store URL): EVENTS order events, every projection caught up."""
    write, read = schema_store_urls
    runtime = shop(write, read)
    try:
        runtime.install()
        seed_shop_log(runtime, EVENTS, None)
        runtime.catch_up()
    finally:
        runtime.stop()
    yield write, read
