"""The event log relayed to NATS JetStream: one message per position, gaps filled, read back
exactly as the log holds it, by projectors that never touch the write store."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from projectionist import Runtime
from projectionist.errors import ConfigurationError, StoreUnavailable
from projectionist.eventlog import NewEvent
from projectionist.signals import LogWatch
from projectionist.streams.jetstream import (
    GAP,
    POSITION,
    JetStream,
    JetStreamEventSource,
    JetStreamRelay,
)
from tests.notes import AddNote, AddNotes, CountNotes, Notes

UNREACHABLE_STORE = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"


def stream_messages(jetstream: JetStream) -> list[tuple[int, dict[str, str]]]:
    """(sequence, headers) of every message of the stream, read one by one."""

    async def read() -> list[tuple[int, dict[str, str]]]:
        js = await jetstream.connected()
        _, last = await jetstream.bounds()
        found = []
        for sequence in range(1, last + 1):
            message = await js.get_msg(jetstream.stream, sequence)
            found.append((message.seq, dict(message.headers or {})))
        return found

    return jetstream.call(read)


def rolled_back_append(runtime: Runtime) -> None:
    """An append whose transaction rolls back (on PostgreSQL it leaves a position unused)."""
    assert runtime.store is not None and runtime.log is not None
    log = runtime.log
    with pytest.raises(RuntimeError), runtime.store.write() as connection:
        log.append(connection, [NewEvent("lost", 1, "NoteAdded", 1, '{"stream": "lost",'
                                         ' "text": "x"}', "{}", time.time())])
        raise RuntimeError("roll back")


def test_the_stream_holds_each_position_once_in_order(
    store_urls: tuple[str, str], events_url: str, backend: str,
) -> None:
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as runtime:
        runtime.execute(AddNotes(stream="a", texts=["1", "2", "3"]))
        rolled_back_append(runtime)
        runtime.execute(AddNotes(stream="b", texts=["4", "5"]))
        rolled_back_append(runtime)
        runtime.execute(AddNote(stream="a", text="6"))
        assert runtime.log is not None
        logged = runtime.log.read(0, 100)
        jetstream = JetStream(events_url)
        try:
            jetstream.ensure_stream()
            relay = JetStreamRelay(runtime.log, jetstream, LogWatch(), batch_size=2)
            assert relay.relay() == 6
            assert relay.relay() == 0  # nothing twice
            messages = stream_messages(jetstream)
            head = runtime.log.head()
            assert [sequence for sequence, _ in messages] == list(range(1, head + 1))
            for sequence, headers in messages:
                assert headers[POSITION] == str(sequence)
            real = {e.position for e in logged}
            assert {s for s, h in messages if not h.get(GAP)} == real
            gaps = set(range(1, head + 1)) - real
            assert {s for s, h in messages if h.get(GAP)} == gaps
            # PostgreSQL's sequence does not give back what a rolled-back append took.
            assert len(gaps) == (2 if backend == "postgresql" else 0)

            source = JetStreamEventSource(jetstream)
            assert source.read(0, 100) == logged
            assert source.head() == head
            # Reads that start anywhere, forwards and back, see the log as it is.
            for after, limit in [(0, 2), (2, 1), (2, 3), (1, 10), (head, 5), (0, 1)]:
                expected = [e for e in logged if e.position > after][:limit]
                assert source.read(after, limit) == expected
        finally:
            jetstream.close()


def test_relays_racing_each_other_never_publish_a_position_twice(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as runtime:
        for i in range(40):
            runtime.execute(AddNotes(stream=f"s{i % 5}", texts=[f"t{j}" for j in range(5)]))
        assert runtime.log is not None
        log = runtime.log
        streams = [JetStream(events_url) for _ in range(3)]
        try:
            streams[0].ensure_stream()
            relays = [JetStreamRelay(log, js, LogWatch(), batch_size=7) for js in streams]
            published = [0] * len(relays)

            def run(index: int) -> None:
                published[index] = relays[index].relay()

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(relays))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sum(published) == 200
            messages = stream_messages(streams[0])
            assert [int(h[POSITION]) for _, h in messages] == list(range(1, 201))
            assert JetStreamEventSource(streams[1]).read(0, 500) == log.read(0, 500)
        finally:
            for js in streams:
                js.close()


def test_a_projector_fed_by_jetstream_needs_no_write_store(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    """Command process: write store + relay. Projector and query process: the read store and
    the stream only (its write store URL points nowhere)."""
    write, read = store_urls
    writer = Runtime(Notes().app, store=write, read_store=read, roles=["command"],
                     events=events_url, poll_interval_s=0.05)
    reader = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read,
                     roles=["projector", "query"], events=events_url, poll_interval_s=0.05)
    try:
        writer.start()
        reader.start()
        assert reader.store is None
        expected: dict[str, int] = {}
        for i in range(30):
            stream = f"s{i % 3}"
            added = writer.execute(AddNotes(stream=stream, texts=["x", "y"]))
            expected[stream] = expected.get(stream, 0) + 2
            answer = reader.ask(CountNotes(stream=stream), min_position=added.position,
                                wait_ms=10000)
            assert answer.data["count"] == expected[stream]
            assert answer.freshness.position >= added.position
        statuses = {row.name: row for row in reader.status()}
        assert statuses["note_counts"].head == writer.head()
    finally:
        reader.stop()
        writer.stop()


def test_a_projector_woken_by_the_stream_sees_a_commit_without_polling(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    write, read = store_urls
    writer = Runtime(Notes().app, store=write, read_store=read, roles=["command"],
                     events=events_url, poll_interval_s=30.0)
    reader = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read,
                     roles=["projector", "query"], events=events_url, poll_interval_s=30.0)
    try:
        writer.start()
        reader.start()
        writer.execute(AddNote(stream="first", text="warm up"))
        reader.ask(CountNotes(stream="first"), min_position=1, wait_ms=10000)
        added = writer.execute(AddNote(stream="woken", text="now"))
        # Both loops poll every 30 s: only the relay's wake-up and the stream's can answer.
        answer = reader.ask(CountNotes(stream="woken"), min_position=added.position,
                            wait_ms=5000)
        assert answer.data["count"] == 1
    finally:
        reader.stop()
        writer.stop()


def test_positions_the_stream_discarded_are_a_clear_error(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    from nats.js.api import StreamConfig

    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as runtime:
        runtime.execute(AddNotes(stream="a", texts=[str(i) for i in range(10)]))
        jetstream = JetStream(events_url)
        try:
            async def small_stream() -> Any:
                js = await jetstream.connected()
                return await js.add_stream(StreamConfig(
                    name=jetstream.stream, subjects=[jetstream.subject], max_msgs=4))

            jetstream.call(small_stream)
            assert runtime.log is not None
            JetStreamRelay(runtime.log, jetstream, LogWatch()).relay()
            source = JetStreamEventSource(jetstream)
            with pytest.raises(StoreUnavailable, match="starts at position 7: positions 1 to 6"
                               " were discarded"):
                source.read(0, 10)
            assert [e.position for e in source.read(6, 10)] == [7, 8, 9, 10]
        finally:
            jetstream.close()


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:4222", "starts with nats://"),
    ("nats://127.0.0.1:4222?stream=a.b", "letters, digits"),
])
def test_a_bad_events_url_is_refused_at_start(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JetStream(url)


def test_an_unreachable_nats_server_is_store_unavailable() -> None:
    jetstream = JetStream("nats://127.0.0.1:1?stream=NOWHERE", timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable, match="NATS at nats://127.0.0.1:1"):
            jetstream.ensure_stream()
    finally:
        jetstream.close()
