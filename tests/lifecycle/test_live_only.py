"""Live-only handlers (side effects) never run during a rebuild or a replay, and run once for
new events on the serving build."""

from __future__ import annotations

import time

import sqlalchemy as sa

from projectionist import Runtime
from tests.helpers import wait_for
from tests.lifecycle.apps import Mailer
from tests.lifecycle.support import serving_generation
from tests.notes import AddNote, AddNotes, Notes


def seen_rows(runtime: Runtime, mailer: Mailer) -> list[str]:
    """The texts in the replayable table of the mailer projection."""
    generation = serving_generation(runtime, "mailer")
    table = mailer.seen.physical(generation)
    with runtime.read_store.read() as connection:
        return list(connection.execute(sa.select(table.c.text).order_by(table.c.position))
                    .scalars())


def test_live_only_handlers_skip_rebuilds_and_replays_and_run_for_new_events(
    store_urls: tuple[str, str],
) -> None:
    write, read = store_urls
    notes = Notes()
    mailer = Mailer(notes)
    runtime = Runtime(notes.app, store=write, read_store=read, batch_size=3)
    try:
        runtime.install()
        runtime.execute(AddNotes(stream="s", texts=["a", "b", "c"]))
        runtime.catch_up()
        assert mailer.sent == ["a", "b", "c"]  # recorded after the serving build started

        for name in ("mailer_mail", "mailer"):
            build = runtime.rebuild(name)
            runtime.catch_up()
            assert serving_generation(runtime, name) == build.generation
        assert mailer.sent == ["a", "b", "c"], "a rebuild repeated a side effect"
        assert seen_rows(runtime, mailer) == ["a", "b", "c"]  # the replayable part was replayed

        runtime.execute(AddNote(stream="s", text="d"))
        runtime.catch_up()
        assert mailer.sent == ["a", "b", "c", "d"]
    finally:
        runtime.stop()

    # A new version at start-up replays history without a single side effect, then runs for
    # the events that follow.
    upgraded_notes = Notes()
    upgraded = Mailer(upgraded_notes)
    upgraded.mail.version = 2
    runtime = Runtime(upgraded_notes.app, store=write, read_store=read, batch_size=2)
    try:
        runtime.catch_up()
        assert [(r.name, r.version) for r in runtime.status() if r.name == "mailer_mail"] == [
            ("mailer_mail", 2)]
        assert upgraded.sent == []
        runtime.execute(AddNote(stream="s", text="e"))
        runtime.catch_up()
        assert upgraded.sent == ["e"]
    finally:
        runtime.stop()


def test_side_effects_run_once_for_events_recorded_during_a_rebuild(
    store_urls: tuple[str, str],
) -> None:
    """The serving build runs the side effects of events recorded while the new build is
    built; the new build, once swapped in, runs them for later events only."""
    write, read = store_urls
    notes = Notes()
    mailer = Mailer(notes)
    history = [f"h{i}" for i in range(1000)]  # a rebuild long enough to write during it
    with Runtime(notes.app, store=write, read_store=read, batch_size=5,
                 poll_interval_s=0.02) as runtime:
        runtime.execute(AddNotes(stream="s", texts=history))
        wait_for(lambda: len(mailer.sent) == len(history), what="the history's mails")
        build = runtime.rebuild("mailer_mail")
        during: list[str] = []

        def swapped() -> bool:
            return serving_generation(runtime, "mailer_mail") == build.generation

        while not swapped() and len(during) < 20:
            text = f"d{len(during)}"
            during.append(text)
            runtime.execute(AddNote(stream="s", text=text))
            time.sleep(0.01)
        assert len(during) >= 2, "the rebuild was over before events were recorded during it"
        wait_for(swapped, what="the swap")
        after = [f"a{i}" for i in range(3)]
        for text in after:
            runtime.execute(AddNote(stream="s", text=text))
        wait_for(lambda: len(mailer.sent) >= len(history) + len(during) + len(after),
                 what="the mails of the new events")
        wait_for(lambda: seen_rows(runtime, mailer)[-1] == after[-1], what="the view")
    assert sorted(mailer.sent) == sorted([*history, *during, *after])
    assert len(set(mailer.sent)) == len(mailer.sent), "a side effect ran twice"
