"""End-to-end fixtures: one real `projectionist serve` process of the shop, and a client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from shop_server import Api, Server


def _no_server_errors(response: httpx.Response) -> None:
    # 503 is the documented answer to an unreached min_position; every other 5xx is a bug.
    if response.status_code >= 500 and response.status_code != 503:
        response.read()
        raise AssertionError(f"{response.request.method} {response.request.url} answered"
                             f" {response.status_code}: {response.text}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shop server for the whole session, with auth on and its start-up banner printed."""
    running = Server(tmp_path_factory.mktemp("serve"))
    try:
        running.wait_until_healthy()
        yield running
    finally:
        running.stop()
    logged = running.stderr
    if "unexpected error" in logged or "Traceback" in logged:
        pytest.fail(f"the server logged an unexpected error:\n{logged[-4000:]}")


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0,
                      event_hooks={"response": [_no_server_errors]}) as http:
        yield http


@pytest.fixture(scope="session")
def api(client: httpx.Client, server: Server) -> Api:
    return Api(client, server)

