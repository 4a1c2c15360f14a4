"""Defining projections and apps: mistakes are caught at definition, with a clear message."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from projectionist import App, ApplyContext, ConfigurationError, Projection
from tests.notes import AddNote, NoteAdded, Notes


def test_projection_names_must_be_identifiers() -> None:
    with pytest.raises(ConfigurationError, match="'bad name' must be an identifier"):
        Projection("bad name")


def test_projection_versions_start_at_one() -> None:
    with pytest.raises(ConfigurationError, match="start at 1"):
        Projection("p", version=0)


def test_on_error_must_be_a_known_policy() -> None:
    with pytest.raises(ConfigurationError, match="on_error must be one of"):
        Projection("p", on_error="ignore")


def test_an_event_type_has_one_handler_per_projection() -> None:
    projection = Projection("p")

    @projection.on(NoteAdded)
    def first(event: NoteAdded, ctx: ApplyContext) -> None: ...

    with pytest.raises(ConfigurationError, match="already handles NoteAdded"):

        @projection.on(NoteAdded)
        def second(event: NoteAdded, ctx: ApplyContext) -> None: ...


def test_on_needs_an_event_type() -> None:
    with pytest.raises(ConfigurationError, match="needs an event type"):
        Projection("p").on()


def test_a_projection_declares_each_table_name_once() -> None:
    projection = Projection("p")
    projection.table("rows", sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(ConfigurationError, match="already declares 'rows'"):
        projection.documents("rows")


def test_two_projections_cannot_share_a_table_name() -> None:
    app = App("a")
    first, second = Projection("first"), Projection("second")
    first.documents("shared")
    second.documents("shared")
    app.projection(first)
    with pytest.raises(ConfigurationError, match="'shared'"):
        app.projection(second)


def test_two_projections_cannot_share_a_name() -> None:
    app = App("a")
    app.projection(Projection("same"))
    with pytest.raises(ConfigurationError, match="two projections are named 'same'"):
        app.projection(Projection("same"))


def test_a_command_has_one_handler() -> None:
    notes = Notes()
    with pytest.raises(ConfigurationError, match="AddNote already has a handler"):
        notes.app.command(AddNote)(lambda command, uow: None)


def test_each_build_of_a_view_has_its_own_table() -> None:
    projection = Projection("p")
    view = projection.table("rows", sa.Column("id", sa.Integer, primary_key=True))
    docs = projection.documents("docs", indexes={"n": int})
    first, second = projection.physical_tables(1), projection.physical_tables(2)
    assert {t.name for t in first}.isdisjoint(t.name for t in second)
    assert view.physical(1) is view.physical(1)
    assert [c.name for c in docs.physical(1).columns] == ["key", "doc", "ix_n"]
