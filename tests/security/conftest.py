"""Fixtures of the security tests: real shop servers on SQLite and PostgreSQL, and their clients."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BACKENDS, PostgresDatabases
from tests.security.servers import FUZZED, OLD_SECRET, SECRET, Api, Server, client_for


def _serve(server: Server) -> Iterator[Server]:
    try:
        yield server.wait_until_healthy()
    finally:
        server.stop()
    server.assert_no_server_errors()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shop on SQLite whose tokens may be signed with the current or the previous secret."""
    yield from _serve(Server(tmp_path_factory.mktemp("security"),
                             env={"PROJECTIONIST_SECRET": f"{SECRET},{OLD_SECRET}"}))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory,
              pg_databases: PostgresDatabases) -> Iterator[Server]:
    """A shop on throw-away PostgreSQL databases (write and read)."""
    yield from _serve(Server(tmp_path_factory.mktemp("security-pg"),
                             store=pg_databases.create("pjsecw"),
                             read_store=pg_databases.create("pjsecr")))


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with client_for(server) as http:
        yield http


@pytest.fixture(scope="session")
def api(client: httpx.Client, server: Server) -> Api:
    return Api(client, server)


@pytest.fixture(scope="session", params=BACKENDS)
def backend_api(request: pytest.FixtureRequest, api: Api) -> Iterator[Api]:
    """The shop over HTTP on each backend."""
    if request.param == "sqlite":
        yield api
        return
    pg: Server = request.getfixturevalue("pg_server")
    with client_for(pg) as http:
        yield Api(http, pg)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FUZZED:
        terminalreporter.write_line(
            f"fuzzed requests: {sum(FUZZED.values())} ("
            + ", ".join(f"{name}: {count}" for name, count in FUZZED.items()) + ")")
