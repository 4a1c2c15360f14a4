"""Document views: put/get/delete through a batch cache, and find by indexes with cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from projectionist import (
    ConfigurationError,
    DocumentCollection,
    Documents,
    InvalidMessage,
    Projection,
)
from projectionist.stores import Store

COLORS = ["red", "green", "blue"]


@pytest.fixture
def collection(store_urls: tuple[str, str]) -> Iterator[tuple[Store, DocumentCollection]]:
    store = Store(store_urls[1])
    collection = Projection("catalogue").documents(
        "items", indexes={"color": str, "size": int, "price": float, "new": bool}
    )
    with store.write() as connection:
        collection.physical(1).create(connection)
    yield store, collection
    store.dispose()


def open_docs(connection: Any, collection: DocumentCollection) -> Documents:
    return Documents(connection, collection, collection.physical(1))


def fill(store: Store, collection: DocumentCollection, count: int) -> list[dict[str, Any]]:
    docs = [
        {"id": f"k{n:03d}", "color": COLORS[n % 3], "size": n % 4, "price": n / 2,
         "new": n % 2 == 0, "tags": ["x"] * (n % 2)}
        for n in range(count)
    ]
    with store.write() as connection:
        documents = open_docs(connection, collection)
        for doc in docs:
            documents.put(doc["id"], doc)
        documents.flush()
    return docs


def all_pages(store: Store, collection: DocumentCollection, **find: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        with store.read() as connection:
            page = open_docs(connection, collection).find(after=after, **find)
        pages.append([doc["id"] for doc in page.items])
        if page.next is None:
            return pages
        after = page.next


def test_put_then_get_returns_the_document(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    with store.write() as connection:
        documents = open_docs(connection, items)
        documents.put("a", {"color": "red", "nested": {"list": [1, 2]}})
        assert documents.get("a") == {"color": "red", "nested": {"list": [1, 2]}}
        documents.flush()
    with store.read() as connection:
        assert open_docs(connection, items).get("a") == {"color": "red",
                                                         "nested": {"list": [1, 2]}}
        assert open_docs(connection, items).get("missing") is None


def test_writes_reach_the_table_only_at_flush(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    with store.write() as connection:
        documents = open_docs(connection, items)
        documents.put("a", {"color": "red"})
        assert open_docs(connection, items).count() == 0
        documents.flush()
        assert open_docs(connection, items).count() == 1


def test_find_in_a_batch_sees_the_batch_own_writes(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    with store.write() as connection:
        documents = open_docs(connection, items)
        documents.put("a", {"color": "red"})
        documents.put("b", {"color": "blue"})
        assert [d["color"] for d in documents.find(where={"color": "red"}).items] == ["red"]
        assert documents.count() == 2


def test_put_replaces_the_document_and_its_indexes(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    fill(store, items, 3)
    with store.write() as connection:
        documents = open_docs(connection, items)
        documents.put("k000", {"id": "k000", "color": "blue"})
        documents.flush()
    with store.read() as connection:
        documents = open_docs(connection, items)
        assert documents.get("k000") == {"id": "k000", "color": "blue"}
        assert documents.count(where={"color": "red"}) == 0
        assert documents.count(where={"color": "blue"}) == 2
        assert documents.count(where={"size": 0}) == 0


def test_delete_removes_the_document(collection: tuple[Store, DocumentCollection]) -> None:
    store, items = collection
    fill(store, items, 3)
    with store.write() as connection:
        documents = open_docs(connection, items)
        documents.delete("k001")
        documents.delete("never-there")
        assert documents.get("k001") is None
        documents.flush()
    with store.read() as connection:
        assert [key for key, _ in open_docs(connection, items)] == ["k000", "k002"]


def test_a_rolled_back_transaction_keeps_no_document(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    with pytest.raises(RuntimeError), store.write() as connection:
        documents = open_docs(connection, items)
        documents.put("a", {"color": "red"})
        documents.flush()
        raise RuntimeError("the batch failed")
    with store.read() as connection:
        assert open_docs(connection, items).count() == 0


def test_find_filters_by_every_index_type(collection: tuple[Store, DocumentCollection]) -> None:
    store, items = collection
    docs = fill(store, items, 12)
    with store.read() as connection:
        documents = open_docs(connection, items)

        def ids(**where: Any) -> list[str]:
            return [d["id"] for d in documents.find(where=where, limit=100).items]

        assert ids(color="green") == [d["id"] for d in docs if d["color"] == "green"]
        assert ids(size=2) == [d["id"] for d in docs if d["size"] == 2]
        assert ids(price=1.5) == ["k003"]
        assert ids(new=True) == [d["id"] for d in docs if d["new"]]
        assert ids(color="red", size=3) == [d["id"] for d in docs
                                            if d["color"] == "red" and d["size"] == 3]
        assert documents.count(where={"color": "blue", "new": False}) == len(
            [d for d in docs if d["color"] == "blue" and not d["new"]]
        )


def test_find_pages_by_key_with_a_cursor(collection: tuple[Store, DocumentCollection]) -> None:
    store, items = collection
    docs = fill(store, items, 10)
    pages = all_pages(store, items, limit=4)
    assert pages == [[d["id"] for d in docs[i:i + 4]] for i in (0, 4, 8)]


def test_cursor_pages_sorted_by_an_index_with_ties_visit_each_document_once(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    docs = fill(store, items, 17)
    expected = [d["id"] for d in sorted(docs, key=lambda d: (d["size"], d["id"]))]
    pages = all_pages(store, items, order_by="size", limit=3)
    assert all(len(page) == 3 for page in pages[:-1])
    assert [key for page in pages for key in page] == expected


def test_descending_cursor_pages_with_a_filter_and_ties(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    docs = fill(store, items, 30)
    red = [d for d in docs if d["color"] == "red"]
    expected = [d["id"] for d in sorted(red, key=lambda d: (d["size"], d["id"]), reverse=True)]
    pages = all_pages(store, items, where={"color": "red"}, order_by="size", descending=True,
                      limit=3)
    assert len(pages) == 4
    assert [key for page in pages for key in page] == expected


def test_the_last_page_has_no_next_cursor(collection: tuple[Store, DocumentCollection]) -> None:
    store, items = collection
    fill(store, items, 4)
    with store.read() as connection:
        page = open_docs(connection, items).find(limit=4)
    assert len(page.items) == 4
    assert page.next is None


def test_find_by_an_undeclared_field_names_the_declared_ones(
    collection: tuple[Store, DocumentCollection],
) -> None:
    store, items = collection
    with store.read() as connection, pytest.raises(ConfigurationError) as raised:
        open_docs(connection, items).find(where={"weight": 3})
    assert "'weight'" in raised.value.detail
    assert "color, size, price, new" in raised.value.detail


def encode(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not-a-cursor", encode([]), encode({"x": 1}), encode(None), encode(["k1"]),
    encode(["text", "k1"]), encode([True, "k1"]), encode([1.5, "k1"]), encode([2**70, "k1"]),
    encode([[1], "k1"]), encode([1, 2]),
])
def test_a_forged_cursor_is_an_invalid_message(
    collection: tuple[Store, DocumentCollection], cursor: str
) -> None:
    store, items = collection
    fill(store, items, 3)
    with store.read() as connection, pytest.raises(InvalidMessage) as raised:
        open_docs(connection, items).find(order_by="size", after=cursor)
    assert "cursor" in raised.value.detail


@pytest.mark.parametrize(("field", "value"), [
    ("size", 1), ("size", None), ("price", 1.5), ("price", 2), ("color", "red"), ("new", False),
])
def test_a_cursor_of_the_index_type_is_accepted(
    collection: tuple[Store, DocumentCollection], field: str, value: Any
) -> None:
    store, items = collection
    fill(store, items, 6)
    with store.read() as connection:
        page = open_docs(connection, items).find(order_by=field, after=encode([value, "k0"]))
    assert isinstance(page.items, list)


def test_index_types_are_checked_when_declared() -> None:
    with pytest.raises(ConfigurationError, match="index 'tags' of documents 'items'"):
        Projection("p").documents("items", indexes={"tags": list})
    with pytest.raises(ConfigurationError, match="identifier"):
        Projection("p").documents("items", indexes={"not valid": str})


def test_cursor_pages_sorted_by_a_bool_index(collection: tuple[Store, DocumentCollection]) -> None:
    store, items = collection
    docs = fill(store, items, 7)
    expected = [d["id"] for d in sorted(docs, key=lambda d: (d["new"], d["id"]))]
    pages = all_pages(store, items, order_by="new", limit=2)
    assert [key for page in pages for key in page] == expected


@pytest.mark.parametrize("descending", [False, True])
def test_cursor_pages_visit_documents_that_lack_the_sort_field(
    collection: tuple[Store, DocumentCollection], descending: bool
) -> None:
    store, items = collection
    with store.write() as connection:
        documents = open_docs(connection, items)
        for n in range(9):
            documents.put(f"k{n}", {"id": f"k{n}", **({"size": n % 3} if n % 2 else {})})
        documents.flush()
    pages = all_pages(store, items, order_by="size", descending=descending, limit=2)
    keys = [key for page in pages for key in page]
    assert sorted(keys) == [f"k{n}" for n in range(9)]
    sized = [key for key in keys if int(key[1:]) % 2]
    expected = sorted(sized, key=lambda k: (int(k[1:]) % 3, k), reverse=descending)
    assert sized == expected


def index_row(store: Store, collection: DocumentCollection, key: str) -> tuple[Any, ...]:
    table = collection.physical(1)
    with store.read() as connection:
        row = connection.execute(table.select().where(table.c.key == key)).one()
    return (row.ix_color, row.ix_size, row.ix_price, row.ix_new)


@pytest.mark.parametrize(
    ("doc", "stored"),
    [
        ({"color": "red", "size": 3, "price": 2.5, "new": True}, ("red", 3, 2.5, True)),
        ({"color": None, "size": None, "price": None, "new": None}, (None, None, None, None)),
        ({"color": "é\"'\\,{}", "size": -(2**62), "price": 7, "new": False},
         ("é\"'\\,{}", -(2**62), 7.0, False)),
        ({"color": "x", "size": 1, "price": float("inf"), "new": True},
         ("x", 1, float("inf"), True)),
        # Values of another type than the index's: written as before, by the column's rules.
        ({"color": 5, "size": 2.0, "price": 1, "new": True}, ("5", 2, 1.0, True)),
    ],
)
def test_index_values_are_stored_as_their_columns_take_them(
    collection: tuple[Store, DocumentCollection], doc: dict[str, Any], stored: tuple[Any, ...],
) -> None:
    """A batch's documents are written in one statement (PostgreSQL: text arrays cast by the
    server; one document alone, text scalars): each index column holds what the column would
    take of the value, by either statement."""
    store, items = collection
    with store.write() as connection:
        documents = open_docs(connection, items)
        documents.put("a", doc)
        documents.put("b", {"color": "other", "size": 0, "price": 0.0, "new": False})
        documents.flush()
    assert index_row(store, items, "a") == stored
    with store.read() as connection:
        assert open_docs(connection, items).get("a") == doc
    with store.write() as connection:  # and again, over the row that is there
        documents = open_docs(connection, items)
        documents.put("a", {**doc, "tags": ["y"]})
        documents.flush()
    assert index_row(store, items, "a") == stored
