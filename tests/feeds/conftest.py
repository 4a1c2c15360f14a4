"""Fixtures of the feed tests: a JetStream stream or Redis stream of its own per test."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

NATS_URL = os.environ.get("PROJECTIONIST_TEST_NATS", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("PROJECTIONIST_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require(url: str, what: str) -> None:
    """A test that needs the server fails without it (in CI and here alike); never skips."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError as error:
        pytest.fail(f"{what} is not reachable at {url}: {error} (`.ci/run` starts it)")


async def _delete_stream(name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(name)
    except NotFoundError:
        pass
    finally:
        await client.close()


@pytest.fixture
def nats_url() -> Iterator[str]:
    """A NATS URL naming a JetStream stream that no other test uses."""
    require(NATS_URL, "NATS with JetStream")
    name = f"TEST_{uuid.uuid4().hex[:12].upper()}"
    yield f"{NATS_URL}?stream={name}"
    asyncio.run(_delete_stream(name))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL naming a stream key that no other test uses."""
    import redis

    require(REDIS_URL, "Redis")
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?stream={name}"
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(f"projectionist:{name}")
    client.close()


@pytest.fixture(params=["nats", "redis"])
def events_url(request: pytest.FixtureRequest) -> str:
    """Each feed engine in turn."""
    return str(request.getfixturevalue(f"{request.param}_url"))

