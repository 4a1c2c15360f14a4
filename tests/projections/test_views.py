"""SQL-table views: handlers write them with SQLAlchemy, queries read them, in the read store."""

from __future__ import annotations

import sqlalchemy as sa

from projectionist import Runtime
from tests.helpers import read_model_rows
from tests.notes import AddNote, AddNotes, CountNotes, FindNotes


def table_names(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def test_handlers_write_rows_that_queries_read(notes_runtime: Runtime) -> None:
    notes_runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
    notes_runtime.execute(AddNote(stream="t", text="c"))
    notes_runtime.catch_up()
    [counts] = [rows for name, rows in read_model_rows(notes_runtime).items()
                if name.startswith("note_counts")]
    assert counts == [{"stream": "s", "count": 2, "texts": "a,b"},
                      {"stream": "t", "count": 1, "texts": "c"}]
    assert notes_runtime.ask(CountNotes(stream="s")).data == {"count": 2, "texts": ["a", "b"]}


def test_views_live_in_the_read_store_and_write_tables_in_the_write_store(
    notes_runtime: Runtime,
) -> None:
    notes_runtime.execute(AddNote(stream="s", text="a"))
    notes_runtime.catch_up()
    assert notes_runtime.store is not None
    with notes_runtime.store.read() as connection:
        written = table_names(connection)
    with notes_runtime.read_store.read() as connection:
        read = table_names(connection)
    assert "notes" in written and "notes" not in read
    assert any(name.startswith("note_counts") for name in read)
    assert not any(name.startswith("note_counts") for name in written)


def test_documents_views_are_read_through_their_indexes(notes_runtime: Runtime) -> None:
    notes_runtime.execute(AddNotes(stream="s", texts=["a", "b", "c"]))
    notes_runtime.execute(AddNote(stream="t", text="d"))
    notes_runtime.catch_up()
    page = notes_runtime.ask(FindNotes(stream="s", limit=2)).data
    assert [doc["text"] for doc in page["items"]] == ["a", "b"]
    rest = notes_runtime.ask(FindNotes(stream="s", limit=2, after=page["next"])).data
    assert [doc["text"] for doc in rest["items"]] == ["c"]
    assert rest["next"] is None
