"""Stores of the release before `projectionist_schema`, loaded from the SQL fixtures."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

FIXTURES = Path(__file__).parent / "fixtures"


def load_sql(url: str, path: Path) -> None:
    """Runs the statements of a fixture file on the database at `url`."""
    script = path.read_text()
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            connection.executescript(script)
        finally:
            connection.close()
        return
    conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(script.encode())  # several statements: the simple query protocol


@pytest.fixture
def new_stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], tuple[str, str]]:
    """Makes (write, read) URLs of empty databases of the backend; as many pairs as asked."""
    made = 0

    def make() -> tuple[str, str]:
        nonlocal made
        made += 1
        if backend == "sqlite":
            return (f"sqlite:///{tmp_path / f'write{made}.db'}",
                    f"sqlite:///{tmp_path / f'read{made}.db'}")
        databases = request.getfixturevalue("pg_databases")
        return databases.create("pjmw"), databases.create("pjmr")

    return make


@pytest.fixture
def old_stores(backend: str, new_stores: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    """(write, read) URLs of the ledger's stores at schema version 2, data in place."""
    write, read = new_stores()
    load_sql(write, FIXTURES / f"v2-{backend}-write.sql")
    load_sql(read, FIXTURES / f"v2-{backend}-read.sql")
    return write, read
