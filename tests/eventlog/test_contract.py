"""The EventLog port's contract, run against every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from projectionist import ConcurrencyError, Refused, Runtime, StoredEvent
from projectionist.backends import open_event_log
from projectionist.eventlog import EventLog, NewEvent
from projectionist.stores import Store
from tests.notes import AddNote, AddNotes, Notes

rows_metadata = sa.MetaData()
rows = sa.Table(
    "contract_rows",
    rows_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("label", sa.String(64), nullable=False),
)


@pytest.fixture
def store(store_urls: tuple[str, str]) -> Iterator[Store]:
    store = Store(store_urls[0])
    yield store
    store.dispose()


@pytest.fixture
def log(store: Store) -> EventLog:
    log = open_event_log(store)
    log.install()
    rows_metadata.create_all(store.engine)
    return log


def new_event(stream: str, version: int, text: str = "x") -> NewEvent:
    return NewEvent(
        stream=stream, version=version, type="NoteAdded", schema_version=1,
        data=f'{{"text":"{text}"}}', metadata="{}", recorded_at=time.time(),
    )


def append(log: EventLog, *events: NewEvent) -> list[int]:
    with log.store.write() as connection:
        return log.append(connection, events)


def read_all(log: EventLog) -> list[StoredEvent]:
    return log.read(0, 1_000_000)


def test_empty_log_has_head_zero_and_nothing_to_read(log: EventLog) -> None:
    assert log.head() == 0
    assert log.read(0, 10) == []


def test_append_returns_increasing_positions(log: EventLog) -> None:
    first = append(log, new_event("a", 1), new_event("a", 2), new_event("b", 1))
    second = append(log, new_event("a", 3))
    positions = first + second
    assert len(positions) == 4
    assert positions[0] >= 1
    assert positions == sorted(set(positions))


def test_read_returns_the_events_as_appended(log: EventLog) -> None:
    before = time.time()
    [position] = append(log, NewEvent(
        stream="s", version=1, type="T", schema_version=3, data='{"k":1}',
        metadata='{"m":2}', recorded_at=before,
    ))
    [stored] = log.read(0, 10)
    assert stored == StoredEvent(position, "s", 1, "T", 3, '{"k":1}', '{"m":2}', before)


def test_read_after_a_position_returns_an_ordered_batch_within_the_limit(
    log: EventLog,
) -> None:
    positions = []
    for n in range(10):
        positions += append(log, new_event(f"s{n % 3}", n // 3 + 1, text=str(n)))

    batch = log.read(positions[2], 4)
    assert [e.position for e in batch] == positions[3:7]
    assert [e.data for e in batch] == [f'{{"text":"{n}"}}' for n in range(3, 7)]
    assert log.read(positions[-1], 4) == []
    assert [e.position for e in log.read(positions[-2], 4)] == positions[-1:]


def test_reading_in_batches_visits_every_event_once(log: EventLog) -> None:
    appended = []
    for n in range(7):
        appended += append(log, new_event("s", 2 * n + 1), new_event("s", 2 * n + 2))
    seen: list[int] = []
    after = 0
    while batch := log.read(after, 3):
        assert len(batch) <= 3
        seen += [e.position for e in batch]
        after = batch[-1].position
    assert seen == appended


def test_head_is_the_last_appended_position(log: EventLog) -> None:
    append(log, new_event("a", 1))
    positions = append(log, new_event("a", 2), new_event("b", 1))
    assert log.head() == positions[-1]
    assert read_all(log)[-1].position == log.head()


def test_stream_version_counts_the_events_of_that_stream(log: EventLog) -> None:
    append(log, new_event("a", 1), new_event("b", 1), new_event("a", 2))
    with log.store.read() as connection:
        assert log.stream_version(connection, "a") == 2
        assert log.stream_version(connection, "b") == 1
        assert log.stream_version(connection, "new") == 0


def test_taken_stream_version_raises_concurrency_error(log: EventLog) -> None:
    append(log, new_event("a", 1), new_event("a", 2))
    with pytest.raises(ConcurrencyError) as raised:
        append(log, new_event("a", 2))
    assert raised.value.stream == "a"
    assert raised.value.actual == 2
    assert "'a'" in raised.value.detail
    assert isinstance(raised.value, Refused)


def test_conflicting_append_writes_none_of_its_events(log: EventLog) -> None:
    append(log, new_event("a", 1))
    with pytest.raises(ConcurrencyError):
        append(log, new_event("b", 1), new_event("a", 1), new_event("c", 1))
    assert [(e.stream, e.version) for e in read_all(log)] == [("a", 1)]
    # The log still takes appends after a conflict.
    append(log, new_event("b", 1))
    assert [(e.stream, e.version) for e in read_all(log)] == [("a", 1), ("b", 1)]


def test_events_and_rows_commit_together(log: EventLog) -> None:
    with log.store.write() as connection:
        connection.execute(sa.insert(rows).values(id=1, label="kept"))
        log.append(connection, [new_event("a", 1)])
    with log.store.read() as connection:
        assert connection.execute(sa.select(rows.c.label)).scalars().all() == ["kept"]
    assert len(read_all(log)) == 1


def test_a_failed_transaction_keeps_neither_rows_nor_events(log: EventLog) -> None:
    with pytest.raises(RuntimeError), log.store.write() as connection:
        connection.execute(sa.insert(rows).values(id=1, label="lost"))
        log.append(connection, [new_event("a", 1)])
        raise RuntimeError("the handler failed after appending")
    assert read_all(log) == []
    assert log.head() == 0
    with log.store.read() as connection:
        assert connection.execute(sa.select(rows)).all() == []


def test_a_conflict_rolls_back_the_rows_written_before_it(log: EventLog) -> None:
    append(log, new_event("a", 1))
    with pytest.raises(ConcurrencyError), log.store.write() as connection:
        connection.execute(sa.insert(rows).values(id=1, label="lost"))
        log.append(connection, [new_event("a", 1)])
    with log.store.read() as connection:
        assert connection.execute(sa.select(rows)).all() == []
    assert len(read_all(log)) == 1


def test_concurrent_writers_never_take_the_same_stream_version(log: EventLog) -> None:
    append(log, new_event("hot", 1))
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer() -> None:
        try:
            append(log, new_event("hot", 2))
            outcome = "appended"
        except ConcurrencyError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["appended"] + ["conflict"] * 7
    assert [(e.stream, e.version) for e in read_all(log)] == [("hot", 1), ("hot", 2)]


def test_a_live_reader_never_skips_an_event_of_concurrent_writers(log: EventLog) -> None:
    writers, per_writer = 6, 25
    appended: list[int] = []
    lock = threading.Lock()
    done = threading.Event()
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for version in range(1, per_writer + 1):
                positions = append(log, new_event(f"w{n}", version))
                with lock:
                    appended.extend(positions)
        except BaseException as error:
            failures.append(error)

    seen: list[int] = []

    def reader() -> None:
        after = 0
        try:
            while True:
                finished = done.is_set()
                batch = log.read(after, 7)
                positions = [e.position for e in batch]
                assert positions == sorted(set(positions)), positions
                assert all(p > after for p in positions)
                seen.extend(positions)
                if batch:
                    after = positions[-1]
                elif finished:
                    return
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert failures == []
    assert len(appended) == writers * per_writer
    assert seen == sorted(appended)


# Through the Runtime: the command side uses the port the same way on every backend.


def test_command_events_get_consecutive_stream_versions(notes_runtime: Runtime) -> None:
    first = notes_runtime.execute(AddNotes(stream="s", texts=["a", "b"]))
    second = notes_runtime.execute(AddNote(stream="s", text="c"))
    assert [e.version for e in first.events + second.events] == [1, 2, 3]
    assert first.events[0].position < first.events[1].position < second.events[0].position
    assert second.position == second.events[-1].position == notes_runtime.head()


def test_expected_version_conflict_raises_concurrency_error(notes_runtime: Runtime) -> None:
    notes_runtime.execute(AddNote(stream="s", text="a", expected_version=0))
    head = notes_runtime.head()
    with pytest.raises(ConcurrencyError) as raised:
        notes_runtime.execute(AddNote(stream="s", text="b", expected_version=0))
    assert (raised.value.stream, raised.value.expected, raised.value.actual) == ("s", 0, 1)
    assert notes_runtime.head() == head
    notes_runtime.execute(AddNote(stream="s", text="b", expected_version=1))


def test_handler_failure_keeps_neither_the_row_nor_the_event(
    notes_runtime: Runtime, notes: Notes
) -> None:
    with pytest.raises(Refused):
        notes_runtime.execute(AddNote(stream="s", text="lost", fail_after_record=True))
    assert notes_runtime.head() == 0
    assert notes_runtime.log is not None
    assert read_all(notes_runtime.log) == []
    assert notes_runtime.store is not None
    with notes_runtime.store.read() as connection:
        assert connection.execute(sa.select(notes.rows)).all() == []
