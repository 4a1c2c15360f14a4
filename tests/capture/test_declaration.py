"""Declaring captured tables and the projection handlers of their row changes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    CapturedTable,
    ConfigurationError,
    Event,
    Projection,
    RowChanged,
)


def tables() -> tuple[sa.MetaData, sa.Table]:
    metadata = sa.MetaData()
    table = sa.Table(
        "people",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret", sa.Text),
    )
    return metadata, table


def test_a_table_is_captured_with_all_its_columns_by_default() -> None:
    metadata, people = tables()
    app = App("a", write_model=metadata)
    captured = app.capture(people)
    assert isinstance(captured, CapturedTable)
    assert (captured.name, captured.table, captured.columns) == ("people", people, None)
    assert app.captures == {"people": captured}
    assert "RowChanged" in app.registry
    assert repr(captured) == "CapturedTable('people', columns=all)"


def test_a_name_is_looked_up_in_the_write_model_and_columns_may_be_columns() -> None:
    metadata, people = tables()
    app = App("a", write_model=metadata)
    captured = app.capture("people", columns=[people.c.name, "id", "name"])
    assert captured.table is people
    assert captured.columns == ("name", "id")


def test_a_name_the_write_model_does_not_declare_is_resolved_at_install() -> None:
    app = App("a")
    captured = app.capture("legacy_table")
    assert captured.table is None


def test_a_table_without_a_primary_key_is_refused_with_its_name() -> None:
    metadata = sa.MetaData()
    log = sa.Table("audit_log", metadata, sa.Column("line", sa.Text))
    with pytest.raises(ConfigurationError, match="'audit_log' has no primary key"):
        App("a", write_model=metadata).capture(log)
    with pytest.raises(ConfigurationError, match="'audit_log' has no primary key"):
        App("a", write_model=metadata).capture("audit_log")


def test_unknown_columns_are_refused_naming_them_and_the_table() -> None:
    _, people = tables()
    with pytest.raises(
        ConfigurationError, match="'people' has no column 'nmae'; it has id, name, secret"
    ):
        App("a").capture(people, columns=["nmae"])
    with pytest.raises(ConfigurationError, match="list of names, not the string 'name'"):
        App("a").capture(people, columns="name")


def test_a_table_is_captured_once_and_projectionist_tables_never() -> None:
    _, people = tables()
    app = App("a")
    app.capture(people)
    with pytest.raises(ConfigurationError, match="table 'people' is captured twice"):
        app.capture("people")
    with pytest.raises(ConfigurationError, match="'projectionist_events' belongs to"):
        app.capture("projectionist_events")
    with pytest.raises(ConfigurationError, match="a sqlalchemy Table or a table name"):
        app.capture(42)  # type: ignore[arg-type]


def test_a_schema_qualified_table_is_refused() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     schema="other")
    with pytest.raises(ConfigurationError, match=r"'other\.t' names a schema"):
        App("a").capture(table)


def test_on_row_routes_each_table_to_its_handler() -> None:
    _, people = tables()
    projection = Projection("p")
    seen: list[tuple[str, str]] = []

    @projection.on_row(people)
    def _people(change: RowChanged, ctx: ApplyContext) -> None:
        seen.append(("people", change.op))

    @projection.on_row("pets", "plants")
    def _others(change: RowChanged, ctx: ApplyContext) -> None:
        seen.append(("other", change.table))

    assert set(projection.row_handlers) == {"people", "pets", "plants"}
    assert projection.event_types == [RowChanged]
    spec = projection.handlers["RowChanged"]
    context = ApplyContext(None, "p", 1)  # type: ignore[arg-type]
    for table in ("people", "plants", "unhandled"):
        spec.function(RowChanged(table=table, op="insert", key={"id": 1}, row={}), context)
    assert seen == [("people", "insert"), ("other", "plants")]


def test_a_projection_registered_by_the_app_decodes_row_changes() -> None:
    projection = Projection("p")

    @projection.on_row("people")
    def _people(change: RowChanged, ctx: ApplyContext) -> None:
        pass

    app = App("a")
    app.projection(projection)
    decoded = app.registry.decode_event(
        "RowChanged", 1, '{"table":"people","op":"delete","key":{"id":1},"row":null,"old":{}}'
    )
    assert decoded == RowChanged(table="people", op="delete", key={"id": 1}, old={})


def test_on_row_refuses_a_second_handler_of_a_table_and_a_wrong_signature() -> None:
    projection = Projection("p")

    @projection.on_row("people")
    def _first(change: RowChanged, ctx: ApplyContext) -> None:
        pass

    with pytest.raises(ConfigurationError, match="already handles row changes of 'people'"):
        projection.on_row("people")(_first)
    with pytest.raises(ConfigurationError, match="row changes of 'pets' in projection 'p'"):
        projection.on_row("pets")(lambda change: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="needs a table"):
        projection.on_row()


def test_on_and_on_row_do_not_both_handle_row_changes() -> None:
    per_table = Projection("per_table")
    per_table.on_row("people")(lambda change, ctx: None)
    with pytest.raises(ConfigurationError, match="per table with on_row"):
        per_table.on(RowChanged)(lambda event, ctx: None)

    whole = Projection("whole")
    whole.on(RowChanged)(lambda event, ctx: None)
    with pytest.raises(ConfigurationError, match="with on\\(\\); handle each table"):
        whole.on_row("people")(lambda change, ctx: None)


def test_row_changed_is_an_event_with_its_fields_in_order() -> None:
    assert issubclass(RowChanged, Event)
    assert list(RowChanged.model_fields) == ["table", "op", "key", "row", "old"]
    with pytest.raises(ValueError, match="op"):
        RowChanged(table="t", op="upsert", key={})  # type: ignore[arg-type]
