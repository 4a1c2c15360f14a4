"""Group commit: batches of queued callers, and a leader that gathers the callers of the last
batch before it runs the next."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from projectionist.commands.group_commit import GroupCommit, Ticket


class Recorder:
    """A batch runner that records each batch's items; `hold` keeps a batch running."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()

    def __call__(self, tickets: Sequence[Ticket[int, int]]) -> None:
        self.running.set()
        self.hold.wait(10)
        self.batches.append([ticket.item for ticket in tickets])
        for ticket in tickets:
            ticket.result = ticket.item * 10


def submit_in_thread(
    group: GroupCommit[int, int], item: int, results: dict[int, int]
) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.__setitem__(item, group.submit(item)))
    thread.start()
    return thread


def run_a_batch_of_two(group: GroupCommit[int, int], recorder: Recorder) -> None:
    """1 leads alone and is held; 2 and 3 queue behind it and then run as one batch."""
    results: dict[int, int] = {}
    recorder.hold.clear()
    first = submit_in_thread(group, 1, results)
    assert recorder.running.wait(5)
    others = [submit_in_thread(group, item, results) for item in (2, 3)]
    while len(group._queue) < 3:
        time.sleep(0.001)
    recorder.hold.set()
    for thread in (first, *others):
        thread.join(5)
    assert recorder.batches == [[1], [2, 3]]
    assert results == {1: 10, 2: 20, 3: 30}


def test_a_lone_caller_runs_at_once_when_the_last_batch_was_one() -> None:
    recorder = Recorder()
    group: GroupCommit[int, int] = GroupCommit(recorder, gather_s=30)
    assert group.submit(1) == 10
    began = time.monotonic()
    assert group.submit(2) == 20
    assert time.monotonic() - began < 10  # it did not wait for a caller that never came
    assert recorder.batches == [[1], [2]]


def test_a_leader_gathers_as_many_callers_as_the_last_batch_held() -> None:
    recorder = Recorder()
    group: GroupCommit[int, int] = GroupCommit(recorder, gather_s=30)
    run_a_batch_of_two(group, recorder)
    results: dict[int, int] = {}
    leader = submit_in_thread(group, 4, results)
    time.sleep(0.2)  # the leader waits: the last batch held two
    assert recorder.batches == [[1], [2, 3]]
    follower = submit_in_thread(group, 5, results)
    leader.join(5)
    follower.join(5)
    assert recorder.batches[-1] == [4, 5]
    assert results == {4: 40, 5: 50}


def test_a_leader_gathers_for_a_moment_at_most_then_runs_what_it_has() -> None:
    recorder = Recorder()
    group: GroupCommit[int, int] = GroupCommit(recorder, gather_s=0.05)
    run_a_batch_of_two(group, recorder)
    assert group.submit(4) == 40  # no one else comes: it runs alone after its moment
    assert recorder.batches[-1] == [4]
    assert group.submit(5) == 50  # and the next expects one caller: no wait
    assert recorder.batches[-1] == [5]
