"""An app capturing one table of a PostgreSQL database, and what the log holds of it."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    NotFound,
    Projection,
    Query,
    ReadContext,
    RowChanged,
    Runtime,
)
from tests.capture.postgres.conftest import Database

PEOPLE = (
    "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, email text, bio text,"
    " photo bytea)"
)


class Person(Query):
    id: int


def people_app(name: str = "people", columns: list[str] | None = None) -> App:
    """Captures `people` (made by the test with plain SQL); a mirror of each row, by id."""
    app = App(name)
    app.capture("people", columns=columns)
    mirror = Projection("mirror")
    rows = mirror.documents("rows")

    @mirror.on_row("people")
    def _changed(change: RowChanged, ctx: ApplyContext) -> None:
        key = str(change.key["id"])
        if change.row is None:
            ctx[rows].delete(key)
        else:
            ctx[rows].put(key, change.row)

    @app.query(Person, reads=[mirror])
    def _person(query: Person, ctx: ReadContext) -> dict[str, Any]:
        doc = ctx[rows].get(str(query.id))
        if doc is None:
            raise NotFound(f"there is no person {query.id}")
        return dict(doc)

    return app


def capture_runtime(database: Database, app: App, **options: Any) -> Runtime:
    """Projector, query and capture roles, the tables' snapshots taken; nothing started (tests
    drive the rounds)."""
    runtime = Runtime(
        app, store=database.url, read_store=database.url,
        roles="projector,query,capture", **options,
    )
    runtime.install()
    assert runtime.capturer is not None
    runtime.capturer.run_once()
    return runtime


def captured(database: Database) -> list[dict[str, Any]]:
    """Every event of the log, decoded: position, stream, version, data and metadata."""
    rows = database.sql(
        "SELECT position, stream, version, data, metadata FROM projectionist_events"
        " ORDER BY position"
    )
    return [
        {
            "position": position,
            "stream": stream,
            "version": version,
            **json.loads(str(data)),
            "metadata": json.loads(str(metadata)),
        }
        for position, stream, version, data, metadata in rows
    ]


def changes(database: Database) -> list[tuple[str, str, Any, Any]]:
    """(op, stream, row, old) of every captured event, in log order."""
    return [(e["op"], e["stream"], e["row"], e["old"]) for e in captured(database)]


def row_count(database: Database, table: str) -> int:
    return int(database.sql(f"SELECT count(*) FROM {table}")[0][0])  # type: ignore[arg-type]


__all__ = ["PEOPLE", "Person", "capture_runtime", "captured", "changes", "people_app", "sa"]
