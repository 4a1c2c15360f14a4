"""A rebuild killed with SIGKILL: the old build keeps serving; a restart resumes and swaps."""

from __future__ import annotations

from projectionist import Runtime
from tests.helpers import wait_for
from tests.lifecycle.support import Processes, builds, run_cli, table_names
from tests.notes import AddNotes, CountNotes, Notes

APP = "tests.lifecycle.apps:notes_app"
STREAMS = [f"s{i}" for i in range(6)]
TEXTS = [f"t{i}" for i in range(50)]
COMMANDS = 42  # 2,100 events


def expected_counts() -> dict[str, dict[str, object]]:
    per_stream = COMMANDS // len(STREAMS)
    return {s: {"count": per_stream * len(TEXTS), "texts": TEXTS * per_stream} for s in STREAMS}


def answers(runtime: Runtime) -> dict[str, dict[str, object]]:
    return {s: runtime.ask(CountNotes(stream=s)).data for s in STREAMS}


def test_a_killed_rebuild_leaves_the_old_build_serving_and_a_restart_finishes_it(
    store_urls: tuple[str, str], processes: Processes
) -> None:
    write, read = store_urls
    seeding = Runtime(Notes().app, store=write, read_store=read)
    try:
        for i in range(COMMANDS):
            seeding.execute(AddNotes(stream=STREAMS[i % len(STREAMS)], texts=TEXTS))
        seeding.catch_up()
        head = seeding.head()
        assert answers(seeding) == expected_counts()
    finally:
        seeding.stop()

    rebuild = processes.run("rebuild", "rebuild", "note_counts", APP, "--store", write,
                            "--read-store", read, "--batch-size", "5")

    def mid_way() -> bool:
        assert rebuild.running, f"the rebuild ended early:\n{rebuild.output()}"
        return any(b["generation"] == 2 and b["position"] >= 300
                   for b in builds(read, "note_counts"))

    wait_for(mid_way, timeout_s=30, what="the rebuild reaching position 300")
    rebuild.kill()
    killed_at = next(b for b in builds(read, "note_counts") if b["generation"] == 2)
    assert not killed_at["active"]
    assert 300 <= killed_at["position"] < head, killed_at

    # The old build still serves, whole, to a process that only answers queries.
    reader = Runtime(Notes().app, store=write, read_store=read, roles=["query"])
    try:
        assert answers(reader) == expected_counts()
        assert [(b["generation"], b["active"]) for b in builds(read, "note_counts")] == [
            (1, True), (2, False)]
    finally:
        reader.stop()

    # A restarted projector takes the build over once the dead process's lease has run out,
    # goes on from its checkpoint, and swaps it in.
    restarted = Runtime(Notes().app, store=write, read_store=read, batch_size=100,
                        poll_interval_s=0.05)
    positions: list[int] = []
    with restarted:
        def swapped() -> bool:
            rows = builds(read, "note_counts")
            positions.extend(b["position"] for b in rows if b["generation"] == 2)
            return [(b["generation"], b["active"]) for b in rows] == [(2, True)]

        wait_for(swapped, timeout_s=30, what="the resumed rebuild's swap")
        assert positions == sorted(positions), "the build went back: it did not resume"
        assert positions[0] >= killed_at["position"]
        assert positions[-1] == head
        assert answers(restarted) == expected_counts()
    assert "note_counts_g1" not in table_names(read)

    # A rebuild run to its end by the command line reports and swaps.
    done = run_cli("rebuild", "note_counts", APP, "--store", write, "--read-store", read,
                   cwd=processes.workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done" in done.stdout and "events/s" in done.stdout
    assert [(b["generation"], b["active"], b["position"])
            for b in builds(read, "note_counts")] == [(3, True, head)]
