"""Fixtures of the JetStream tests: a stream of its own per test, deleted afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

NATS_URL = os.environ.get("PROJECTIONIST_TEST_NATS", "nats://127.0.0.1:4222")


def _nats_reachable() -> None:
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=2).close()
    except OSError as error:
        # A test that needs NATS fails without it (in CI and here alike); it never skips.
        pytest.fail(f"NATS with JetStream is not reachable at {NATS_URL}: {error}"
                    " (`.ci/run` starts it)")


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
def events_url() -> Iterator[str]:
    """A NATS URL naming a stream that no other test uses."""
    _nats_reachable()
    name = f"TEST_{uuid.uuid4().hex[:12].upper()}"
    yield f"{NATS_URL}?stream={name}"
    asyncio.run(_delete_stream(name))
