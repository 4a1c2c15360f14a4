"""min_position across the lifecycle: answered by the serving build during a rebuild, and by the
new build right after the swap."""

from __future__ import annotations

from projectionist import Runtime
from tests.lifecycle.support import builds
from tests.notes import AddNote, AddNotes, CountNotes, Notes


def test_min_position_is_answered_during_a_rebuild_and_right_after_the_swap(
    store_urls: tuple[str, str],
) -> None:
    write, read = store_urls
    notes = Notes()
    runtime = Runtime(notes.app, store=write, read_store=read, batch_size=5,
                      poll_interval_s=0.05)
    # A process that only answers queries: it watches the checkpoints that others move.
    reader = Runtime(Notes().app, store=write, read_store=read, roles=["query"])
    try:
        runtime.start()
        reader.start()
        # A history long enough for the rebuild (5 events a batch) to be watched mid-way.
        for i in range(60):
            runtime.execute(AddNotes(stream=f"s{i % 4}", texts=[f"t{j}" for j in range(50)]))
        runtime.ask(CountNotes(stream="s0"), min_position=runtime.head(), wait_ms=15000)
        # The rebuild takes 2 ms an event (6 s in all) until it has been watched mid-way.
        notes.slow.update(f"t{j}" for j in range(50))
        build = runtime.rebuild("note_counts")

        def rebuilding() -> bool:
            return any(not b["active"] for b in builds(read, "note_counts"))

        written = 0
        answered_while_rebuilding = 0
        answered_after_swap = 0
        while answered_after_swap < 5:
            added = runtime.execute(AddNote(stream="fresh", text=f"f{written}"))
            written += 1
            for asker in (runtime, reader):
                answer = asker.ask(CountNotes(stream="fresh"), min_position=added.position,
                                   wait_ms=10000)
                assert answer.data["count"] == written
                assert answer.freshness.position >= added.position
            if rebuilding():
                answered_while_rebuilding += 1
                if answered_while_rebuilding == 3:
                    notes.slow.clear()
            else:
                answered_after_swap += 1
        assert answered_while_rebuilding >= 3, "the rebuild was over before it was watched"
        assert [(b["generation"], b["active"]) for b in builds(read, "note_counts")] == [
            (build.generation, True)]
        assert runtime.ask(CountNotes(stream="s3")).data["count"] == 15 * 50
    finally:
        reader.stop()
        runtime.stop()
