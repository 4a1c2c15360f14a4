"""A build that parked events never replaces a good one by itself; answers state dead letters."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    Command,
    Event,
    HandlerFailed,
    Projection,
    Query,
    ReadContext,
    Refused,
    Runtime,
    State,
    UnitOfWork,
)


class Say(Command):
    word: str


class Said(Event):
    word: str


class Words(Query):
    pass


class Vocabulary:
    """An app with one projection, `words`, whose handler raises on the words in `poison`."""

    def __init__(self, version: int = 1, *, poison: set[str] | None = None) -> None:
        self.poison = poison or set()
        self.app = App("vocabulary")
        projection = Projection("words", version)
        words = projection.table(
            "words",
            sa.Column("word", sa.String(64), primary_key=True),
            sa.Column("times", sa.Integer, nullable=False),
        )
        poisoned = self.poison

        @projection.on(Said)
        def said(event: Said, ctx: ApplyContext) -> None:
            if event.word in poisoned:
                raise ValueError(f"cannot count {event.word!r}")
            ctx.increment(words, {"word": event.word}, times=1)

        @self.app.command(Say)
        def say(command: Say, uow: UnitOfWork) -> None:
            uow.record(f"word-{command.word}", Said(word=command.word))

        @self.app.query(Words, reads=[projection])
        def list_words(query: Words, ctx: ReadContext) -> dict[str, int]:
            rows = ctx.connection.execute(sa.select(ctx[words])).fetchall()
            return {row.word: row.times for row in rows}


@pytest.fixture
def stores(store_urls: tuple[str, str]) -> tuple[str, str]:
    return store_urls


def runtime_of(vocabulary: Vocabulary, stores: tuple[str, str]) -> Runtime:
    write, read = stores
    runtime = Runtime(vocabulary.app, store=write, read_store=read)
    runtime.install()
    return runtime


@pytest.fixture
def served(stores: tuple[str, str]) -> Iterator[Runtime]:
    """Version 1 of `words`, caught up over three words."""
    runtime = runtime_of(Vocabulary(1), stores)
    try:
        for word in ("tea", "milk", "tea"):
            runtime.execute(Say(word=word))
        runtime.catch_up()
        yield runtime
    finally:
        runtime.stop()


def builds(runtime: Runtime) -> list[tuple[int, bool, State, int]]:
    return [
        (row.version, row.active, row.state, row.dead_letters)
        for row in runtime.status()
        if row.name == "words"
    ]


def test_a_new_version_that_parks_events_is_blocked_and_the_old_build_keeps_serving(
    served: Runtime, stores: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="projectionist")
    runtime = runtime_of(Vocabulary(2, poison={"milk"}), stores)
    try:
        runtime.catch_up()
        assert builds(runtime) == [(1, True, State.LIVE, 0), (2, False, State.BLOCKED, 1)]
        answer = runtime.ask(Words())
        assert answer.data == {"tea": 2, "milk": 1}
        assert answer.freshness.dead_letters == 0
        parked = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(parked) == 1
        message = parked[0].getMessage()
        assert "words" in message and "Said" in message
        assert "ValueError: cannot count 'milk'" in message
        assert any("not swapped in" in r.getMessage() for r in caplog.records)
    finally:
        runtime.stop()


def test_a_blocked_build_is_swapped_in_once_its_dead_letters_are_retried_after_a_fix(
    served: Runtime, stores: tuple[str, str]
) -> None:
    broken = Vocabulary(2, poison={"milk"})
    runtime = runtime_of(broken, stores)
    try:
        runtime.catch_up()
        broken.poison.clear()  # the fix
        assert runtime.retry_dead_letters("words") == (1, 0)
        runtime.catch_up()
        assert builds(runtime) == [(2, True, State.LIVE, 0)]
        assert runtime.ask(Words()).data == {"tea": 2, "milk": 1}
    finally:
        runtime.stop()


def test_an_operator_swaps_a_blocked_build_in_only_with_force(
    served: Runtime, stores: tuple[str, str]
) -> None:
    runtime = runtime_of(Vocabulary(2, poison={"milk"}), stores)
    try:
        runtime.catch_up()
        with pytest.raises(Refused, match="1 dead letter"):
            runtime.swap("words")
        swapped = runtime.swap("words", force=True)
        assert (swapped.version, swapped.active) == (2, True)
        answer = runtime.ask(Words())
        assert answer.data == {"tea": 2}
        assert answer.freshness.dead_letters == 1
        with pytest.raises(Refused, match="no build in progress"):
            runtime.swap("words")
    finally:
        runtime.stop()


def test_answers_of_a_first_build_with_dead_letters_state_them(stores: tuple[str, str]) -> None:
    runtime = runtime_of(Vocabulary(1, poison={"milk"}), stores)
    try:
        for word in ("tea", "milk"):
            runtime.execute(Say(word=word))
        runtime.catch_up()
        answer = runtime.ask(Words())
        assert answer.data == {"tea": 1}
        assert answer.freshness.dead_letters == 1
        assert answer.to_json()["freshness"]["dead_letters"] == 1
    finally:
        runtime.stop()


def test_strict_catch_up_raises_the_first_handler_failure_and_parks_nothing(
    stores: tuple[str, str],
) -> None:
    runtime = runtime_of(Vocabulary(1, poison={"milk"}), stores)
    try:
        for word in ("tea", "milk", "sugar"):
            runtime.execute(Say(word=word))
        with pytest.raises(HandlerFailed) as failed:
            runtime.catch_up(strict=True)
        assert isinstance(failed.value.__cause__, ValueError)
        assert failed.value.position == 2
        assert runtime.list_dead_letters("words") == []
        assert runtime.ask(Words()).data == {"tea": 1}
    finally:
        runtime.stop()


def test_a_checkpoint_table_of_an_older_release_gains_its_dead_letter_count(
    stores: tuple[str, str],
) -> None:
    runtime = runtime_of(Vocabulary(1, poison={"milk"}), stores)
    try:
        runtime.execute(Say(word="milk"))
        runtime.catch_up()
        with runtime.read_store.write() as connection:  # as an older release left it
            connection.exec_driver_sql(
                "ALTER TABLE projectionist_projections DROP COLUMN dead_letters"
            )
            connection.exec_driver_sql("DROP TABLE projectionist_schema")
    finally:
        runtime.stop()
    again = runtime_of(Vocabulary(1, poison={"milk"}), stores)
    try:
        assert again.ask(Words()).freshness.dead_letters == 1
    finally:
        again.stop()
