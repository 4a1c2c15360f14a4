"""The event log relayed to a feed (NATS JetStream, Redis Streams): each position once, in order,
read back exactly as the log holds it by projectors that never touch the write store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from projectionist import Runtime
from projectionist.backends import open_feed
from projectionist.errors import ConfigurationError, StoreUnavailable
from projectionist.eventlog import NewEvent
from projectionist.feeds import Feed, Relay
from projectionist.feeds.jetstream import GAP, POSITION, JetStream
from projectionist.wakeups import HighWater
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


def six_events_around_two_rolled_back_appends(runtime: Runtime) -> None:
    runtime.execute(AddNotes(stream="a", texts=["1", "2", "3"]))
    rolled_back_append(runtime)
    runtime.execute(AddNotes(stream="b", texts=["4", "5"]))
    rolled_back_append(runtime)
    runtime.execute(AddNote(stream="a", text="6"))


def test_the_feed_holds_each_position_once_in_order(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as runtime:
        six_events_around_two_rolled_back_appends(runtime)
        assert runtime.log is not None
        logged = runtime.log.read(0, 100)
        feed = open_feed(events_url)
        try:
            feed.ensure()
            relay = Relay(runtime.log, feed, HighWater(), batch_size=2)
            assert relay.relay() == 6
            assert relay.relay() == 0  # nothing twice
            head = runtime.log.head()
            assert feed.last_position() == head
            source = feed.reader()
            assert source.read(0, 100) == logged
            assert source.head() == head
            # Reads that start anywhere, forwards and back, see the log as it is.
            for after, limit in [(0, 2), (2, 1), (2, 3), (1, 10), (head, 5), (0, 1)]:
                expected = [e for e in logged if e.position > after][:limit]
                assert source.read(after, limit) == expected
        finally:
            feed.close()


def test_jetstream_fills_the_gaps_of_the_log_so_sequences_are_positions(
    store_urls: tuple[str, str], nats_url: str, backend: str,
) -> None:
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as runtime:
        six_events_around_two_rolled_back_appends(runtime)
        assert runtime.log is not None
        real = {e.position for e in runtime.log.read(0, 100)}
        jetstream = JetStream(nats_url)
        try:
            jetstream.ensure()
            Relay(runtime.log, jetstream, HighWater(), batch_size=2).relay()
            messages = stream_messages(jetstream)
            head = runtime.log.head()
            assert [sequence for sequence, _ in messages] == list(range(1, head + 1))
            for sequence, headers in messages:
                assert headers[POSITION] == str(sequence)
            assert {s for s, h in messages if not h.get(GAP)} == real
            gaps = set(range(1, head + 1)) - real
            assert {s for s, h in messages if h.get(GAP)} == gaps
            # PostgreSQL's sequence does not give back what a rolled-back append took.
            assert len(gaps) == (2 if backend == "postgresql" else 0)
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
        feeds = [open_feed(events_url) for _ in range(3)]
        try:
            feeds[0].ensure()
            relays = [Relay(log, feed, HighWater(), batch_size=7) for feed in feeds]
            published = [0] * len(relays)

            def run(index: int) -> None:
                published[index] = relays[index].relay()

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(relays))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sum(published) == 200
            assert feeds[0].last_position() == 200
            assert feeds[1].reader().read(0, 500) == log.read(0, 500)
        finally:
            for feed in feeds:
                feed.close()


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


def keep_only(feed: Feed, count: int) -> None:
    """Applies a retention limit to the feed, as an operator would: the oldest entries go."""
    if isinstance(feed, JetStream):
        jetstream = feed

        async def limit() -> None:
            js = await jetstream.connected()
            config = (await js.stream_info(jetstream.stream)).config
            config.max_msgs = count
            await js.update_stream(config)

        jetstream.call(limit)
    else:
        feed.client.xtrim(feed.key, maxlen=count,  # type: ignore[attr-defined]
                          approximate=False)


@contextmanager
def relayed(store_urls: tuple[str, str], url: str) -> Iterator[tuple[Runtime, Feed, Relay]]:
    """A command runtime of the notes app, a feed, and a relay between them (not started)."""
    write, read = store_urls
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"]) as runtime:
        assert runtime.log is not None
        feed = open_feed(url)
        try:
            yield runtime, feed, Relay(runtime.log, feed, HighWater())
        finally:
            feed.close()


def test_positions_the_feed_discarded_are_a_clear_error(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    with relayed(store_urls, events_url) as (runtime, feed, relay):
        runtime.execute(AddNotes(stream="a", texts=[str(i) for i in range(10)]))
        relay.relay()
        keep_only(feed, 4)
        source = feed.reader()
        with pytest.raises(StoreUnavailable, match="positions 1 to 6"):
            source.read(0, 10)
        assert [e.position for e in source.read(6, 10)] == [7, 8, 9, 10]


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:4222", "starts with nats:// .JetStream. or redis://"),
    ("nats://127.0.0.1:4222?stream=a.b", "letters, digits, _ and - only"),
    ("redis://127.0.0.1:6379/0?stream=a b", "letters, digits, _ - : and . only"),
])
def test_a_bad_events_url_is_refused_at_start(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_feed(url)
    with pytest.raises(ConfigurationError, match=message):
        Runtime(Notes().app, store="sqlite://", events=url)


@pytest.mark.parametrize("url, shown", [
    ("nats://127.0.0.1:1?stream=NOWHERE", "NATS at nats://127.0.0.1:1"),
    ("redis://127.0.0.1:1/0?stream=nowhere", "Redis at redis://127.0.0.1:1"),
])
def test_an_unreachable_feed_is_store_unavailable(url: str, shown: str) -> None:
    feed = open_feed(url)
    try:
        with pytest.raises(StoreUnavailable, match=shown):
            feed.ensure()
        with pytest.raises(StoreUnavailable, match=shown):
            feed.last_position()
    finally:
        feed.close()


def test_a_jetstream_reader_replaces_a_consumer_the_server_dropped(
    store_urls: tuple[str, str], nats_url: str,
) -> None:
    """An idle consumer expires on the server (after 5 minutes); the reader makes a new one
    where the old one stood."""
    with relayed(store_urls, nats_url) as (runtime, feed, relay):
        assert isinstance(feed, JetStream)
        jetstream = feed
        runtime.execute(AddNotes(stream="a", texts=["1", "2"]))
        relay.relay()
        source = jetstream.reader()
        assert [e.position for e in source.read(0, 10)] == [1, 2]
        consumer = source._consumer

        async def drop() -> None:
            js = await jetstream.connected()
            await js.delete_consumer(jetstream.stream, consumer)

        jetstream.call(drop)
        runtime.execute(AddNotes(stream="a", texts=["3", "4"]))
        relay.relay()
        assert [e.position for e in source.read(2, 10)] == [3, 4]
        jetstream.close()  # closing twice (here and on leaving) is harmless


def test_entries_discarded_while_a_reader_follows_are_a_clear_error(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    with relayed(store_urls, events_url) as (runtime, feed, relay):
        runtime.execute(AddNotes(stream="a", texts=[str(i) for i in range(4)]))
        relay.relay()
        source = feed.reader()
        assert [e.position for e in source.read(0, 2)] == [1, 2]
        runtime.execute(AddNotes(stream="a", texts=[str(i) for i in range(6)]))
        relay.relay()
        keep_only(feed, 5)
        # 3, 4 (and 5) are gone, from the stream or from the JetStream reader's look-ahead:
        # the reader says so rather than skip them.
        with pytest.raises(StoreUnavailable, match=r"positions [35] to 5"):
            source.read(2, 10)


def test_a_redis_stream_deleted_under_the_relay_is_filled_again(
    store_urls: tuple[str, str], redis_url: str,
) -> None:
    with relayed(store_urls, redis_url) as (runtime, feed, relay):
        assert runtime.log is not None
        runtime.execute(AddNotes(stream="a", texts=[str(i) for i in range(5)]))
        assert relay.relay() == 5
        feed.client.delete(feed.key)  # type: ignore[attr-defined]
        runtime.execute(AddNote(stream="a", text="6"))
        assert relay.relay() == 6
        assert feed.reader().read(0, 100) == runtime.log.read(0, 100)


def feed_gauges(runtime: Runtime) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(runtime.metrics.render().decode()):
        for sample in family.samples:
            if sample.name.startswith("projectionist_feed_"):
                found[sample.name] = sample.value
    return found


def test_commands_go_on_while_the_feed_is_down_and_the_relay_catches_up(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    """A command process starts and commits without its feed; /metrics shows the relay's lag;
    once the feed is there, the relay copies what it missed."""
    write, read = store_urls
    down = events_url.replace(":4222", ":1").replace(":6379", ":1")
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"],
                 events=down, poll_interval_s=0.05) as runtime:
        for i in range(3):
            runtime.execute(AddNote(stream="a", text=str(i)))
        time.sleep(0.3)  # the relay has tried and failed meanwhile
        assert feed_gauges(runtime) == {"projectionist_feed_position": 0.0,
                                        "projectionist_feed_lag_events": 3.0}
    with Runtime(Notes().app, store=write, read_store=read, roles=["command"],
                 events=events_url, poll_interval_s=0.05) as runtime:
        deadline = time.monotonic() + 10
        while feed_gauges(runtime).get("projectionist_feed_lag_events") != 0.0:
            assert time.monotonic() < deadline, feed_gauges(runtime)
            time.sleep(0.02)
        assert feed_gauges(runtime)["projectionist_feed_position"] == 3.0
        feed = open_feed(events_url)
        try:
            assert [e.position for e in feed.reader().read(0, 10)] == [1, 2, 3]
        finally:
            feed.close()


def test_a_projector_starts_while_its_feed_is_down(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    _, read = store_urls
    down = events_url.replace(":4222", ":1").replace(":6379", ":1")
    reader = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read,
                     roles=["projector", "query"], events=down, poll_interval_s=0.05)
    try:
        reader.start()
        answer = reader.ask(CountNotes(stream="a"))
        assert answer.data["count"] == 0
    finally:
        reader.stop()


def test_a_query_process_on_a_feed_states_the_lag_while_no_projector_runs(
    store_urls: tuple[str, str], events_url: str,
) -> None:
    """With every projector down, answers still say how far behind they are: the query
    process learns the head from the feed, not only from the checkpoints."""
    write, read = store_urls
    writer = Runtime(Notes().app, store=write, read_store=read, roles=["command"],
                     events=events_url, poll_interval_s=0.05)
    projector = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read,
                        roles=["projector"], events=events_url, poll_interval_s=0.05)
    reader = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read, roles=["query"],
                     events=events_url)
    try:
        writer.start()
        projector.start()
        first = writer.execute(AddNote(stream="a", text="applied"))
        reader.start()
        assert reader.ask(CountNotes(stream="a"), min_position=first.position,
                          wait_ms=10000).data["count"] == 1
        projector.stop()
        later = writer.execute(AddNotes(stream="a", texts=["x", "y", "z"]))
        deadline = time.monotonic() + 10
        while True:
            answer = reader.ask(CountNotes(stream="a"))
            if answer.freshness.head == later.position or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert answer.data["count"] == 1
        assert answer.freshness.position == first.position
        assert answer.freshness.head == later.position
        assert answer.freshness.lag_events == later.position - first.position
        assert {row.name: row.head for row in reader.status()}["note_counts"] == later.position
    finally:
        reader.stop()
        projector.stop()
        writer.stop()


def test_a_relay_refuses_a_feed_that_mirrors_another_log(
    store_urls: tuple[str, str], events_url: str, tmp_path: Path,
) -> None:
    with relayed(store_urls, events_url) as (runtime, feed, relay):
        runtime.execute(AddNotes(stream="a", texts=["1", "2", "3"]))
        assert relay.relay() == 3
        for texts in (["x"], ["x", "y", "z", "w"]):  # a log behind the feed, one ahead of it
            other = Runtime(Notes().app, store=f"sqlite:///{tmp_path / f'{len(texts)}.db'}",
                            roles=["command"])
            try:
                other.execute(AddNotes(stream="b", texts=texts))
                assert other.log is not None
                with pytest.raises(ConfigurationError, match="does not mirror this event log"):
                    Relay(other.log, feed, HighWater()).relay()
            finally:
                other.stop()
        # The log it mirrors goes on as before.
        runtime.execute(AddNote(stream="a", text="4"))
        assert Relay(runtime.log, feed, HighWater()).relay() == 1  # type: ignore[arg-type]


def test_a_jetstream_pull_cut_short_loses_no_event(
    store_urls: tuple[str, str], nats_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The consumer takes no acks: what it sent to a pull that gave up counts as delivered.
    The reader notices and follows again from where it stands."""
    import projectionist.feeds.jetstream as jetstream_module

    with relayed(store_urls, nats_url) as (runtime, feed, relay):
        assert runtime.log is not None
        for i in range(20):
            runtime.execute(AddNotes(stream=f"s{i}", texts=["x" * 190] * 50))
        relay.relay()
        logged = runtime.log.read(0, 1000)
        source = feed.reader()
        monkeypatch.setattr(jetstream_module, "_FETCH_TIMEOUT_S", 0.00005)  # a slow link
        try:
            early = source.read(0, 1000)
        except StoreUnavailable:
            early = []
        monkeypatch.setattr(jetstream_module, "_FETCH_TIMEOUT_S", 2.0)
        assert len(early) < len(logged), "the pull was not cut short"
        assert early == logged[:len(early)]
        rest = source.read(early[-1].position if early else 0, 1000)
        assert early + rest == logged
