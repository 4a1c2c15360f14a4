"""Stores for these tests: PostgreSQL ones are schemas of one database (much faster to make)."""

from __future__ import annotations

import pytest


@pytest.fixture
def store_urls(schema_store_urls: tuple[str, str]) -> tuple[str, str]:
    return schema_store_urls
