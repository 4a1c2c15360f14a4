"""The events a process committed last, answered from memory to its own projectors: the same
events as the log's, and never a run that skips a position of another process's."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from projectionist import Runtime, StoredEvent
from projectionist.backends import open_event_log
from projectionist.eventlog import EventLog, NewEvent
from projectionist.eventlog.recent import RecentEvents
from projectionist.stores import Store
from projectionist.wakeups import HighWater
from tests.notes import AddNote, AddNotes, CountNotes, Notes


class CountingLog:
    """The real log, counting the reads that reach it."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.reads = 0

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        self.reads += 1
        return self.log.read(after, limit)

    def head(self) -> int:
        return self.log.head()


@pytest.fixture
def log(store_urls: tuple[str, str]) -> Iterator[EventLog]:
    store = Store(store_urls[0])
    log = open_event_log(store)
    log.install()
    yield log
    store.dispose()


def append(log: EventLog, stream: str, *versions: int) -> list[StoredEvent]:
    events = [
        NewEvent(stream, v, "NoteAdded", 1, f'{{"text":"{stream}{v}"}}', "{}", time.time())
        for v in versions
    ]
    with log.store.write() as connection:
        positions = log.append(connection, events)
    return [e.at(p) for e, p in zip(events, positions, strict=True)]


def test_a_run_after_the_readers_position_is_answered_without_the_log(log: EventLog) -> None:
    counting = CountingLog(log)
    high_water = HighWater()
    recent = RecentEvents(counting, high_water)
    first = append(log, "a", 1, 2, 3)
    recent.committed(first)
    high_water.advance(first[0].position, first[-1].position, time.time())
    assert recent.read(first[0].position - 1, 10) == first
    assert recent.read(first[0].position, 1) == first[1:2]
    assert counting.reads == 0
    assert recent.read(first[-1].position, 10) == []  # nothing more: the log says so
    assert counting.reads == 1


def test_a_position_this_process_did_not_commit_is_read_from_the_log(log: EventLog) -> None:
    counting = CountingLog(log)
    high_water = HighWater()
    recent = RecentEvents(counting, high_water)
    elsewhere = append(log, "other", 1)  # another process's append: never handed over
    mine = append(log, "a", 1)
    recent.committed(mine)
    assert recent.read(0, 10) == elsewhere + mine
    assert counting.reads == 1


def test_a_run_that_ends_before_a_known_head_is_completed_from_the_log(log: EventLog) -> None:
    high_water = HighWater()
    recent = RecentEvents(log, high_water)
    mine = append(log, "a", 1)
    recent.committed(mine)
    elsewhere = append(log, "other", 1)
    # Another process's append woke this one (LISTEN/NOTIFY): its run must not end early.
    high_water.advance(elsewhere[0].position, elsewhere[0].position, time.time())
    assert recent.read(0, 10) == mine + elsewhere
    assert recent.read(mine[0].position - 1, 10) == mine + elsewhere


def test_events_past_the_capacity_are_forgotten_and_read_from_the_log(log: EventLog) -> None:
    counting = CountingLog(log)
    recent = RecentEvents(counting, HighWater(), capacity=2)
    events = append(log, "a", 1, 2, 3)
    recent.committed(events)
    assert recent.read(events[0].position, 10) == events[1:]
    assert counting.reads == 0
    assert recent.read(0, 10) == events
    assert counting.reads == 1


def test_the_projector_beside_the_commands_is_handed_what_they_committed(
    store_urls: tuple[str, str],
) -> None:
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read) as runtime:
        assert runtime.recent is not None
        for i in range(5):
            runtime.execute(AddNotes(stream=f"s{i % 2}", texts=["a", "b", "c"]))
        head = runtime.head()
        assert runtime.log is not None
        assert runtime.recent.read(0, 100) == runtime.log.read(0, 100)
        answer = runtime.ask(CountNotes(stream="s0"), min_position=head, wait_ms=10000)
        assert answer.data["count"] == 9


def test_appends_of_another_process_interleaved_with_this_ones_are_all_projected(
    store_urls: tuple[str, str],
) -> None:
    write, read = store_urls
    # `other` is a command-only process on the same stores: its appends reach `runtime`'s
    # projector only through the log.
    with (
        Runtime(Notes().app, store=write, read_store=read, poll_interval_s=0.05) as runtime,
        Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as other,
    ):
        assert other.recent is None
        last = 0
        for i in range(30):
            writer = other if i % 3 else runtime
            last = writer.execute(AddNote(stream="shared", text=f"n{i}")).position
        answer = runtime.ask(CountNotes(stream="shared"), min_position=last, wait_ms=15000)
        assert answer.data["count"] == 30


def test_a_reader_at_the_known_head_asks_the_log_only_to_recheck(log: EventLog) -> None:
    """In the projector's loop (`trusting_wakeups`), a reader caught up with every commit it
    was told of gets nothing without a round trip; once `recheck_s` has passed it asks the
    log again, which finds an append whose wake-up never came. Elsewhere every read asks."""
    counting = CountingLog(log)
    high_water = HighWater()
    recent = RecentEvents(counting, high_water, recheck_s=0.3)
    first = append(log, "a", 1, 2)
    recent.committed(first)
    high_water.advance(first[0].position, first[-1].position, time.time())
    head = first[-1].position
    with recent.trusting_wakeups():
        assert recent.read(head, 10) == []  # the first check asks the log
        asked = counting.reads
        for _ in range(20):
            assert recent.read(head, 10) == []
        assert counting.reads == asked
        unannounced = append(log, "b", 1)  # another process's, its wake-up lost
        assert recent.read(head, 10) == []
    # Outside the loop (an explicit catch-up, a runner run by hand) the log is asked.
    assert [e.position for e in recent.read(head, 10)] == [unannounced[0].position]
    assert counting.reads == asked + 1
    with recent.trusting_wakeups():
        time.sleep(0.35)
        assert [e.position for e in recent.read(head, 10)] == [unannounced[0].position]
        assert counting.reads == asked + 2
        # An append that a wake-up told of is read at once.
        told = append(log, "c", 1)
        high_water.advance(told[0].position, told[0].position, time.time())
        assert [e.position for e in recent.read(unannounced[0].position, 10)] == [
            told[0].position]


def test_a_reader_behind_the_logs_end_reads_on_one_batch_after_another(log: EventLog) -> None:
    """Events of another process that no wake-up told of, read a batch at a time: a full batch
    did not reach the log's end, so the next read (the runner's look-ahead) asks the log."""
    counting = CountingLog(log)
    recent = RecentEvents(counting, HighWater(), recheck_s=60.0)
    elsewhere = append(log, "x", 1, 2, 3)
    first = elsewhere[0].position - 1
    with recent.trusting_wakeups():
        got = [e.position for p in range(first, first + 3) for e in recent.read(p, 1)]
        assert got == [e.position for e in elsewhere]
        assert recent.read(elsewhere[-1].position, 1) == []  # the end: found by asking
        asked = counting.reads
        assert recent.read(elsewhere[-1].position, 1) == []
        assert counting.reads == asked  # at the end, within the recheck: not asked
