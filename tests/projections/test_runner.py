"""The projection runner: batches, checkpoints, crashes, restarts, failing handlers."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectionist import ProjectionistError, Runtime
from projectionist.projections.batch import CheckpointMoved
from tests.helpers import checkpoint, read_model_rows, serving, wait_for
from tests.notes import AddNote, AddNotes, ClaimName, CountNotes, FindNotes, Notes

ROOT = Path(__file__).resolve().parents[2]


def count_notes(runtime: Runtime, stream: str) -> dict[str, object]:
    data: dict[str, object] = runtime.ask(CountNotes(stream=stream)).data
    return data


def texts_up_to_checkpoint(runtime: Runtime, stream: str) -> list[str]:
    """What the note_counts read model must hold for `stream`: the events up to its checkpoint."""
    assert runtime.log is not None
    position = checkpoint(runtime, "note_counts")
    return [e.data.split('"')[3] for e in runtime.log.read(0, 10_000)
            if e.position <= position and e.stream == stream and e.type == "NoteAdded"]


@pytest.fixture
def opened() -> Iterator[list[Runtime]]:
    """Runtimes a test opens on the same stores (each one a process, started or restarted)."""
    runtimes: list[Runtime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.stop()


def open_runtime(opened: list[Runtime], notes: Notes, store_urls: tuple[str, str],
                 **options: int) -> Runtime:
    write, read = store_urls
    runtime = Runtime(notes.app, store=write, read_store=read, **options)
    runtime.install()
    opened.append(runtime)
    return runtime


def test_applies_every_event_and_moves_the_checkpoint_to_the_last(
    notes_runtime: Runtime,
) -> None:
    notes_runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
    result = notes_runtime.execute(AddNote(stream="t", text="c"))
    assert notes_runtime.catch_up() == 6  # three events, two projections
    assert count_notes(notes_runtime, "s") == {"count": 2, "texts": ["a", "b"]}
    assert count_notes(notes_runtime, "t") == {"count": 1, "texts": ["c"]}
    assert checkpoint(notes_runtime, "note_counts") == result.position
    assert checkpoint(notes_runtime, "note_list") == result.position
    assert notes_runtime.catch_up() == 0


def test_events_without_a_handler_still_move_the_checkpoint(notes_runtime: Runtime) -> None:
    result = notes_runtime.execute(ClaimName(name="n"))
    notes_runtime.catch_up()
    assert checkpoint(notes_runtime, "note_counts") == result.position
    assert all(rows == [] for rows in read_model_rows(notes_runtime).values())


def test_resumes_from_last_checkpoint(
    notes: Notes, store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    first = open_runtime(opened, notes, store_urls)
    first.execute(AddNotes(stream="s", texts=["a", "b", "c"]))
    assert first.catch_up() == 6
    first.stop()

    second = open_runtime(opened, notes, store_urls)
    result = second.execute(AddNote(stream="s", text="d"))
    assert second.catch_up() == 2  # only the new event, in each projection
    assert count_notes(second, "s") == {"count": 4, "texts": ["a", "b", "c", "d"]}
    assert checkpoint(second, "note_counts") == result.position
    assert notes.applied == ["a", "b", "c", "d"]


def test_batches_respect_the_batch_size(
    notes: Notes, store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    runtime = open_runtime(opened, notes, store_urls, batch_size=2)
    runtime.execute(AddNotes(stream="s", texts=["a", "b", "c", "d", "e"]))
    [counting] = [r for r in runtime.runners if r.name == "note_counts"]
    steps = []
    while (result := counting.run_once()).applied:
        steps.append(result.applied)
        assert checkpoint(runtime, "note_counts") == result.position
    assert steps == [2, 2, 1]
    assert count_notes(runtime, "s")["count"] == 5


def test_crash_mid_batch_leaves_neither_read_model_changes_nor_a_moved_checkpoint(
    notes: Notes, store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    runtime = open_runtime(opened, notes, store_urls)
    result = runtime.execute(AddNotes(stream="s", texts=["a", "b", "crash", "c", "d"]))
    before = read_model_rows(runtime)

    # A projector process applies a, b, then dies in the middle of the batch.
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_PROJECTOR, *store_urls],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert crashed.returncode == 17, crashed.stderr

    assert read_model_rows(runtime) == before
    assert checkpoint(runtime, "note_counts") == 0

    # The fixed projector resumes where the checkpoint is, and the read model is exact.
    runtime.catch_up()
    assert count_notes(runtime, "s") == {"count": 5, "texts": ["a", "b", "crash", "c", "d"]}
    assert checkpoint(runtime, "note_counts") == result.position
    assert notes.applied == ["a", "b", "crash", "c", "d"]


CRASHING_PROJECTOR = """
import sys
from projectionist import Runtime
from tests.notes import Notes

notes = Notes()
notes.crash.add("crash")
Runtime(notes.app, store=sys.argv[1], read_store=sys.argv[2]).catch_up()
"""


def test_failing_handler_rolls_back_its_batch_and_stops_the_projection(
    store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    notes = Notes(on_error="stop")
    runtime = open_runtime(opened, notes, store_urls)
    notes.poison.add("poison")
    runtime.execute(AddNotes(stream="s", texts=["a", "b", "poison", "c", "d"]))

    with pytest.raises(ProjectionistError, match="poison"):
        runtime.catch_up()

    # The failed batch rolled back: what the read model holds is exactly the events up to
    # the checkpoint, each applied once, and the checkpoint is short of the failing event.
    texts = count_notes(runtime, "s")["texts"]
    assert texts == texts_up_to_checkpoint(runtime, "s")
    assert texts in ([], ["a"], ["a", "b"])

    notes.poison.clear()
    runtime.catch_up()
    assert count_notes(runtime, "s") == {"count": 5, "texts": ["a", "b", "poison", "c", "d"]}


def test_crash_keeps_the_batches_committed_before_it(
    store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    notes = Notes(on_error="stop")
    runtime = open_runtime(opened, notes, store_urls, batch_size=2)
    notes.poison.add("poison")
    events = runtime.execute(AddNotes(stream="s", texts=["a", "b", "c", "poison", "d"])).events

    with pytest.raises(ProjectionistError):
        runtime.catch_up()
    assert checkpoint(runtime, "note_counts") in (events[1].position, events[2].position)
    assert count_notes(runtime, "s")["texts"] == texts_up_to_checkpoint(runtime, "s")

    notes.poison.clear()
    runtime.catch_up()
    assert count_notes(runtime, "s") == {"count": 5, "texts": ["a", "b", "c", "poison", "d"]}


def test_a_restarted_runtime_repairs_a_stopped_projection(
    store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    broken = Notes(on_error="stop")
    broken.poison.add("poison")
    first = open_runtime(opened, broken, store_urls)
    first.execute(AddNotes(stream="s", texts=["a", "poison", "b"]))
    with pytest.raises(ProjectionistError):
        first.catch_up()
    first.stop()

    second = open_runtime(opened, Notes(on_error="stop"), store_urls)  # the fixed code
    second.catch_up()
    assert count_notes(second, "s") == {"count": 3, "texts": ["a", "poison", "b"]}


def test_a_poisoned_event_is_parked_and_holds_back_only_its_stream(
    notes_runtime: Runtime, notes: Notes
) -> None:
    notes.poison.add("poison")
    notes_runtime.execute(AddNotes(stream="s", texts=["a", "poison", "b"]))
    result = notes_runtime.execute(AddNote(stream="t", text="x"))

    notes_runtime.catch_up()
    assert count_notes(notes_runtime, "s") == {"count": 1, "texts": ["a"]}
    assert count_notes(notes_runtime, "t") == {"count": 1, "texts": ["x"]}
    assert checkpoint(notes_runtime, "note_counts") == result.position
    parked = notes_runtime.list_dead_letters("note_counts")
    assert [(d.stream, d.reason) for d in parked] == [("s", "failed"), ("s", "waiting")]
    assert "cannot apply 'poison'" in (parked[0].error or "")
    assert serving(notes_runtime, "note_counts").dead_letters == 2

    notes.poison.clear()
    assert notes_runtime.retry_dead_letters("note_counts") == (2, 0)
    assert count_notes(notes_runtime, "s") == {"count": 3, "texts": ["a", "poison", "b"]}
    assert notes_runtime.list_dead_letters("note_counts") == []


def test_projector_thread_retries_a_stopped_projection_until_it_is_fixed(
    store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    notes = Notes(on_error="stop")
    runtime = open_runtime(opened, notes, store_urls)
    notes.poison.add("poison")
    runtime.start()
    result = runtime.execute(AddNotes(stream="s", texts=["a", "poison", "b"]))

    wait_for(lambda: serving(runtime, "note_counts").state == "failed",
             what="note_counts failing")
    # The other projection does not wait for the failing one.
    answer = runtime.ask(FindNotes(stream="s"), min_position=result.position, wait_ms=10_000)
    assert [doc["text"] for doc in answer.data["items"]] == ["a", "poison", "b"]
    assert checkpoint(runtime, "note_counts") < result.position

    notes.poison.clear()
    answer = runtime.ask(CountNotes(stream="s"), min_position=result.position, wait_ms=10_000)
    assert answer.data == {"count": 3, "texts": ["a", "poison", "b"]}
    assert serving(runtime, "note_counts").state == "live"


def test_checkpoint_commits_in_the_same_transaction_as_the_read_model(
    notes: Notes, store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    late = open_runtime(opened, notes, store_urls)
    early = open_runtime(opened, notes, store_urls)
    early.execute(AddNotes(stream="s", texts=["a", "b", "c"]))
    [stale] = [r for r in late.runners if r.name == "note_counts"]
    assert stale.position == 0  # read before the other process applies the events

    early.catch_up()
    # The stale runner applies the same batch, then finds the checkpoint moved: its
    # read-model writes roll back with the checkpoint update they share a transaction with.
    with pytest.raises(CheckpointMoved):
        stale.run_once()
    assert count_notes(early, "s") == {"count": 3, "texts": ["a", "b", "c"]}
    assert notes.applied == ["a", "b", "c", "a", "b", "c"]
    assert stale.run_until_caught_up() == 0
    assert count_notes(early, "s")["count"] == 3


def test_catch_up_after_another_process_applied_the_events_applies_nothing_twice(
    notes: Notes, store_urls: tuple[str, str], opened: list[Runtime]
) -> None:
    idle = open_runtime(opened, notes, store_urls)
    busy = open_runtime(opened, notes, store_urls)
    for runner in idle.runners:
        assert runner.position == 0
    busy.execute(AddNotes(stream="s", texts=["a", "b"]))
    busy.catch_up()

    idle.catch_up()
    assert count_notes(idle, "s") == {"count": 2, "texts": ["a", "b"]}
    assert checkpoint(idle, "note_counts") == busy.head()


def test_a_runner_of_a_retired_build_stops_instead_of_spinning(notes_runtime: Runtime) -> None:
    notes_runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
    [retired] = [r for r in notes_runtime.runners if r.name == "note_counts"]
    notes_runtime.rebuild("note_counts")
    notes_runtime.catch_up()  # the new build catches up and is swapped in; the old one goes
    assert serving(notes_runtime, "note_counts").generation != retired.generation

    notes_runtime.execute(AddNote(stream="s", text="c"))
    retired.forget_position()
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (retired.run_until_caught_up(), finished.set()),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert finished.is_set(), "the runner of a dropped build kept retrying"
    notes_runtime.catch_up()
    assert count_notes(notes_runtime, "s") == {"count": 3, "texts": ["a", "b", "c"]}
