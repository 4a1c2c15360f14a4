"""A small app for framework tests: notes on streams, one SQL view and one document view.

Each `Notes()` is a new App with its own projection objects, so a test can break a handler
(`poison`) without touching other tests.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa

from projectionist import (
    ANY_VERSION,
    App,
    ApplyContext,
    Command,
    Event,
    Principal,
    Projection,
    Query,
    ReadContext,
    Refused,
    UnitOfWork,
)


class AddNote(Command):
    stream: str
    text: str
    expected_version: int = ANY_VERSION
    fail_after_record: bool = False


class AddNotes(Command):
    """Records several notes on one stream in one command."""

    stream: str
    texts: list[str]


class ClaimName(Command):
    """Inserts a row keyed by `name`; a second claim breaks the primary key."""

    name: str


class GuardedNote(Command):
    """Only subjects named in `allowed` may send it (a command policy)."""

    stream: str
    text: str
    allowed: list[str]


class NoteAdded(Event):
    text: str


class NameClaimed(Event):
    name: str


class CountNotes(Query):
    stream: str


class FindNotes(Query):
    stream: str | None = None
    limit: int = 20
    after: str | None = None


class CountBoth(Query):
    """Reads two projections, so its freshness is the slower one's."""

    stream: str


class Notes:
    """A new notes App, its tables, and switches for tests."""

    def __init__(self, *, on_error: str | None = None) -> None:
        self.poison: set[str] = set()  # note_counts raises on these texts
        self.crash: set[str] = set()  # note_counts ends the process on these texts
        self.slow: set[str] = set()  # note_counts takes `slow_s` more on these texts
        self.slow_s = 0.002
        self.applied: list[str] = []
        self.write_model = sa.MetaData()
        self.rows = sa.Table(
            "notes",
            self.write_model,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("stream", sa.String(64), nullable=False),
            sa.Column("text", sa.String(200), nullable=False),
        )
        self.names = sa.Table(
            "names", self.write_model, sa.Column("name", sa.String(64), primary_key=True)
        )
        self.app = App("notes", write_model=self.write_model)

        options = {"on_error": on_error} if on_error is not None else {}
        self.counting = Projection("note_counts", **options)
        self.counts = self.counting.table(
            "note_counts",
            sa.Column("stream", sa.String(64), primary_key=True),
            sa.Column("count", sa.Integer, nullable=False),
            sa.Column("texts", sa.Text, nullable=False),
        )
        self.listing = Projection("note_list")
        self.docs = self.listing.documents("note_docs", indexes={"stream": str, "position": int})

        self._register_commands()
        self._register_projections()
        self._register_queries()

    def _register_commands(self) -> None:
        rows, names = self.rows, self.names

        @self.app.command(AddNote)
        def add_note(command: AddNote, uow: UnitOfWork) -> None:
            uow.connection.execute(sa.insert(rows).values(stream=command.stream,
                                                          text=command.text))
            uow.record(command.stream, NoteAdded(text=command.text),
                       expected_version=command.expected_version)
            if command.fail_after_record:
                raise Refused("the note was refused after it was written")

        @self.app.command(AddNotes)
        def add_notes(command: AddNotes, uow: UnitOfWork) -> None:
            for text in command.texts:
                uow.connection.execute(sa.insert(rows).values(stream=command.stream, text=text))
            uow.record(command.stream, *(NoteAdded(text=t) for t in command.texts))

        @self.app.command(ClaimName)
        def claim_name(command: ClaimName, uow: UnitOfWork) -> None:
            uow.connection.execute(sa.insert(names).values(name=command.name))
            uow.record(f"name-{command.name}", NameClaimed(name=command.name))

        def only_allowed(principal: Principal, command: GuardedNote) -> bool:
            return principal.subject in command.allowed

        @self.app.command(GuardedNote, policy=only_allowed)
        def guarded_note(command: GuardedNote, uow: UnitOfWork) -> None:
            uow.connection.execute(sa.insert(rows).values(stream=command.stream,
                                                          text=command.text))
            uow.record(command.stream, NoteAdded(text=command.text))

        self.app.events(NameClaimed)

    def _register_projections(self) -> None:
        counts, docs = self.counts, self.docs

        @self.counting.on(NoteAdded)
        def count(event: NoteAdded, ctx: ApplyContext) -> None:
            if event.text in self.poison:
                raise RuntimeError(f"cannot apply {event.text!r}")
            if event.text in self.crash:
                os._exit(17)
            if event.text in self.slow:
                time.sleep(self.slow_s)
            self.applied.append(event.text)
            table = ctx[counts]
            row = ctx.connection.execute(
                sa.select(table.c.count, table.c.texts).where(table.c.stream == ctx.stream)
            ).first()
            if row is None:
                ctx.connection.execute(sa.insert(table).values(stream=ctx.stream, count=1,
                                                               texts=event.text))
            else:
                ctx.connection.execute(
                    sa.update(table).where(table.c.stream == ctx.stream)
                    .values(count=row.count + 1, texts=f"{row.texts},{event.text}")
                )

        @self.listing.on(NoteAdded)
        def list_note(event: NoteAdded, ctx: ApplyContext) -> None:
            meta = ctx.metadata
            ctx[docs].put(f"{ctx.position:08d}", {
                "stream": ctx.stream, "position": ctx.position, "text": event.text,
                "command_id": meta.command_id, "correlation_id": meta.correlation_id,
                "subject": meta.subject, "recorded_at": ctx.recorded_at,
            })

        self.app.projection(self.counting)
        self.app.projection(self.listing)

    def _register_queries(self) -> None:
        counts, docs = self.counts, self.docs

        @self.app.query(CountNotes, reads=[self.counting])
        def count_notes(query: CountNotes, ctx: ReadContext) -> dict[str, Any]:
            table = ctx[counts]
            row = ctx.connection.execute(
                sa.select(table.c.count, table.c.texts).where(table.c.stream == query.stream)
            ).first()
            if row is None:
                return {"count": 0, "texts": []}
            return {"count": row.count, "texts": row.texts.split(",")}

        @self.app.query(FindNotes, reads=[self.listing])
        def find_notes(query: FindNotes, ctx: ReadContext) -> dict[str, Any]:
            where = {"stream": query.stream} if query.stream is not None else {}
            page = ctx[docs].find(where=where, order_by="position", limit=query.limit,
                                  after=query.after)
            return {"items": page.items, "next": page.next}

        @self.app.query(CountBoth, reads=[self.counting, self.listing])
        def count_both(query: CountBoth, ctx: ReadContext) -> dict[str, Any]:
            table = ctx[counts]
            count = ctx.connection.execute(
                sa.select(table.c.count).where(table.c.stream == query.stream)
            ).scalar()
            return {"count": count or 0, "docs": ctx[docs].count(where={"stream": query.stream})}
