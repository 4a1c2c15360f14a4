"""Stores for these tests: PostgreSQL ones are schemas of one database (much faster to make)."""

from __future__ import annotations

import contextlib
import warnings

import pytest

# When a property fails, Hypothesis imports libcst to suggest a patch; libcst warns on import,
# and filterwarnings=error would turn the failing example into an INTERNALERROR that hides it.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401 - imported early, warnings silenced


@pytest.fixture
def store_urls(schema_store_urls: tuple[str, str]) -> tuple[str, str]:
    return schema_store_urls
