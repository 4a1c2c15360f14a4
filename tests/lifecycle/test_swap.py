"""The swap of a finished rebuild never lets answers step back behind what was served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from projectionist import Runtime
from tests.lifecycle.support import builds
from tests.notes import AddNote, AddNotes, CountNotes, Notes


@contextmanager
def idle_runtime(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """A runtime whose projector thread is not started: the test moves every build itself."""
    write, read = store_urls
    runtime = Runtime(Notes().app, store=write, read_store=read)
    try:
        runtime.install()
        yield runtime
    finally:
        runtime.stop()


def test_a_build_behind_the_serving_one_is_not_swapped_in_until_it_catches_up(
    store_urls: tuple[str, str],
) -> None:
    _, read = store_urls
    with idle_runtime(store_urls) as runtime:
        for i in range(6):
            runtime.execute(AddNotes(stream=f"s{i % 2}", texts=["a", "b"]))
        runtime.catch_up()
        serving = runtime.ask(CountNotes(stream="s1")).freshness.position
        build = runtime.rebuild("note_counts")

        assert runtime.checkpoints.swap("note_counts", build.generation) is None
        assert [(b["generation"], b["active"]) for b in builds(read, "note_counts")] == [
            (1, True), (build.generation, False)]
        answer = runtime.ask(CountNotes(stream="s1"))
        assert answer.data["count"] == 6
        assert answer.freshness.position == serving

        # Caught up, the build is swapped in, and the answer is the same.
        runtime.catch_up()
        assert [(b["generation"], b["active"]) for b in builds(read, "note_counts")] == [
            (build.generation, True)]
        answer = runtime.ask(CountNotes(stream="s1"))
        assert answer.data["count"] == 6
        assert answer.freshness.position == serving


def test_behind_ok_swaps_a_build_that_is_behind(store_urls: tuple[str, str]) -> None:
    """The way out when the serving build keeps running ahead: the answer steps back and says
    so in its freshness, and a read with min_position waits for the new build."""
    with idle_runtime(store_urls) as runtime:
        added = runtime.execute(AddNotes(stream="s", texts=["a", "b", "c"]))
        runtime.catch_up()
        build = runtime.rebuild("note_counts")
        retired = runtime.checkpoints.swap("note_counts", build.generation, behind_ok=True)
        assert [b.generation for b in retired or []] == [1]
        answer = runtime.ask(CountNotes(stream="s"))
        assert answer.freshness.position == 0
        assert answer.data["count"] == 0
        runtime.start()
        answer = runtime.ask(CountNotes(stream="s"), min_position=added.position, wait_ms=10000)
        assert answer.data["count"] == 3
        assert answer.freshness.position >= added.position


def test_a_build_swapped_in_behind_does_not_repeat_side_effects(
    store_urls: tuple[str, str],
) -> None:
    """Swapped in behind the serving build (its patience ran out under load), the new build
    applies the events in between to its tables, but their side effects already ran."""
    from tests.lifecycle.apps import Mailer

    write, read = store_urls
    notes = Notes()
    mailer = Mailer(notes)
    runtime = Runtime(notes.app, store=write, read_store=read)  # no projector thread
    try:
        runtime.catch_up()
        build = runtime.rebuild("mailer_mail")
        runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
        projector = runtime.projector
        assert projector is not None
        serving = next(r for r in projector.runners.values()
                       if r.name == "mailer_mail" and r.serving)
        serving.run_until_caught_up()
        assert mailer.sent == ["a", "b"]
        assert projector.swap("mailer_mail", build.generation, force=True)
        runtime.execute(AddNote(stream="s", text="c"))
        runtime.catch_up()
        assert mailer.sent == ["a", "b", "c"]
    finally:
        runtime.stop()


def test_the_projector_thread_survives_an_unexpected_error(
    store_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, poll_interval_s=0.05) as runtime:
        projector = runtime.projector
        assert projector is not None
        step = projector.step
        failures = []

        def fails_once() -> int:
            if not failures:
                failures.append(1)
                raise RuntimeError("an unexpected failure")
            return step()

        monkeypatch.setattr(projector, "step", fails_once)
        # The loop may be inside a step already: wait for the patched one to fail first.
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        added = runtime.execute(AddNote(stream="s", text="after the failure"))
        answer = runtime.ask(CountNotes(stream="s"), min_position=added.position, wait_ms=10000)
        assert answer.data["count"] == 1
        assert failures == [1]
        assert projector.running


def test_swapping_in_a_build_that_is_gone_raises_build_gone(store_urls: tuple[str, str]) -> None:
    from projectionist.readstore.checkpoints import BuildGone

    _, read = store_urls
    with idle_runtime(store_urls) as runtime:
        runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
        runtime.catch_up()
        build = runtime.rebuild("note_counts")
        runtime.checkpoints.drop([build])  # another process dropped it

        with pytest.raises(BuildGone):
            runtime.checkpoints.swap("note_counts", build.generation, behind_ok=True)
        with pytest.raises(BuildGone):
            runtime.checkpoints.swap("note_counts", build.generation + 10)
        # The serving build is untouched.
        assert [(b["generation"], b["active"]) for b in builds(read, "note_counts")] == [
            (1, True)]
        assert runtime.ask(CountNotes(stream="s")).data["count"] == 2


def test_a_projector_stops_running_a_caught_up_build_dropped_by_another_process(
    store_urls: tuple[str, str],
) -> None:
    _, read = store_urls
    with idle_runtime(store_urls) as runtime:
        for i in range(4):
            runtime.execute(AddNotes(stream=f"s{i % 2}", texts=["a", "b"]))
        runtime.catch_up()
        serving = runtime.ask(CountNotes(stream="s1"))
        build = runtime.rebuild("note_counts")
        projector = runtime.projector
        assert projector is not None
        key = ("note_counts", build.generation)
        runner = projector.runners[key]
        runner.run_until_caught_up()

        runtime.checkpoints.drop([build])  # another process dropped it meanwhile

        # Gone is as good as swapped for the caller: nothing is left to wait for.
        assert projector.swap("note_counts", build.generation, force=True)
        assert key not in projector.runners
        assert ("note_counts", 1) in projector.runners
        assert [(b["generation"], b["active"]) for b in builds(read, "note_counts")] == [
            (1, True)]
        answer = runtime.ask(CountNotes(stream="s1"))
        assert answer.data == serving.data
        assert answer.data["count"] == 4
        assert answer.freshness.position == serving.freshness.position

        # The old build goes on serving new events; the dropped one never comes back.
        added = runtime.execute(AddNote(stream="s1", text="c"))
        runtime.catch_up()
        assert key not in projector.runners
        answer = runtime.ask(CountNotes(stream="s1"))
        assert answer.data["count"] == 5
        assert answer.freshness.position >= added.position
        assert [(row.generation, row.active) for row in runtime.status()
                if row.name == "note_counts"] == [(1, True)]


def test_a_rebuild_started_right_after_another_process_dropped_one_builds_from_scratch(
    store_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from projectionist.projections import swap as swap_module

    monkeypatch.setattr(swap_module, "SWAP_PATIENCE_S", 0.2)
    with idle_runtime(store_urls) as runtime:
        for i in range(4):
            runtime.execute(AddNotes(stream=f"s{i % 2}", texts=["a", "b"]))
        runtime.catch_up()
        build = runtime.rebuild("note_counts")
        projector = runtime.projector
        assert projector is not None
        projector.runners[("note_counts", build.generation)].run_until_caught_up()
        runtime.checkpoints.drop([build])  # another process dropped it meanwhile

        runtime.rebuild("note_counts")  # before this process noticed the drop
        runtime.catch_up()
        answer = runtime.ask(CountNotes(stream="s1"))
        assert answer.data["count"] == 4
        assert [(row.state.value, row.position) for row in runtime.status()
                if row.name == "note_counts"] == [("live", answer.freshness.position)]
