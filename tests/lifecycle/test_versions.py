"""A raised projection version is built beside the serving one at start-up, then swapped in."""

from __future__ import annotations

from projectionist import Runtime
from tests.lifecycle.support import builds, table_names
from tests.notes import AddNote, AddNotes, CountNotes, Notes

TEXTS = [f"n{i}" for i in range(12)]


def counts(runtime: Runtime) -> dict[str, object]:
    return {stream: runtime.ask(CountNotes(stream=stream)).data for stream in ("a", "b")}


def test_a_raised_version_builds_beside_the_old_one_which_serves_until_the_swap(
    store_urls: tuple[str, str],
) -> None:
    write, read = store_urls
    first = Runtime(Notes().app, store=write, read_store=read)
    try:
        first.execute(AddNotes(stream="a", texts=TEXTS))
        first.execute(AddNotes(stream="b", texts=TEXTS[:5]))
        first.catch_up()
        served = counts(first)
    finally:
        first.stop()
    assert served["a"] == {"count": 12, "texts": TEXTS}
    assert {"note_counts_g1", "note_docs_g1"} <= table_names(read)

    changed = Notes()
    changed.counting.version = 2
    second = Runtime(changed.app, store=write, read_store=read, batch_size=4)
    try:
        second.install()  # start-up: version 2 is found and built beside version 1
        assert [(b["generation"], b["version"], b["active"]) for b in builds(read, "note_counts")
                ] == [(1, 1, True), (2, 2, False)]
        assert {"note_counts_g1", "note_counts_g2"} <= table_names(read)
        assert counts(second) == served

        projector = second.projector
        assert projector is not None
        positions = []
        for _ in range(3):
            projector.step_build("note_counts", 2)
            positions.append(next(b["position"] for b in builds(read, "note_counts")
                                  if b["generation"] == 2))
            # Version 1 answers, whole, while version 2 is half-built.
            assert counts(second) == served
        assert positions == [4, 8, 12]
        building = next(r for r in second.status() if r.name == "note_counts" and not r.active)
        assert (building.version, building.state, building.position) == (2, "rebuilding", 12)

        # This process has only the code of version 2, so version 1 applies no new event
        # now; it still answers, whole, and its freshness tells how far behind it is.
        added = second.execute(AddNote(stream="b", text="late"))
        answer = second.ask(CountNotes(stream="b"))
        assert answer.data == served["b"]
        assert answer.freshness.lag_events == 1
        late = {"count": 6, "texts": [*TEXTS[:5], "late"]}

        second.catch_up()
        assert second.ask(CountNotes(stream="b"), min_position=added.position,
                          wait_ms=0).data == late
        assert [(b["generation"], b["version"], b["active"], b["state"])
                for b in builds(read, "note_counts")] == [(2, 2, True, "live")]
        tables = table_names(read)
        assert "note_counts_g2" in tables
        assert "note_counts_g1" not in tables, "the old version's table was not dropped"
        assert "note_docs_g1" in tables  # an unchanged projection keeps its build
        assert counts(second) == {"a": served["a"], "b": late}
        assert [(r.name, r.version, r.state) for r in second.status()] == [
            ("note_counts", 2, "live"), ("note_list", 1, "live")]
    finally:
        second.stop()

    # A restart with version 2 builds nothing more.
    again = Notes()
    again.counting.version = 2
    third = Runtime(again.app, store=write, read_store=read)
    try:
        third.install()
        assert [b["generation"] for b in builds(read, "note_counts")] == [2]
        assert counts(third) == {"a": served["a"], "b": late}
    finally:
        third.stop()


def test_a_version_bump_at_start_up_swaps_while_queries_run(
    store_urls: tuple[str, str],
) -> None:
    write, read = store_urls
    first = Runtime(Notes().app, store=write, read_store=read)
    try:
        for i in range(20):
            first.execute(AddNotes(stream=f"s{i % 4}", texts=TEXTS))
        first.catch_up()
    finally:
        first.stop()

    changed = Notes()
    changed.counting.version = 2
    expected = {"count": 60, "texts": TEXTS * 5}
    with Runtime(changed.app, store=write, read_store=read, batch_size=10,
                 poll_interval_s=0.05) as second:
        answers = 0
        while any(not b["active"] for b in builds(read, "note_counts")):
            for stream in ("s0", "s1", "s2", "s3"):
                assert second.ask(CountNotes(stream=stream)).data == expected
                answers += 1
        assert answers >= 4
        assert [(b["version"], b["active"]) for b in builds(read, "note_counts")] == [(2, True)]
        assert second.ask(CountNotes(stream="s3")).data == expected
    assert "note_counts_g1" not in table_names(read)


def test_during_a_rolling_deploy_the_old_process_keeps_the_old_version_live(
    store_urls: tuple[str, str],
) -> None:
    """An old process (version 1 code) serves fresh writes until the new one swaps version 2 in;
    then both answer from version 2, read-your-writes included."""
    write, read = store_urls
    old = Runtime(Notes().app, store=write, read_store=read, poll_interval_s=0.05)
    changed = Notes()
    changed.counting.version = 2
    new = Runtime(changed.app, store=write, read_store=read, batch_size=1, poll_interval_s=0.05)
    try:
        old.start()
        for i in range(128):
            old.execute(AddNotes(stream=f"s{i % 4}", texts=TEXTS))
        # The build of version 2 (1,536 events, one a batch) takes 2 ms an event, over 3 s,
        # until it has been watched mid-way.
        changed.slow.update(TEXTS)
        new.start()
        fresh_answers = 0
        while any(not b["active"] for b in builds(read, "note_counts")):
            added = old.execute(AddNote(stream="fresh", text=f"f{fresh_answers}"))
            answer = old.ask(CountNotes(stream="fresh"), min_position=added.position,
                             wait_ms=10000)
            assert answer.data["count"] == fresh_answers + 1
            answer = new.ask(CountNotes(stream="fresh"), min_position=added.position,
                             wait_ms=10000)
            assert answer.data["count"] == fresh_answers + 1
            fresh_answers += 1
            if fresh_answers == 2:
                changed.slow.clear()
        assert fresh_answers >= 2, "the build of version 2 was over before it was watched"
        assert [(b["version"], b["active"]) for b in builds(read, "note_counts")] == [(2, True)]
        # After the swap, a write through the old process is read back through either one.
        for runtime in (old, new, old):
            added = runtime.execute(AddNote(stream="fresh", text="after"))
            for reader in (old, new):
                answer = reader.ask(CountNotes(stream="fresh"), min_position=added.position,
                                    wait_ms=10000)
                assert answer.data["texts"][-1] == "after"
        assert old.ask(CountNotes(stream="s1")).data == {"count": 384, "texts": TEXTS * 32}
    finally:
        new.stop()
        old.stop()
    assert "note_counts_g1" not in table_names(read)
