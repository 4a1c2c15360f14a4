"""`projectionist token` signs with the server's secret, or refuses: it never makes one up.

A secret of its own would sign tokens that the server answers with 401.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.cli.support import SECRET, cli_env, one_error_line, run
from tests.helpers import ServeSubprocess

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def test_token_without_a_known_secret_refuses_and_creates_none(tmp_path: Path) -> None:
    result = run("token", "--scope", "queries:*", cwd=tmp_path)
    line = one_error_line(result)
    assert not JWT.search(result.stdout)
    assert "PROJECTIONIST_SECRET" in line and "--store" in line
    assert str(tmp_path / "projectionist.secret") in line
    assert sorted(tmp_path.iterdir()) == []


def test_token_with_another_store_refuses_and_names_the_secret_file_it_looked_for(
    tmp_path: Path,
) -> None:
    result = run("token", "--scope", "admin", "--store", "sqlite:///elsewhere/app.db",
                 cwd=tmp_path)
    line = one_error_line(result)
    assert str(tmp_path / "elsewhere" / "projectionist.secret") in line
    assert "sqlite:///elsewhere/app.db" in line
    assert not (tmp_path / "elsewhere").exists()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeSubprocess]:
    """A server of the demo app without PROJECTIONIST_SECRET: serve keeps making its secret,
    beside its SQLite store in data/."""
    (tmp_path / "data").mkdir()
    running = ServeSubprocess(tmp_path, ["--quiet", "--store", "sqlite:///data/shop.db"],
                              cli_env())
    try:
        running.wait_until_healthy()
        yield running
    finally:
        running.stop()


def test_token_signs_with_the_secret_beside_the_store_the_server_uses(
    server: ServeSubprocess, tmp_path: Path,
) -> None:
    assert (tmp_path / "data" / "projectionist.secret").exists()
    refused = run("token", "--scope", "queries:*", cwd=tmp_path)
    one_error_line(refused)
    assert not (tmp_path / "projectionist.secret").exists()

    printed = run("token", "--scope", "queries:*", "--store", "sqlite:///data/shop.db",
                  cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    assert JWT.fullmatch(token), printed.stdout
    answer = httpx.get(f"{server.url}/projections",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_token_finds_the_store_in_the_project_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "projectionist.secret").write_text(SECRET + "\n")
    (tmp_path / "projectionist.toml").write_text('store = "sqlite:///data/app.db"\n')
    printed = run("token", "--scope", "queries:*", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    claims = jwt.decode(printed.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["scope"] == "queries:*"


def test_token_signs_with_the_configured_secret_without_a_file(tmp_path: Path) -> None:
    printed = run("token", "--scope", "queries:*", cwd=tmp_path,
                  env=cli_env(PROJECTIONIST_SECRET=SECRET))
    assert printed.returncode == 0, printed.stderr
    assert JWT.fullmatch(printed.stdout.strip()), printed.stdout
    assert sorted(tmp_path.iterdir()) == []
