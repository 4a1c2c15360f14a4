"""Capture on SQLite: triggers append each row change in the writer's transaction, and the rows
already there are snapshotted once when capture of a table starts."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    Command,
    ConfigurationError,
    Event,
    EventMetadata,
    NotFound,
    Projection,
    Query,
    ReadContext,
    RowChanged,
    Runtime,
    UnitOfWork,
)
from tests.capture.conftest import Stores, head


class Person(Query):
    id: int


def people_app(columns: list[str] | None = None) -> App:
    """An app capturing `people`, with a projection mirroring each row and a query of one."""
    metadata = sa.MetaData()
    people = sa.Table(
        "people",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("photo", sa.LargeBinary),
    )
    app = App("people", write_model=metadata)
    app.capture(people, columns=columns)
    mirror = Projection("mirror")
    rows = mirror.documents("rows")

    @mirror.on_row(people)
    def _changed(change: RowChanged, ctx: ApplyContext) -> None:
        key = str(change.key["id"])
        if change.row is None:
            rows_of(ctx).delete(key)
        else:
            rows_of(ctx).put(key, change.row)

    def rows_of(ctx: ApplyContext) -> Any:
        return ctx[rows]

    @app.query(Person, reads=[mirror])
    def _person(query: Person, ctx: ReadContext) -> dict[str, Any]:
        doc = ctx[rows].get(str(query.id))
        if doc is None:
            raise NotFound(f"there is no person {query.id}")
        return doc

    return app


def events(connection: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return connection.execute(
        "SELECT position, stream, version, type, schema_version, data, metadata, recorded_at"
        " FROM projectionist_events ORDER BY position"
    ).fetchall()


def changes(connection: sqlite3.Connection) -> list[tuple[int, str, int, RowChanged]]:
    return [(row[0], row[1], row[2], RowChanged.model_validate_json(row[5]))
            for row in events(connection)]


@pytest.fixture
def runtime(stores: Stores) -> Any:
    runtime = Runtime(people_app(), store=stores.url, read_store=stores.read_url)
    runtime.install()
    yield runtime
    runtime.stop()


def test_each_row_change_is_one_event_as_the_event_type_would_store_it(
    runtime: Runtime, writer: sqlite3.Connection
) -> None:
    before = time.time()
    writer.execute("INSERT INTO people (id, name, email) VALUES (7, 'Ann', 'a@x')")
    writer.execute("UPDATE people SET name = 'Anna' WHERE id = 7")
    writer.execute("DELETE FROM people WHERE id = 7")
    stored = events(writer)
    assert [(p, s, v, t, sv) for p, s, v, t, sv, *_ in stored] == [
        (1, "people:7", 1, "RowChanged", 1),
        (2, "people:7", 2, "RowChanged", 1),
        (3, "people:7", 3, "RowChanged", 1),
    ]
    ann = {"id": 7, "name": "Ann", "email": "a@x", "photo": None}
    anna = {**ann, "name": "Anna"}
    expected = [
        RowChanged(table="people", op="insert", key={"id": 7}, row=ann),
        RowChanged(table="people", op="update", key={"id": 7}, row=anna, old=ann),
        RowChanged(table="people", op="delete", key={"id": 7}, old=anna),
    ]
    # The very text Event.model_dump_json writes, so a stored row reads like any other event.
    assert [row[5] for row in stored] == [event.model_dump_json() for event in expected]
    ids = set()
    for row in stored:
        metadata = EventMetadata.from_json(row[6])
        assert (metadata.command_id, metadata.correlation_id) == ("capture", "capture")
        assert (metadata.subject, metadata.token_id) == (None, None)
        assert len(metadata.event_id) == 32
        ids.add(metadata.event_id)
        assert before - 1 <= row[7] <= time.time() + 1
    assert len(ids) == 3


def test_the_projection_reflects_plain_sql_writes_at_their_position(
    runtime: Runtime, writer: sqlite3.Connection
) -> None:
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann'), (2, 'Bob')")
    writer.execute("UPDATE people SET email = 'bob@x' WHERE id = 2")
    position = head(writer)
    runtime.catch_up(strict=True)
    answer = runtime.ask(Person(id=2), min_position=position)
    assert answer.data == {"id": 2, "name": "Bob", "email": "bob@x", "photo": None}
    assert answer.freshness.position == position == 3
    writer.execute("DELETE FROM people WHERE id = 2")
    runtime.catch_up(strict=True)
    with pytest.raises(NotFound):
        runtime.ask(Person(id=2), min_position=head(writer))


def test_a_running_projector_answers_a_writers_position(stores: Stores) -> None:
    with Runtime(people_app(), store=stores.url, read_store=stores.read_url,
                 poll_interval_s=0.05) as runtime:
        writer = stores.connect()
        writer.execute("INSERT INTO people (id, name) VALUES (3, 'Cy')")
        answer = runtime.ask(Person(id=3), min_position=head(writer), wait_ms=10000)
        writer.close()
    assert answer.data["name"] == "Cy"


def test_an_update_that_keeps_every_kept_column_is_no_event(stores: Stores) -> None:
    runtime = Runtime(people_app(columns=["name"]), store=stores.url, read_store=stores.read_url)
    runtime.install()
    writer = stores.connect()
    writer.execute("INSERT INTO people (id, name, email) VALUES (1, 'Ann', 'a@x')")
    writer.execute("UPDATE people SET email = 'b@x' WHERE id = 1")
    writer.execute("UPDATE people SET name = name WHERE id = 1")
    writer.execute("UPDATE people SET name = 'Anna' WHERE id = 1")
    assert [(c.op, c.row, c.old) for _, _, _, c in changes(writer)] == [
        ("insert", {"name": "Ann"}, None),
        ("update", {"name": "Anna"}, {"name": "Ann"}),
    ]
    writer.close()
    runtime.stop()


def test_a_new_primary_key_is_a_delete_of_the_old_row_then_an_insert(
    runtime: Runtime, writer: sqlite3.Connection
) -> None:
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    writer.execute("UPDATE people SET id = 2, name = 'Anna' WHERE id = 1")
    assert [(s, v, c.op, c.key) for _, s, v, c in changes(writer)] == [
        ("people:1", 1, "insert", {"id": 1}),
        ("people:1", 2, "delete", {"id": 1}),
        ("people:2", 1, "insert", {"id": 2}),
    ]
    runtime.catch_up(strict=True)
    assert runtime.ask(Person(id=2)).data["name"] == "Anna"
    with pytest.raises(NotFound):
        runtime.ask(Person(id=1))


def test_upserts_and_replaces_are_captured(runtime: Runtime, writer: sqlite3.Connection) -> None:
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    writer.execute(
        "INSERT INTO people (id, name) VALUES (1, 'Anna')"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name"
    )
    # REPLACE deletes the old row without its delete trigger (SQLite fires it only with
    # recursive_triggers on): readers see an insert of a key they already hold.
    writer.execute("INSERT OR REPLACE INTO people (id, name) VALUES (1, 'Annie')")
    assert [(c.op, c.row and c.row["name"]) for _, _, _, c in changes(writer)] == [
        ("insert", "Ann"), ("update", "Anna"), ("insert", "Annie"),
    ]


def test_binary_values_are_hexadecimal_text(runtime: Runtime, writer: sqlite3.Connection) -> None:
    writer.execute("INSERT INTO people (id, name, photo) VALUES (1, 'Ann', x'00ff10')")
    [(_, _, _, change)] = changes(writer)
    assert change.row is not None and change.row["photo"] == "00ff10"


def test_a_rolled_back_transaction_leaves_no_event(
    runtime: Runtime, writer: sqlite3.Connection
) -> None:
    writer.execute("BEGIN")
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    writer.execute("ROLLBACK")
    writer.execute("BEGIN")
    writer.execute("INSERT INTO people (id, name) VALUES (2, 'Bob')")
    writer.execute("SAVEPOINT s")
    writer.execute("INSERT INTO people (id, name) VALUES (3, 'Cy')")
    writer.execute("ROLLBACK TO s")
    writer.execute("COMMIT")
    with pytest.raises(sqlite3.IntegrityError):
        writer.execute("INSERT INTO people (id, name) VALUES (4, 'Di'), (5, NULL)")
    assert [(s, c.op) for _, s, _, c in changes(writer)] == [("people:2", "insert")]
    assert [row[0] for row in writer.execute("SELECT id FROM people")] == [2]


def test_a_transactions_events_commit_together_at_consecutive_positions(
    runtime: Runtime, stores: Stores
) -> None:
    writer, reader = stores.connect(), stores.connect()
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    writer.execute("BEGIN")
    writer.execute("INSERT INTO people (id, name) VALUES (2, 'Bob'), (3, 'Cy')")
    writer.execute("UPDATE people SET name = 'Anna' WHERE id = 1")
    assert head(reader) == 1  # nothing of the open transaction is visible
    writer.execute("COMMIT")
    assert head(reader) == 4
    assert [(p, s) for p, s, _, _ in changes(reader)] == [
        (1, "people:1"), (2, "people:2"), (3, "people:3"), (4, "people:1"),
    ]
    # One batch reads what one commit made visible: the checkpoint lands on its boundary.
    [runner] = runtime.runners
    result = runner.run_once()
    assert (result.applied, result.position) == (4, 4)
    writer.close()
    reader.close()


def test_rows_already_there_are_snapshotted_once(stores: Stores) -> None:
    writer = stores.connect()
    writer.execute("CREATE TABLE people (id integer PRIMARY KEY, name text NOT NULL, email text,"
                   " photo blob)")
    writer.execute("INSERT INTO people (id, name) VALUES (2, 'Bob'), (1, 'Ann')")
    runtime = Runtime(people_app(), store=stores.url, read_store=stores.read_url)
    runtime.install()
    snapshot = events(writer)
    assert [(r[1], RowChanged.model_validate_json(r[5]).op) for r in snapshot] == [
        ("people:1", "insert"), ("people:2", "insert"),
    ]
    assert {EventMetadata.from_json(r[6]).command_id for r in snapshot} == {"capture-snapshot"}
    [(table, columns, at)] = writer.execute("SELECT * FROM projectionist_capture").fetchall()
    assert table == "people"
    assert json.loads(columns) == {"key": ["id"], "columns": ["id", "name", "email", "photo"]}
    assert at <= time.time()
    runtime.catch_up(strict=True)
    assert runtime.ask(Person(id=1)).data["name"] == "Ann"
    runtime.stop()

    restarted = Runtime(people_app(), store=stores.url, read_store=stores.read_url)
    restarted.install()
    writer.execute("INSERT INTO people (id, name) VALUES (3, 'Cy')")
    assert [r[1] for r in events(writer)] == ["people:1", "people:2", "people:3"]
    restarted.stop()
    writer.close()


def trigger_sql(connection: sqlite3.Connection) -> dict[str, str]:
    return dict(connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    ).fetchall())


def test_changed_columns_make_the_triggers_anew_without_a_second_snapshot(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    first = Runtime(people_app(columns=["name"]), store=stores.url, read_store=stores.read_url)
    first.install()
    first.stop()
    writer = stores.connect()
    before = trigger_sql(writer)
    assert sorted(before) == [
        "projectionist_capture_people_delete", "projectionist_capture_people_insert",
        "projectionist_capture_people_rekey", "projectionist_capture_people_update",
    ]
    writer.execute("INSERT INTO people (id, name, email) VALUES (1, 'Ann', 'a@x')")
    with caplog.at_level(logging.WARNING, logger="projectionist.capture"):
        second = Runtime(people_app(), store=stores.url, read_store=stores.read_url)
        second.install()
    assert caplog.records == []
    assert trigger_sql(writer) != before
    assert len(events(writer)) == 1
    writer.execute("UPDATE people SET email = 'b@x' WHERE id = 1")
    [_, (_, _, _, change)] = changes(writer)
    assert change.row == {"id": 1, "name": "Ann", "email": "b@x", "photo": None}
    columns = writer.execute("SELECT columns FROM projectionist_capture").fetchone()[0]
    assert json.loads(columns)["columns"] == ["id", "name", "email", "photo"]
    second.stop()
    writer.close()


def test_triggers_dropped_by_hand_are_made_again_with_a_warning(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    Runtime(people_app(), store=stores.url, read_store=stores.read_url).install()
    writer = stores.connect()
    for name in trigger_sql(writer):
        writer.execute(f'DROP TRIGGER "{name}"')
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")  # not captured
    with caplog.at_level(logging.WARNING, logger="projectionist.capture"):
        Runtime(people_app(), store=stores.url, read_store=stores.read_url).install()
    assert "capture triggers of 'people' were missing" in caplog.text
    writer.execute("INSERT INTO people (id, name) VALUES (2, 'Bob')")
    assert [r[1] for r in events(writer)] == ["people:2"]
    writer.close()


def test_a_table_only_named_is_read_from_the_store_with_a_composite_key(stores: Stores) -> None:
    writer = stores.connect()
    writer.execute("CREATE TABLE grades (pupil text, subject text, grade int,"
                   " PRIMARY KEY (pupil, subject))")
    writer.execute("INSERT INTO grades VALUES ('ann', 'math', 5)")
    app = App("grades")
    app.capture("grades", columns=["grade"])
    runtime = Runtime(app, store=stores.url, read_store=stores.read_url, roles="command")
    runtime.install()
    writer.execute("UPDATE grades SET grade = 6 WHERE pupil = 'ann'")
    assert [(s, c.op, c.key, c.row) for _, s, _, c in changes(writer)] == [
        ("grades:ann:math", "insert", {"pupil": "ann", "subject": "math"}, {"grade": 5}),
        ("grades:ann:math", "update", {"pupil": "ann", "subject": "math"}, {"grade": 6}),
    ]
    runtime.stop()
    writer.close()


def test_a_captured_table_the_store_lacks_is_made_from_the_write_model(stores: Stores) -> None:
    # A projector-only process makes it too: capture needs the table, not the command role.
    runtime = Runtime(people_app(), store=stores.url, read_store=stores.read_url,
                      roles="projector")
    runtime.install()
    writer = stores.connect()
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    assert len(events(writer)) == 1
    runtime.stop()
    writer.close()


def test_a_missing_table_nothing_declares_is_a_configuration_error(stores: Stores) -> None:
    app = App("a")
    app.capture("nowhere")
    runtime = Runtime(app, store=stores.url, read_store=stores.read_url)
    with pytest.raises(ConfigurationError, match="'nowhere' does not exist in the write store"):
        runtime.install()
    runtime.stop()


def test_a_store_table_without_a_kept_column_or_a_key_is_refused(stores: Stores) -> None:
    writer = stores.connect()
    writer.execute("CREATE TABLE people (id integer PRIMARY KEY, name text)")
    writer.execute("CREATE TABLE notes (body text)")
    runtime = Runtime(people_app(), store=stores.url, read_store=stores.read_url)
    with pytest.raises(ConfigurationError, match="'people' in the write store has no column"
                       " 'email', 'photo'"):
        runtime.install()
    runtime.stop()
    app = App("notes")
    app.capture("notes")
    runtime = Runtime(app, store=stores.url, read_store=stores.read_url)
    with pytest.raises(ConfigurationError, match="'notes' has no primary key"):
        runtime.install()
    runtime.stop()
    writer.close()


def test_the_capture_role_on_sqlite_installs_the_triggers_and_runs_no_process(
    stores: Stores,
) -> None:
    assert Runtime(people_app(), store=stores.url).roles == ("command", "projector", "query")
    runtime = Runtime(people_app(), store=stores.url, roles="capture")
    runtime.start()
    assert runtime.capturer is None and runtime.capture_progress is None
    writer = stores.connect()
    writer.execute("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    assert head(writer) == 1
    writer.close()
    runtime.stop()


class Rename(Command):
    id: int
    name: str


class Renamed(Event):
    id: int
    name: str


def test_a_commands_writes_are_captured_beside_its_own_events(stores: Stores) -> None:
    app = people_app()
    people = app.write_model.tables["people"]

    @app.command(Rename)
    def _rename(command: Rename, uow: UnitOfWork) -> None:
        uow.connection.execute(sa.insert(people).values(id=command.id, name=command.name))
        uow.record(f"person-{command.id}", Renamed(id=command.id, name=command.name))

    app.events(Renamed)
    runtime = Runtime(app, store=stores.url, read_store=stores.read_url)
    first = runtime.execute(Rename(id=1, name="Ann"))
    second = runtime.execute(Rename(id=2, name="Bob"))
    assert (first.position, second.position) == (2, 4)
    writer = stores.connect()
    assert [(r[0], r[1], r[3]) for r in events(writer)] == [
        (1, "people:1", "RowChanged"), (2, "person-1", "Renamed"),
        (3, "people:2", "RowChanged"), (4, "person-2", "Renamed"),
    ]
    runtime.catch_up(strict=True)
    assert runtime.ask(Person(id=2), min_position=second.position).data["name"] == "Bob"
    runtime.stop()
    writer.close()
