"""Stores for the read-store contract: PostgreSQL ones are schemas of one database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projectionist.stores import Store


@pytest.fixture
def store_urls(schema_store_urls: tuple[str, str]) -> tuple[str, str]:
    return schema_store_urls


@pytest.fixture
def store(store_urls: tuple[str, str]) -> Iterator[Store]:
    """A read store on a fresh database of the backend, disposed afterwards."""
    store = Store(store_urls[1])
    yield store
    store.dispose()
