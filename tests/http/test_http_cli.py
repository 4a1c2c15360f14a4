"""The command line around a running server: tokens, status, start-up checks and banner."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from shop_server import PROJECTIONS, Api, Server, run_cli, server_env, uid

from tests.helpers import free_port

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
STATUS_FIELDS = {"name", "version", "state", "position", "head", "lag_events", "lag_ms",
                 "dead_letters"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_prints_a_token_the_server_accepts(api: Api) -> None:
    printed = run_cli("token", "--scope", "queries:*", "--sub", "x", cwd=api.server.cwd)
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    assert JWT.fullmatch(token), printed.stdout
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["scope"]) == ("x", "queries:*")
    assert api.query("ProductCatalog", headers=bearer(token)).status_code == 200
    refused = api.command("RestockProduct", {"sku": "s", "quantity": 1}, headers=bearer(token))
    assert refused.status_code == 403


def test_token_takes_several_scopes_and_a_ttl(api: Api) -> None:
    printed = run_cli("token", "--scope", "commands:RegisterProduct", "--scope", "queries:*",
                      "--ttl", "120", cwd=api.server.cwd)
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
    sku = uid("sku")
    registered = api.command("RegisterProduct", {"sku": sku, "name": "cli", "price_cents": 3},
                             headers=bearer(token))
    assert registered.status_code == 200, registered.text


def test_status_json_lists_the_four_projections(api: Api) -> None:
    position = api.accepted("RestockProduct", {"sku": api.product(), "quantity": 1})["position"]
    api.fresh("ProductCatalog", {}, position)
    printed = run_cli("status", "--json", cwd=api.server.cwd)
    assert printed.returncode == 0, printed.stderr
    rows = json.loads(printed.stdout)
    serving = [row for row in rows if row.get("active", True)]
    assert {row["name"] for row in serving} == PROJECTIONS
    for row in serving:
        assert set(row) >= STATUS_FIELDS
        assert row["state"] in {"live", "catching_up", "rebuilding", "stalled", "failed"}
        # order_summary is at version 2: its partitions came with it.
        assert row["version"] == (2 if row["name"] == "order_summary" else 1)
        assert row["head"] >= position
        assert row["lag_events"] == row["head"] - row["position"]
    catalog = next(row for row in serving if row["name"] == "product_catalog")
    assert catalog["position"] >= position


@pytest.mark.parametrize("command", ["serve", "token"])
def test_a_short_secret_is_refused_with_one_clear_line(tmp_path: Path, command: str) -> None:
    args = ("serve", "--port", str(free_port())) if command == "serve" else (
        "token", "--scope", "queries:*")
    result = run_cli(*args, cwd=tmp_path, env=server_env("only-31-bytes-long-secret-value"),
                     timeout_s=30)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert not JWT.search(result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PROJECTIONIST_SECRET" in lines[0] and "32" in lines[0]


def banner_tokens(output: str) -> dict[str, str]:
    tokens = {}
    for label in ("admin token", "read-only token"):
        found = re.search(rf"{label}:\s*({JWT.pattern})", output)
        assert found, output
        tokens[label] = found.group(1)
    return tokens


def test_serve_prints_an_admin_and_a_read_only_token_that_work(api: Api) -> None:
    tokens = banner_tokens(api.server.stdout)
    admin, reader = bearer(tokens["admin token"]), bearer(tokens["read-only token"])
    registered = api.command("RegisterProduct",
                             {"sku": uid("sku"), "name": "banner", "price_cents": 1},
                             headers=admin)
    assert registered.status_code == 200, registered.text
    assert api.client.get("/projections", headers=admin).status_code == 200
    assert api.query("ProductCatalog", headers=reader).status_code == 200
    assert api.client.get("/projections", headers=reader).status_code == 200
    refused = api.command("RegisterProduct",
                          {"sku": uid("sku"), "name": "banner", "price_cents": 1},
                          headers=reader)
    assert refused.status_code == 403


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("quiet"), "--quiet")
    try:
        running.wait_until_healthy()
        yield running
    finally:
        running.stop()


def test_serve_quiet_prints_no_tokens(quiet_server: Server) -> None:
    assert not JWT.search(quiet_server.stdout + quiet_server.stderr)
    assert "token" not in quiet_server.stdout
