"""Poison events: parked as dead letters (or stopping the projection), retried after a fix."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from projectionist import HandlerFailed, Runtime
from tests.helpers import wait_for
from tests.lifecycle.support import InProcessServer, Processes, run_cli
from tests.notes import AddNote, CountNotes, FindNotes, Notes

APP = "tests.lifecycle.apps:notes_app"
# Two streams, interleaved; "bad" is the poisoned note of stream A.
SCRIPT = [("A", "a1"), ("B", "b1"), ("A", "bad"), ("B", "b2"), ("A", "a2"), ("A", "a3")]


@pytest.fixture
def poisoned() -> Notes:
    notes = Notes()
    notes.poison.add("bad")
    return notes


@pytest.fixture
def runtime(poisoned: Notes, store_urls: tuple[str, str]) -> Iterator[Runtime]:
    write, read = store_urls
    runtime = Runtime(poisoned.app, store=write, read_store=read, batch_size=4,
                      poll_interval_s=0.05)
    runtime.install()
    yield runtime
    runtime.stop()


def play(runtime: Runtime, script: list[tuple[str, str]]) -> dict[str, int]:
    """Executes the notes; the position of each, by text."""
    return {text: runtime.execute(AddNote(stream=stream, text=text)).position
            for stream, text in script}


def texts(runtime: Runtime, stream: str) -> list[str]:
    data = runtime.ask(CountNotes(stream=stream)).data
    return list(data["texts"])


def status_of(runtime: Runtime, name: str = "note_counts") -> tuple[str, int, int]:
    row = next(r for r in runtime.status() if r.name == name and r.active)
    return row.state, row.lag_events, row.dead_letters


def test_park_stream_parks_the_event_holds_its_stream_and_lets_others_flow(
    runtime: Runtime, poisoned: Notes
) -> None:
    runtime.start()
    at = play(runtime, SCRIPT)
    wait_for(lambda: status_of(runtime)[1] == 0 and texts(runtime, "B") == ["b1", "b2"],
             what="the projection passing the poison event")

    letters = runtime.list_dead_letters("note_counts")
    assert [(d.position, d.stream, d.reason) for d in letters] == [
        (at["bad"], "A", "failed"), (at["a2"], "A", "waiting"), (at["a3"], "A", "waiting")]
    failed = letters[0]
    assert failed.type == "NoteAdded"
    assert failed.attempts == 3
    assert failed.error == "RuntimeError: cannot apply 'bad'"
    assert failed.traceback is not None
    assert "Traceback" in failed.traceback and "in count" in failed.traceback
    assert all(d.error is None for d in letters[1:])
    assert texts(runtime, "A") == ["a1"]
    assert status_of(runtime) == ("live", 0, 3)
    # Another projection of the same events is not held up.
    assert len(runtime.ask(FindNotes(limit=50)).data["items"]) == 6

    # Later events: other streams keep flowing; stream A's wait behind its parked event.
    at.update(play(runtime, [("B", "b3"), ("A", "a4")]))
    wait_for(lambda: texts(runtime, "B") == ["b1", "b2", "b3"] and status_of(runtime)[2] == 4,
             what="b3 applied and a4 parked")
    assert texts(runtime, "A") == ["a1"]

    # A retry before the fix changes nothing, and counts the attempt.
    assert runtime.retry_dead_letters("note_counts") == (0, 4)
    assert runtime.list_dead_letters("note_counts")[0].attempts == 4
    assert texts(runtime, "A") == ["a1"]

    poisoned.poison.clear()  # the fix
    applied_before = len(poisoned.applied)
    assert runtime.retry_dead_letters("note_counts") == (4, 0)
    assert poisoned.applied[applied_before:] == ["bad", "a2", "a3", "a4"]
    assert texts(runtime, "A") == ["a1", "bad", "a2", "a3", "a4"]
    assert runtime.list_dead_letters("note_counts") == []
    assert runtime.retry_dead_letters("note_counts") == (0, 0)  # exactly once
    assert texts(runtime, "A") == ["a1", "bad", "a2", "a3", "a4"]

    # The stream flows again.
    play(runtime, [("A", "a5")])
    wait_for(lambda: texts(runtime, "A")[-1] == "a5", what="a5 applied")
    assert texts(runtime, "A") == ["a1", "bad", "a2", "a3", "a4", "a5"]
    assert status_of(runtime) == ("live", 0, 0)


def test_park_parks_only_the_poison_event(runtime: Runtime, poisoned: Notes) -> None:
    poisoned.counting.on_error = "park"
    at = play(runtime, SCRIPT)
    runtime.catch_up()
    letters = runtime.list_dead_letters("note_counts")
    assert [(d.position, d.reason, d.attempts) for d in letters] == [(at["bad"], "failed", 3)]
    assert texts(runtime, "A") == ["a1", "a2", "a3"]
    assert texts(runtime, "B") == ["b1", "b2"]
    assert status_of(runtime) == ("live", 0, 1)

    poisoned.poison.clear()
    assert runtime.retry_dead_letters("note_counts") == (1, 0)
    # In park mode the parked event lands after its stream's later ones: the price of not
    # holding the stream back.
    assert texts(runtime, "A") == ["a1", "a2", "a3", "bad"]
    assert runtime.retry_dead_letters("note_counts") == (0, 0)
    assert texts(runtime, "A") == ["a1", "a2", "a3", "bad"]
    assert status_of(runtime) == ("live", 0, 0)


def test_stop_stops_the_projection_until_the_handler_is_fixed(
    runtime: Runtime, poisoned: Notes
) -> None:
    poisoned.counting.on_error = "stop"
    at = play(runtime, SCRIPT)
    with pytest.raises(HandlerFailed, match="cannot apply 'bad'"):
        runtime.catch_up()

    runtime.start()
    wait_for(lambda: status_of(runtime)[0] == "failed", what="the state failed")
    _state, lag, dead = status_of(runtime)
    assert (lag, dead) == (at["a3"] - at["b1"], 0)
    # Stopped at the poison event: nothing after it is applied, of any stream.
    assert texts(runtime, "A") == ["a1"]
    assert texts(runtime, "B") == ["b1"]
    assert runtime.list_dead_letters("note_counts") == []
    # Other projections keep going.
    wait_for(lambda: len(runtime.ask(FindNotes(limit=50)).data["items"]) == 6,
             what="the other projection applying every note")
    assert status_of(runtime)[0] == "failed"

    poisoned.poison.clear()  # the fix: the projector's next retry goes on from there
    wait_for(lambda: status_of(runtime) == ("live", 0, 0), what="the projection going on")
    assert texts(runtime, "A") == ["a1", "bad", "a2", "a3"]
    assert texts(runtime, "B") == ["b1", "b2"]


def test_dead_letters_are_counted_listed_and_retried_from_the_command_line_and_http(
    runtime: Runtime, store_urls: tuple[str, str], processes: Processes
) -> None:
    write, read = store_urls
    at = play(runtime, SCRIPT)
    runtime.catch_up()
    stores = ("--store", write, "--read-store", read)

    with InProcessServer(runtime) as server:
        rows = {r["name"]: r for r in server.http.get("/projections").json()}
        assert rows["note_counts"]["dead_letters"] == 3
        assert rows["note_list"]["dead_letters"] == 0
        listed = server.http.get("/projections/note_counts/dead-letters").json()
        assert [(d["position"], d["reason"]) for d in listed] == [
            (at["bad"], "failed"), (at["a2"], "waiting"), (at["a3"], "waiting")]
        assert listed[0]["error"] == "RuntimeError: cannot apply 'bad'"
        assert listed[0]["attempts"] == 3
        refused = server.http.get("/projections/note_counts/dead-letters",
                                  headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401

    status = run_cli("status", APP, *stores, "--json", cwd=processes.workdir)
    assert status.returncode == 0, status.stderr
    counted = {r["name"]: r["dead_letters"] for r in json.loads(status.stdout)}
    assert counted == {"note_counts": 3, "note_list": 0}

    listing = run_cli("dead-letters", "list", "--projection", "note_counts", APP, *stores,
                      "--json", cwd=processes.workdir)
    assert listing.returncode == 0, listing.stderr
    letters = json.loads(listing.stdout)
    assert [(d["position"], d["reason"]) for d in letters] == [
        (at["bad"], "failed"), (at["a2"], "waiting"), (at["a3"], "waiting")]
    assert "cannot apply 'bad'" in letters[0]["traceback"]

    # The command line runs the fixed code (an app with no poisoned note).
    retried = run_cli("dead-letters", "retry", "note_counts", APP, *stores,
                      cwd=processes.workdir)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "3 applied, 0 still parked" in retried.stdout
    assert texts(runtime, "A") == ["a1", "bad", "a2", "a3"]
    assert texts(runtime, "B") == ["b1", "b2"]

    again = run_cli("dead-letters", "retry", "note_counts", APP, *stores, cwd=processes.workdir)
    assert "0 applied, 0 still parked" in again.stdout
    assert texts(runtime, "A") == ["a1", "bad", "a2", "a3"]
    assert {r.name: r.dead_letters for r in runtime.status()} == {"note_counts": 0,
                                                                  "note_list": 0}
