"""The runner's document cache past its limit: it forgets its older half, and stays complete."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from projectionist.readstore.documents import DocumentCache, Documents, KeyFilter
from projectionist.readstore.tables import DocumentCollection
from projectionist.stores import Store

LIMIT = 100


@pytest.fixture
def collection(
    backend: str, make_store_url: Callable[[str], str]
) -> tuple[Store, DocumentCollection]:
    store = Store(make_store_url(backend))
    things = DocumentCollection("things", "cached_things", {})
    with store.schema() as connection:
        things.physical(1).create(connection)
    return store, things


def write(store: Store, things: DocumentCollection, cache: DocumentCache, keys: range) -> None:
    """One batch: each key read (a miss), then written."""
    with store.write() as connection:
        docs = Documents(connection, things, things.physical(1), cache)
        for n in keys:
            assert docs.get(f"k{n}") is None
            docs.put(f"k{n}", {"n": n})
        docs.flush()
    cache.trim()


def test_a_full_cache_forgets_its_older_half_and_still_knows_new_keys_are_absent(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, things = collection
    cache = DocumentCache(limit=LIMIT)
    cache.complete = True  # a build that started on an empty table
    write(store, things, cache, range(0, 150))
    assert len(cache.docs) == LIMIT // 2
    assert "k149" in cache.docs and "k0" not in cache.docs
    assert cache.complete
    assert cache.absent("k150")  # never written: no query needed
    assert not cache.absent("k0")  # forgotten: read from the table
    with store.read() as connection:
        docs = Documents(connection, things, things.physical(1), cache)
        assert docs.get("k0") == {"n": 0}
        assert docs.get("k150") is None
    write(store, things, cache, range(150, 400))  # more misses of new keys, no query each
    store.dispose()
    assert cache.complete and len(cache.docs) <= LIMIT


def test_a_cache_that_never_was_complete_reads_every_miss(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, things = collection
    cache = DocumentCache(limit=LIMIT)
    write(store, things, cache, range(0, 150))
    store.dispose()
    assert not cache.complete and not cache.absent("k150") and not cache.absent("k0")


def test_clearing_forgets_what_was_forgotten() -> None:
    cache = DocumentCache(limit=2)
    cache.complete = True
    cache.docs.update({"a": {}, "b": {}, "c": {}})
    cache.trim()
    assert not cache.absent("a")
    cache.clear()
    cache.complete = True
    assert cache.absent("a")


def test_the_key_filter_never_forgets_a_key_it_was_given() -> None:
    seen = KeyFilter()
    keys = [f"order-{n}" for n in range(20_000)]
    for key in keys:
        seen.add(key)
    assert all(key in seen for key in keys)
    wrong = sum(f"other-{n}" in seen for n in range(20_000))
    assert wrong < 20  # far below 1 in 1,000 at this load
