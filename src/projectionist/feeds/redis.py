"""Redis Streams as the event feed: entry `<position>-0` holds the event at that position.

A script appends a batch only if the stream still ends where the relay read it, so racing
relays never store a position twice, and a stream deleted under a relay is refilled from the
start. A position the log never holds (a rolled-back append) gets an empty entry, so the
entries are contiguous and a reader can tell trimmed entries from gaps. `XRANGE` reads after any
position; `XREAD BLOCK` wakes the projectors.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError, StoreUnavailable
from ..messages import StoredEvent
from ..wakeups import HighWater, WakeupSource
from .base import Feed, decode, encode

log = logging.getLogger("projectionist.feeds")

DEFAULT_STREAM = "events"
_BODY = b"e"

# KEYS[1]: the stream; ARGV[1]: the position it must end at; then pairs of position, body.
# Returns how many entries it added, or -1 when the stream ends elsewhere.
_APPEND = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
if last ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV, 2 do
    redis.call('XADD', KEYS[1], ARGV[i] .. '-0', 'e', ARGV[i + 1])
end
return (#ARGV - 1) / 2
"""


def _position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


class RedisStream(Feed):
    """A Redis stream (`redis://host:6379/0?stream=NAME`, key `projectionist:NAME`)."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, read_timeout_s: float | None = None
    ) -> None:
        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "a redis:// events URL needs the Redis client: pip install 'projectionist[redis]'"
            )
        import redis

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        stream = query.pop("stream", [DEFAULT_STREAM])[0]
        if not stream or not all(c.isalnum() or c in "_-:." for c in stream):
            raise ConfigurationError(
                f"the stream name {stream!r} may hold letters, digits, _ - : and . only"
            )
        self.key = f"projectionist:{stream}"
        self._shown = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
        server = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(query, doseq=True), "")
        )
        self.timeout_s = timeout_s
        self._options: dict[str, Any] = {
            # Reads and appends alike: a projector bounds them within its lease TTL.
            "socket_timeout": min(timeout_s, read_timeout_s or timeout_s),
            "socket_connect_timeout": timeout_s,
        }
        self._server = server
        self.client: Any = redis.Redis.from_url(server, **self._options)
        self._errors: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._append = self.client.register_script(_APPEND)

    def __repr__(self) -> str:
        return f"RedisStream({self._shown}, key={self.key})"

    def unavailable(self, error: BaseException) -> StoreUnavailable:
        """The error to raise for a client error of a lost or refused connection."""
        return StoreUnavailable(f"Redis at {self._shown} is unreachable: {error}")

    def ensure(self) -> None:
        """Nothing to create (XADD creates the stream); checks that Redis answers."""
        try:
            self.client.ping()
        except self._errors as error:
            raise self.unavailable(error) from None

    def last_position(self) -> int:
        try:
            last = self.client.xrevrange(self.key, count=1)
        except self._errors as error:
            raise self.unavailable(error) from None
        return _position(last[0][0]) if last else 0

    def publish(self, last: int, events: list[StoredEvent]) -> tuple[int, bool]:
        entries: list[Any] = [last]
        expected = last
        for event in events:
            for gap in range(expected + 1, event.position):
                entries += [gap, b""]
            entries += [event.position, encode(event)]
            expected = event.position
        try:
            added = self._append(keys=[self.key], args=entries)
        except self._errors as error:
            raise self.unavailable(error) from None
        return (0, True) if added < 0 else (len(events), False)

    def event_at(self, position: int) -> StoredEvent | None:
        try:
            entries = self.client.xrange(self.key, min=f"{position}-0", max=f"{position}-0")
        except self._errors as error:
            raise self.unavailable(error) from None
        body = entries[0][1][_BODY] if entries else b""
        return decode(position, body) if body else None

    def reader(self) -> RedisEventSource:
        return RedisEventSource(self)

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """The client's errors of a lost or refused connection."""
        return self._errors

    def blocking_client(self) -> Any:
        """A client of its own for blocking reads, which hold their connection while they wait."""
        import redis

        return redis.Redis.from_url(self._server, **{**self._options, "socket_timeout": None})

    def wakeups(self, high_water: HighWater) -> RedisWakeups:
        return RedisWakeups(self, high_water)

    def close(self) -> None:
        self.client.close()


class RedisWakeups(WakeupSource):
    """Wakes this process's projector as entries arrive: XREAD BLOCK in a thread of its own."""

    def __init__(self, feed: RedisStream, high_water: HighWater) -> None:
        self.feed = feed
        self.high_water = high_water
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        # From the stream's end now, so no entry appended after this call goes unnoticed.
        try:
            start = f"{self.feed.last_position()}-0"
        except StoreUnavailable as down:
            log.warning("no wake-ups from %r yet: %s", self.feed, down)
            start = "$"
        self._thread = threading.Thread(
            target=self._run,
            args=(start,),
            daemon=True,
            name=f"projectionist-redis-{self.feed.key}",
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.feed.timeout_s)
            self._thread = None

    def _run(self, last: str) -> None:
        feed = self.feed
        # A connection of its own: XREAD BLOCK holds it while it waits.
        client = feed.blocking_client()
        try:
            while not self._stop.is_set():
                try:
                    found = client.xread({feed.key: last}, block=500, count=1000)
                except feed.connection_errors:
                    self._stop.wait(1.0)
                    continue
                for _key, entries in found or []:
                    if not entries:
                        continue
                    last = entries[-1][0].decode()
                    bodies = [(entry_id, f[_BODY]) for entry_id, f in entries if f[_BODY]]
                    if bodies:
                        entry_id, body = bodies[-1]
                        recorded_at = decode(_position(entry_id), body).recorded_at
                        self.high_water.advance(
                            _position(bodies[0][0]), _position(entry_id), recorded_at
                        )
        finally:
            client.close()


class RedisEventSource:
    """The relayed log, read from the Redis stream with XRANGE."""

    def __init__(self, feed: RedisStream) -> None:
        self.feed = feed

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        client = self.feed.client
        events: list[StoredEvent] = []
        expected = after + 1
        try:
            while len(events) < limit:
                entries = client.xrange(
                    self.feed.key, min=f"{expected}-0", max="+", count=limit - len(events)
                )
                if not entries:
                    return events
                for entry_id, fields in entries:
                    position = _position(entry_id)
                    if position != expected:
                        # Entries are contiguous: a missing one was trimmed or deleted.
                        raise self._trimmed(expected, position)
                    body = fields[_BODY]
                    if body:
                        events.append(decode(position, body))
                    expected = position + 1
        except self.feed.connection_errors as error:
            raise self.feed.unavailable(error) from None
        return events

    def _trimmed(self, wanted: int, found: int) -> StoreUnavailable:
        return StoreUnavailable(
            f"the Redis stream {self.feed.key} lacks positions {wanted} to {found - 1}: they"
            " were trimmed away; rebuild the projection from the write store, or trim the"
            " stream less"
        )

    def head(self) -> int:
        return self.feed.last_position()
