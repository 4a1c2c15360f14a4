"""The state of each build in `runtime.status()` and in GET /projections is the same.

A rebuild in progress shows `rebuilding`; one that failed shows `failed` (GET /projections used to
call every build that was not serving `rebuilding`, failed or not).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from projectionist import HandlerFailed, Runtime, State
from tests.lifecycle.support import InProcessServer
from tests.notes import AddNote, CountNotes, Notes


@pytest.fixture
def notes() -> Notes:
    return Notes(on_error="stop")


@pytest.fixture
def runtime(notes: Notes, store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """The notes app, projector not started: the test moves every build itself."""
    write, read = store_urls
    runtime = Runtime(notes.app, store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


def library_states(runtime: Runtime, name: str) -> dict[int, tuple[str, bool]]:
    return {row.generation: (row.state.value, row.active)
            for row in runtime.status() if row.name == name}


def http_states(server: InProcessServer, name: str) -> dict[int, tuple[str, bool]]:
    response = server.http.get("/projections")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return {row["generation"]: (row["state"], row["active"])
            for row in rows if row["name"] == name}


def test_a_rebuild_whose_handler_fails_shows_failed_in_status_and_over_http(
    runtime: Runtime, notes: Notes,
) -> None:
    for text in ("a", "bad", "b"):
        runtime.execute(AddNote(stream="s", text=text))
    runtime.catch_up()  # the serving build applied "bad" before it became poison
    build = runtime.rebuild("note_counts")

    with InProcessServer(runtime) as server:
        in_progress = {1: ("live", True), build.generation: ("rebuilding", False)}
        assert library_states(runtime, "note_counts") == in_progress
        assert http_states(server, "note_counts") == in_progress

        notes.poison.add("bad")
        with pytest.raises(HandlerFailed, match="cannot apply 'bad'"):
            runtime.catch_up()

        failed = {1: ("live", True), build.generation: ("failed", False)}
        assert library_states(runtime, "note_counts") == failed
        assert http_states(server, "note_counts") == failed
        # The serving build keeps answering meanwhile.
        assert runtime.ask(CountNotes(stream="s")).data["count"] == 3


def test_a_build_marked_failed_shows_failed_in_status_and_over_http(runtime: Runtime) -> None:
    runtime.execute(AddNote(stream="s", text="a"))
    runtime.catch_up()
    build = runtime.rebuild("note_list")
    runtime.checkpoints.mark("note_list", build.generation, state=State.FAILED,
                             error="RuntimeError: failed in another process")

    with InProcessServer(runtime) as server:
        expected = {1: ("live", True), build.generation: ("failed", False)}
        assert library_states(runtime, "note_list") == expected
        assert http_states(server, "note_list") == expected
        # Another projection's state is untouched.
        assert http_states(server, "note_counts") == {1: ("live", True)}
