"""Stores: URLs, the settings a URL carries, and the errors a bad URL gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from projectionist import ConfigurationError
from projectionist.stores import Store


def test_postgres_url_options_reach_the_connection(
    make_store_url: Callable[[str], str],
) -> None:
    url = make_store_url("postgresql")  # a schema of the test database, by search_path
    schema = url.rsplit("%3D", 1)[1]
    store = Store(url)
    try:
        with store.read() as connection:
            assert connection.exec_driver_sql("SELECT current_schema()").scalar() == schema
            # The store's own settings are there too.
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() != "0"
    finally:
        store.dispose()


def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with store.read() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.dispose()


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "is not a store URL"),
    ("mysql://user@host/db", "unsupported store 'mysql'"),
    ("sqlite:///no/such/folder/x.db", "does not exist"),
])
def test_a_bad_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Store(url)


def test_repr_hides_the_password() -> None:
    store = Store("postgresql+psycopg://user:s3cret@127.0.0.1:1/db")
    try:
        assert "s3cret" not in repr(store)
        assert "user" in repr(store)
    finally:
        store.dispose()
