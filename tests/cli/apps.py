"""Small apps the command-line tests load by path, as `tests.cli.apps:NAME`.

`words_v1` and `words_v2` are two versions of one app; `letters` is another app, which shares
no projection with them.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from projectionist import App, ApplyContext, Command, Event, Projection, UnitOfWork


class Say(Command):
    word: str


class Said(Event):
    word: str


def words_app(version: int = 1, *, poison: Iterable[str] = ()) -> App:
    """An app with one projection, `words`, whose handler raises on the words in `poison`."""
    app = App("words")
    projection = Projection("words", version)
    counts = projection.table(
        "words",
        sa.Column("word", sa.String(64), primary_key=True),
        sa.Column("times", sa.Integer, nullable=False),
    )
    poisoned = frozenset(poison)

    @projection.on(Said)
    def said(event: Said, ctx: ApplyContext) -> None:
        if event.word in poisoned:
            raise ValueError(f"cannot count {event.word!r}")
        ctx.increment(counts, {"word": event.word}, times=1)

    @app.command(Say)
    def say(command: Say, uow: UnitOfWork) -> None:
        uow.record(f"word-{command.word}", Said(word=command.word))

    app.projection(projection)
    return app


def letters_app() -> App:
    """Another app: one projection, `letters`, counting the first letters of words."""
    app = App("letters")
    projection = Projection("letters")
    counts = projection.table(
        "letters",
        sa.Column("letter", sa.String(1), primary_key=True),
        sa.Column("times", sa.Integer, nullable=False),
    )

    @projection.on(Said)
    def said(event: Said, ctx: ApplyContext) -> None:
        ctx.increment(counts, {"letter": event.word[:1]}, times=1)

    app.events(Said)
    app.projection(projection)
    return app


words_v1 = words_app(1)
words_v2 = words_app(2)
words_v2_poisoned = words_app(2, poison={"milk"})
letters = letters_app()
