"""Start-up on PostgreSQL: one clear line for a wrong store, and concurrent starts on fresh
databases that all succeed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL
from tests.helpers import free_port, projectionist_command
from tests.postgres.conftest import Servers, process_env

SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*projectionist_command(), "serve", *args, "--port", str(free_port()), "--quiet"],
        cwd=tmp_path, env=process_env("pjtest-startup"), capture_output=True, text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("store", "read_store", "roles", "expected"),
    [
        pytest.param(f"{SERVER}/does_not_exist_db", None, "command,projector,query",
                     'database "does_not_exist_db" does not exist', id="missing-database"),
        pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/shop", None, "command",
                     "127.0.0.1:1/shop is unavailable", id="nothing-listening"),
        pytest.param("not a url", None, "command", "is not a store URL", id="not-a-url"),
        pytest.param("mysql://root@127.0.0.1/shop", None, "command", "unsupported store",
                     id="unsupported"),
        pytest.param("{write}", f"{SERVER}/no_such_read_db", "query",
                     'database "no_such_read_db" does not exist', id="missing-read-database"),
    ],
)
def test_a_wrong_store_stops_serve_with_one_clear_line(
    store: str, read_store: str | None, roles: str, expected: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if "{write}" in store:
        store = store.format(write=request.getfixturevalue("pg_stores")[0])
    args = ["--roles", roles, "--store", store]
    if read_store is not None:
        args += ["--read-store", read_store]
    result = serve(tmp_path, *args)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_processes_starting_at_once_on_fresh_databases_all_start(
    pg_stores: tuple[str, str], servers: Servers
) -> None:
    write, read = pg_stores
    roles = ["command,projector,query", "command,projector,query", "command", "projector",
             "query", "query"]
    started = [
        servers.start(f"pjtest-start-{n}", roles=role, store=write, read_store=read,
                      wait=False)
        for n, role in enumerate(roles)
    ]
    for server in started:
        server.wait_ready()
    command, query = started[2], started[4]
    response = command.command("RegisterProduct", {"sku": "s", "name": "S", "price_cents": 1})
    assert response.status_code == 200, response.text
    answer = query.query("ProductCatalog", min_position=response.json()["position"],
                         wait_ms=15_000)
    assert answer.status_code == 200, answer.text
    assert [item["sku"] for item in answer.json()["data"]["items"]] == ["s"]
    for server in started:
        assert server.running, server.output()
        assert "Traceback" not in server.output()
        assert "ERROR" not in server.output()
