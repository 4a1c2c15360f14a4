"""A command on a stream this process appended to last tries the next version without reading
it; another process's append in between makes the log refuse that version, and the command
runs again, reading it: versions stay gap-free and unique."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import Runtime
from projectionist.commands.stream_versions import StreamVersions
from tests.notes import AddNote, AddNotes, Notes


class CountingReads:
    """Counts the log's reads of a stream's version (the round trip the cache saves)."""

    def __init__(self, runtime: Runtime) -> None:
        assert runtime.log is not None
        log = runtime.log
        self.reads = 0
        original = log.stream_version

        def counted(connection: Any, stream: str) -> int:
            self.reads += 1
            return original(connection, stream)

        log.stream_version = counted  # type: ignore[method-assign]


@pytest.fixture
def two(store_urls: tuple[str, str]) -> Iterator[tuple[Runtime, Runtime]]:
    write, read = store_urls
    first = Runtime(Notes().app, store=write, read_store=read, roles=["command"])
    second = Runtime(Notes().app, store=write, read_store=read, roles=["command"])
    first.install()
    yield first, second
    first.stop()
    second.stop()


def versions(runtime: Runtime, stream: str) -> list[int]:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        return list(connection.execute(sa.text(
            "SELECT version FROM projectionist_events WHERE stream = :s ORDER BY position"),
            {"s": stream}).scalars())


def test_a_stream_this_process_appended_to_last_is_not_read_again(
    two: tuple[Runtime, Runtime],
) -> None:
    first, _ = two
    counting = CountingReads(first)
    first.execute(AddNote(stream="s", text="a"))
    assert counting.reads == 1  # a stream this process never appended to: read
    for text in "bcd":
        first.execute(AddNote(stream="s", text=text))
    first.execute(AddNotes(stream="s", texts=["e", "f"]))
    assert counting.reads == 1
    assert versions(first, "s") == [1, 2, 3, 4, 5, 6]


def test_another_processs_append_in_between_is_refused_then_read(
    two: tuple[Runtime, Runtime],
) -> None:
    first, second = two
    counting = CountingReads(first)
    first.execute(AddNote(stream="s", text="a"))
    second.execute(AddNote(stream="s", text="b"))  # first still remembers version 1
    result = first.execute(AddNote(stream="s", text="c"))
    assert [e.version for e in result.events] == [3]
    assert versions(first, "s") == [1, 2, 3]
    # Refused once, it reads versions for a while rather than guess.
    reads = counting.reads
    first.execute(AddNote(stream="t", text="x"))
    first.execute(AddNote(stream="t", text="y"))
    assert counting.reads == reads + 2


def test_an_expected_version_is_never_taken_from_memory(two: tuple[Runtime, Runtime]) -> None:
    first, second = two
    first.execute(AddNote(stream="s", text="a"))
    second.execute(AddNote(stream="s", text="b"))
    # The caller's expectation, right: first's memory (version 1) must not contradict it.
    result = first.execute(AddNote(stream="s", text="c", expected_version=2))
    assert [e.version for e in result.events] == [3]


def test_remembered_versions_are_bounded_and_distrusted_after_a_refusal() -> None:
    from projectionist import StoredEvent

    remembered = StreamVersions(capacity=2, distrust_s=60.0)
    events = [StoredEvent(p, f"s{p}", 1, "T", 1, "{}", "{}", 0.0) for p in (1, 2, 3)]
    remembered.committed(events)
    assert [remembered.get(f"s{p}") for p in (1, 2, 3)] == [None, 1, 1]
    remembered.refused("s2")
    assert remembered.get("s3") is None  # distrusted
