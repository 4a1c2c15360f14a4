# long: one engine's feed, wake-ups and reader, sharing the connection's private event loop
"""NATS JetStream as the event feed of projectors that run apart from the write store.

A relay, in each command process, copies the event log into a JetStream stream with one message
per log position, so the stream's sequence numbers are the log's positions. A position the log
will never hold (PostgreSQL leaves one behind a rolled-back append) becomes an empty gap
message. Every publish carries `Nats-Expected-Last-Sequence`: JetStream refuses it unless the
stream ends just before it, so relays in several processes can run at once and the stream still
holds each position once, in order.

A projector given the stream (`Runtime(events="nats://...")`) reads its events from JetStream
instead of the write store; it needs no connection to the write store at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, TypeVar

from ..errors import ConfigurationError, StoreUnavailable
from ..messages import StoredEvent
from ..wakeups import HighWater, WakeupSource
from .base import Feed, decode, encode
from .jetstream_url import JetStreamAddress, parse

log = logging.getLogger("projectionist.jetstream")

T = TypeVar("T")

GAP = "Projectionist-Gap"
POSITION = "Projectionist-Position"
RECORDED_AT = "Projectionist-Recorded-At"
EXPECTED_LAST = "Nats-Expected-Last-Sequence"
_WRONG_LAST_SEQUENCE = 10071
_FETCH_MAX = 1000
# Fetches ask only for messages the stream holds, so they arrive at once: a longer wait means
# the consumer is gone.
_FETCH_TIMEOUT_S = 2.0
_CONSUMER_IDLE_S = 300.0
# A consumer is made in a few short tries rather than one long wait (see _create_consumer).
_CREATE_ATTEMPTS = 10
_CREATE_TIMEOUT_S = 0.4
# A server that answers no ping for two intervals is gone: the client moves to another of the
# cluster's servers within about 2 s, where TCP alone could take minutes.
_PING_INTERVAL_S = 1
_MAX_OUTSTANDING_PINGS = 2


def _credentials(address: JetStreamAddress) -> dict[str, str]:
    """The URL's user and password (or token) as the client takes them, for every server:
    those the cluster tells of come without credentials of their own."""
    if address.user is None:
        return {}
    if address.password is None:
        return {"token": address.user}
    return {"user": address.user, "password": address.password}


async def _log_error(error: Exception) -> None:
    log.debug("NATS: %r", error)


class JetStream(Feed):
    """One NATS connection, driven by a private event loop thread so that threads can use it.

    The URL is NATS's own (`nats://host:4222`, or a cluster's servers separated by commas),
    with `?stream=NAME` to choose the stream (default PROJECTIONIST_EVENTS) and `replicas=N`
    for the copies a cluster keeps of it; its subject is `projectionist.<NAME>`. Requests time
    out after `timeout_s`, short enough that a relay or projector moves on within seconds of
    a server's loss or a leader's election; a reader's read gives up after `read_timeout_s`
    (a projector sets it well within its lease TTL, so a read that hangs on a lost server
    does not let the leases of its process lapse).
    """

    def __init__(
        self, url: str, *, timeout_s: float = 2.0, read_timeout_s: float | None = None
    ) -> None:
        if importlib.util.find_spec("nats") is None:
            raise ConfigurationError(
                "an events URL needs the NATS client: pip install 'projectionist[nats]'"
            )
        address = parse(url)
        self.servers = list(address.servers)
        self._shown = address.shown
        self.stream = stream = address.stream
        self.replicas = address.replicas
        self.subject = f"projectionist.{stream}"
        self._auth = _credentials(address)
        self.timeout_s = timeout_s
        self.read_timeout_s = min(timeout_s * 3, read_timeout_s or timeout_s * 3)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name=f"projectionist-nats-{stream}"
        )
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._lock = asyncio.Lock()
        self._wake_callbacks: list[Callable[[Any], Awaitable[None]]] = []
        self._subscribed: list[Callable[[Any], Awaitable[None]]] = []
        self.readers: weakref.WeakSet[JetStreamEventSource] = weakref.WeakSet()
        self._closed = False

    def __repr__(self) -> str:
        return f"JetStream({self._shown}, stream={self.stream})"

    def call(self, work: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        """Runs a coroutine on the connection's loop and waits for its result."""
        future = asyncio.run_coroutine_threadsafe(self._guarded(work), self._loop)
        try:
            return future.result(timeout_s or self.timeout_s * 3)
        except FutureTimeout:
            future.cancel()
            raise StoreUnavailable(f"NATS at {self._shown} did not answer in time") from None

    async def _guarded(self, work: Callable[[], Awaitable[T]]) -> T:
        import nats.errors

        try:
            await self.connected()
            return await work()
        except (
            OSError,
            nats.errors.NoServersError,
            nats.errors.TimeoutError,
            nats.errors.ConnectionClosedError,
            nats.errors.NoRespondersError,
        ) as error:
            raise StoreUnavailable(f"NATS at {self._shown} is unreachable: {error!r}") from None

    async def connected(self) -> Any:
        """The JetStream context, connecting first if needed."""
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                import nats

                # A few quick reconnects ride out a restart; past them the connection closes
                # and the next call connects afresh (or says NATS is unreachable).
                self._nc = await nats.connect(
                    **self._auth,
                    servers=self.servers,
                    connect_timeout=self.timeout_s,
                    max_reconnect_attempts=5,
                    reconnect_time_wait=0.5,
                    ping_interval=_PING_INTERVAL_S,
                    max_outstanding_pings=_MAX_OUTSTANDING_PINGS,
                    allow_reconnect=True,
                    name="projectionist",
                    error_cb=_log_error,
                )
                self._js = self._nc.jetstream(timeout=self.timeout_s)
                self._subscribed = []
                await self._subscribe_wake_ups()
            return self._js

    @property
    def client(self) -> Any:
        return self._nc

    # Feed

    def ensure(self) -> None:
        """Creates the stream if it does not exist (file storage, kept until deleted, with
        the URL's replicas)."""
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        async def ensure() -> None:
            try:
                await self._js.stream_info(self.stream)
            except NotFoundError:
                await self._js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[self.subject],
                        storage=StorageType.FILE,
                        num_replicas=self.replicas,
                        description="projectionist: the event log, one message per position",
                    )
                )

        self.call(ensure)

    async def bounds(self) -> tuple[int, int]:
        """(first, last) sequence of the stream; (0, 0) when it is empty."""
        from nats.js.errors import NotFoundError

        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            raise StoreUnavailable(
                f"the JetStream stream {self.stream} does not exist yet; a command process"
                " with the same events URL creates it"
            ) from None
        state = info.state
        return int(state.first_seq), int(state.last_seq)

    def last_position(self) -> int:
        """The stream's last sequence, which is a log position."""
        return self.call(self.bounds)[1]

    def publish(self, last: int, events: list[StoredEvent]) -> tuple[int, bool]:
        return self.call(partial(self._publish, last, events))

    async def _publish(self, last: int, events: list[StoredEvent]) -> tuple[int, bool]:
        """Publishes a batch, pipelined on one connection (so in order), then reads the acks:
        (events stored, whether another relay got to some positions first)."""
        await self.connected()
        nc = self.client
        subject = self.subject
        inbox = nc.new_inbox()
        acks: asyncio.Queue[Any] = asyncio.Queue()
        subscription = await nc.subscribe(f"{inbox}.*", cb=acks.put)
        try:
            sent = 0
            real: list[bool] = []  # by the index each publish's ack subject ends with
            expected = last
            for event in events:
                for gap in range(expected + 1, event.position):
                    await nc.publish(
                        subject,
                        b"",
                        reply=f"{inbox}.{sent}",
                        headers={GAP: "1", POSITION: str(gap), EXPECTED_LAST: str(gap - 1)},
                    )
                    sent += 1
                    real.append(False)
                await nc.publish(
                    subject,
                    encode(event),
                    reply=f"{inbox}.{sent}",
                    headers={
                        POSITION: str(event.position),
                        RECORDED_AT: repr(event.recorded_at),
                        EXPECTED_LAST: str(event.position - 1),
                    },
                )
                sent += 1
                real.append(True)
                expected = event.position
            await nc.flush()
            overtaken = False
            stored = 0
            for _ in range(sent):
                ack = await asyncio.wait_for(acks.get(), self.timeout_s)
                if (ack.headers or {}).get("Status") == "503":
                    raise StoreUnavailable(
                        f"no JetStream stream takes {subject}; start a command process with"
                        " this events URL, which creates it"
                    )
                answer = json.loads(ack.data or b"{}")
                error = answer.get("error")
                if error is None:
                    stored += real[int(ack.subject.rsplit(".", 1)[1])]
                    continue
                if error.get("err_code") == _WRONG_LAST_SEQUENCE:
                    overtaken = True
                else:
                    raise StoreUnavailable(
                        f"JetStream refused an event: {error.get('description', error)}"
                    )
            return stored, overtaken
        finally:
            await subscription.unsubscribe()

    def event_at(self, position: int) -> StoredEvent | None:
        from nats.js.errors import NotFoundError

        async def get() -> StoredEvent | None:
            try:
                message = await self._js.get_msg(self.stream, position)
            except NotFoundError:
                return None
            if (message.headers or {}).get(GAP) or not message.data:
                return None
            return decode(position, message.data)

        return self.call(get)

    def reader(self) -> JetStreamEventSource:
        return JetStreamEventSource(self)

    def wakeups(self, high_water: HighWater) -> JetStreamWakeups:
        return JetStreamWakeups(self, high_water)

    def subscribe(self, callback: Callable[[Any], Awaitable[None]]) -> None:
        """Calls `callback` with every message published to the feed, on this connection and
        on each one made after it."""

        async def subscribe() -> None:
            self._wake_callbacks.append(callback)
            await self._subscribe_wake_ups()

        self.call(subscribe)

    async def _subscribe_wake_ups(self) -> None:
        """Subscribes each wake-up callback not yet subscribed on the current connection."""
        for callback in self._wake_callbacks:
            if callback not in self._subscribed:
                await self._nc.subscribe(self.subject, cb=callback)
                self._subscribed.append(callback)

    def delete_consumer_soon(self, name: str) -> None:
        """Deletes a consumer whose reader is gone, without waiting (from any thread)."""
        if self._closed:
            return

        async def delete() -> None:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(self.stream, name)

        with contextlib.suppress(RuntimeError):  # the loop has stopped
            asyncio.run_coroutine_threadsafe(delete(), self._loop)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def close() -> None:
            for reader in list(self.readers):
                await reader.unsubscribe()
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.drain()

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(self.timeout_s)
        except Exception:  # already gone: nothing to flush
            log.debug("closing the NATS connection failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout_s)
        if not self._thread.is_alive():
            self._loop.close()


class JetStreamWakeups(WakeupSource):
    """Wakes this process's projector as each event is relayed (a plain subscription).

    With NATS down, the subscription is made when a connection is (projectors poll meanwhile).
    It lasts as long as the feed's connection: closing the feed ends it.
    """

    def __init__(self, feed: JetStream, high_water: HighWater) -> None:
        self.feed = feed
        self.high_water = high_water

    def start(self) -> None:
        high_water = self.high_water

        async def woken(message: Any) -> None:
            headers = message.headers or {}
            position = headers.get(POSITION, "")
            if position.isdigit() and not headers.get(GAP):
                recorded_at = headers.get(RECORDED_AT)
                high_water.advance(
                    int(position), int(position), float(recorded_at) if recorded_at else time.time()
                )

        try:
            self.feed.subscribe(woken)
        except StoreUnavailable as down:
            log.warning("no wake-ups from %r yet: %s", self.feed, down)

    def stop(self) -> None:
        """Nothing of its own to release: the subscription ends with the feed's connection."""


class JetStreamEventSource:
    """The relayed log, read from JetStream: what a projector needs of an event log.

    Each reader (one per projection build) reads through an ephemeral pull consumer that starts
    at the position asked for and follows on while reads move forward; fetched messages are
    kept until a read passes them, so a look-ahead of one event costs nothing. The consumer
    takes no acks, so a message it sent counts as delivered: whenever a pull may have lost some
    (it ended early, or was cancelled), or the consumer is gone or about to expire, the reader
    makes a new one where it stands.
    """

    def __init__(self, jetstream: JetStream) -> None:
        self.jetstream = jetstream
        self._consumer: str | None = None
        self._max_batch = self._batch_limit = _FETCH_MAX
        self._buffer: deque[tuple[int, StoredEvent | None]] = deque()
        self._next = 0  # the sequence the consumer delivers next
        self._suspect = False  # a pull did not finish cleanly: the consumer may have skipped
        self._pulled_at = 0.0
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()
        jetstream.readers.add(self)

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        with self._lock:
            return self.jetstream.call(
                lambda: self._read(after, limit), self.jetstream.read_timeout_s
            )

    def head(self) -> int:
        bounds = self.jetstream.call(self.jetstream.bounds, self.jetstream.read_timeout_s)
        return bounds[1]

    async def _read(self, after: int, limit: int) -> list[StoredEvent]:
        start = after + 1
        buffered_from = self._buffer[0][0] if self._buffer else self._next
        if self._consumer is None or not buffered_from <= start <= self._next:
            await self._follow_from(start)
        elif self._suspect or time.monotonic() - self._pulled_at > _CONSUMER_IDLE_S * 0.8:
            await self._subscribe(self._next)  # keeps what is buffered
        while self._buffer and self._buffer[0][0] < start:
            self._buffer.popleft()
        wanted = sum(1 for _, event in self._buffer if event is not None)
        refollowed = False
        while wanted < limit:
            # A no-wait pull answers at once with what the stream holds, up to `count`.
            count = min(self._max_batch, max(limit - wanted, 16))
            messages, complete = await self._pull(count)
            for message in messages:
                sequence = _stream_sequence(message.reply)
                if sequence != self._next:
                    # The stream's limits removed messages this reader had not read yet.
                    await self.unsubscribe()
                    raise self._discarded(self._next, sequence)
                headers = message.headers or {}
                event = None if headers.get(GAP) else decode(sequence, message.data)
                self._buffer.append((sequence, event))
                self._next = sequence + 1
                wanted += event is not None
            if complete:
                if len(messages) == count:
                    self._max_batch = min(self._batch_limit, self._max_batch * 2)
                    continue
                break  # the server says the consumer is at the stream's end
            # The pull ended early (the consumer is gone, or the answer was slow): the stream's
            # bounds tell whether messages were discarded or the consumer fell behind.
            first, last = await self.jetstream.bounds()
            if first > self._next and last >= self._next:
                await self.unsubscribe()
                raise self._discarded(self._next, first)
            if last < self._next:
                break  # caught up
            if refollowed:
                # Twice short: maybe a link too slow for this batch size; smaller ones next.
                self._max_batch = max(16, self._max_batch // 2)
                raise StoreUnavailable(
                    f"the JetStream consumer of {self.jetstream!r} stopped at {self._next - 1}"
                    f" while the stream holds {last}"
                )
            # The consumer lost messages or is gone: a new one where this reader stands.
            log.debug("following %r again from %d", self.jetstream, self._next)
            await self._subscribe(self._next)
            refollowed = True
        events = [event for _, event in self._buffer if event is not None]
        return events[:limit]

    async def _pull(self, count: int) -> tuple[list[Any], bool]:
        """Up to `count` messages in one no-wait pull request answered into a callback (far
        cheaper than nats-py's fetch, which awaits each message): (messages, whether the pull
        ended cleanly, with all `count` or with the server's word that there are no more)."""
        nc = self.jetstream.client
        inbox = nc.new_inbox()
        got: list[Any] = []
        done = asyncio.Event()
        ended: list[str] = []

        async def collect(message: Any) -> None:
            headers = message.headers or {}
            status = headers.get("Status")
            if status:
                ended.append(f"{status} {headers.get('Description', '')}".strip())
                done.set()
                return
            got.append(message)
            if len(got) >= count:
                done.set()

        self._suspect = True  # until this pull ends cleanly, even if it is cancelled
        subscription = await nc.subscribe(inbox, cb=collect)
        try:
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.jetstream.stream}.{self._consumer}",
                json.dumps({"batch": count, "no_wait": True}).encode(),
                reply=inbox,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    done.wait(), min(_FETCH_TIMEOUT_S, self.jetstream.read_timeout_s / 2)
                )
        finally:
            await subscription.unsubscribe()
        self._pulled_at = time.monotonic()
        status = ended[0] if ended else ""
        if status.startswith("409") and "Consumer Deleted" not in status:
            raise StoreUnavailable(f"JetStream refused a pull of {count}: {status}")
        complete = len(got) == count or status.startswith(("404", "408"))
        self._suspect = not complete
        return got, complete

    async def _follow_from(self, start: int) -> None:
        first, last = await self.jetstream.bounds()
        if first > start and last >= start:
            await self.unsubscribe()
            raise self._discarded(start, first)
        await self._subscribe(start)
        self._buffer.clear()
        self._next = start

    async def _subscribe(self, start: int) -> None:
        """A new ephemeral consumer from `start`: no acks, in memory, gone after
        _CONSUMER_IDLE_S idle (and deleted with this reader)."""
        await self.unsubscribe()
        name, info = await self._create_consumer(start)
        self._consumer = name
        self._batch_limit = min(_FETCH_MAX, getattr(info.config, "max_batch", None) or _FETCH_MAX)
        self._max_batch = min(self._max_batch, self._batch_limit)
        self._suspect = False
        self._pulled_at = time.monotonic()
        # A reader dropped with its build takes its consumer with it.
        self._finalizer = weakref.finalize(self, self.jetstream.delete_consumer_soon, name)

    async def _create_consumer(self, start: int) -> tuple[str, Any]:
        """(name, info) of a consumer made on the server, tried a few times with short waits:
        a cluster places the consumer on one of the stream's peers, a dead one too until it
        counts that one offline (some seconds), and another try lands on a live peer."""
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import APIError, ServiceUnavailableError

        js = await self.jetstream.connected()
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            name = f"projectionist-{uuid.uuid4().hex}"
            config = ConsumerConfig(
                name=name,
                filter_subject=self.jetstream.subject,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=_CONSUMER_IDLE_S,
                mem_storage=True,
            )
            try:
                info = await js.add_consumer(
                    self.jetstream.stream, config, timeout=_CREATE_TIMEOUT_S
                )
            except (TimeoutError, nats.errors.TimeoutError, ServiceUnavailableError) as error:
                self.jetstream.delete_consumer_soon(name)  # should it be made after all
                if attempt == _CREATE_ATTEMPTS:
                    raise StoreUnavailable(
                        f"JetStream made no consumer of {self.jetstream!r} from {start} in"
                        f" {attempt} tries: {error!r}"
                    ) from None
                continue
            except APIError as error:  # the stream was deleted, for one
                raise StoreUnavailable(
                    f"JetStream could not follow {self.jetstream!r} from {start}: {error}"
                ) from None
            return name, info
        raise AssertionError("unreachable")

    async def unsubscribe(self) -> None:
        """Deletes the consumer on the server."""
        name, self._consumer = self._consumer, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if name is None:
            return
        try:
            js = await self.jetstream.connected()
            await js.delete_consumer(self.jetstream.stream, name)
        except Exception:  # the consumer or its connection is gone already
            log.debug("could not remove a consumer", exc_info=True)

    def _discarded(self, start: int, first: int) -> StoreUnavailable:
        return StoreUnavailable(
            f"the JetStream stream {self.jetstream.stream} starts at position {first}:"
            f" positions {start} to {first - 1} were discarded by its limits; rebuild the"
            " projection from the write store, or keep the stream longer"
        )


def _stream_sequence(reply: str) -> int:
    """The stream sequence in a JetStream message's reply subject:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...` or, with a domain and account
    hash, `$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<stream seq>...`."""
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])
