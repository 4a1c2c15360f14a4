"""Redis Streams as the event feed: the entry id of each event is its log position.

`XADD key <position>-0` is refused unless the id is above the stream's last one, so racing
relays never store a position twice or out of order, and a position the log never holds (a
rolled-back append) simply has no entry. `XRANGE` reads after any position; `XREAD BLOCK`
wakes the projectors.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError, StoreUnavailable
from ..messages import StoredEvent
from ..signals import LogWatch
from .base import Feed, decode, encode

log = logging.getLogger("projectionist.feeds")

DEFAULT_STREAM = "events"
_BODY = b"e"


def _position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


class RedisStream(Feed):
    """A Redis stream (`redis://host:6379/0?stream=NAME`, key `projectionist:NAME`)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "a redis:// events URL needs the Redis client: pip install 'projectionist[redis]'")
        import redis

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        stream = query.pop("stream", [DEFAULT_STREAM])[0]
        if not stream or not all(c.isalnum() or c in "_-:." for c in stream):
            raise ConfigurationError(
                f"the stream name {stream!r} may hold letters, digits, _ - : and . only")
        self.key = f"projectionist:{stream}"
        self._shown = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
        server = urlunsplit((parts.scheme, parts.netloc, parts.path,
                             urlencode(query, doseq=True), ""))
        self.timeout_s = timeout_s
        self._options: dict[str, Any] = {"socket_timeout": timeout_s,
                                         "socket_connect_timeout": timeout_s}
        self._server = server
        self.client: Any = redis.Redis.from_url(server, **self._options)
        self._errors: tuple[type[BaseException], ...] = (redis.ConnectionError,
                                                         redis.TimeoutError)
        self._stop = threading.Event()
        self._waker: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RedisStream({self._shown}, key={self.key})"

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"Redis at {self._shown} is unreachable: {error}")

    def ensure(self) -> None:
        """Nothing to create (XADD creates the stream); checks that Redis answers."""
        try:
            self.client.ping()
        except self._errors as error:
            raise self._unavailable(error) from None

    def last_position(self) -> int:
        try:
            last = self.client.xrevrange(self.key, count=1)
        except self._errors as error:
            raise self._unavailable(error) from None
        return _position(last[0][0]) if last else 0

    def publish(self, last: int, events: list[StoredEvent]) -> tuple[int, bool]:
        import redis

        pipeline = self.client.pipeline(transaction=False)
        for event in events:
            pipeline.xadd(self.key, {_BODY: encode(event)}, id=f"{event.position}-0")
        try:
            results = pipeline.execute(raise_on_error=False)
        except self._errors as error:
            raise self._unavailable(error) from None
        stored = overtaken = 0
        for result in results:
            if not isinstance(result, Exception):
                stored += 1
            elif isinstance(result, redis.ResponseError) and "equal or smaller" in str(result):
                overtaken += 1
            else:
                raise StoreUnavailable(f"Redis refused an event: {result}")
        return stored, overtaken > 0

    def reader(self) -> RedisEventSource:
        return RedisEventSource(self)

    def wake_on_append(self, watch: LogWatch) -> None:
        if self._waker is not None:
            return
        self._stop.clear()
        # From the stream's end now, so no entry appended after this call goes unnoticed.
        start = f"{self.last_position()}-0"
        self._waker = threading.Thread(target=self._wake, args=(watch, start), daemon=True,
                                       name=f"projectionist-redis-{self.key}")
        self._waker.start()

    def _wake(self, watch: LogWatch, last: str) -> None:
        import redis

        # A connection of its own: XREAD BLOCK holds it while it waits.
        client: Any = redis.Redis.from_url(self._server,
                                           **{**self._options, "socket_timeout": None})
        try:
            while not self._stop.is_set():
                try:
                    found = client.xread({self.key: last}, block=500, count=1000)
                except self._errors:
                    self._stop.wait(1.0)
                    continue
                for _key, entries in found or []:
                    if entries:
                        last = entries[-1][0].decode()
                        first = _position(entries[0][0])
                        recorded_at = decode(_position(last), entries[-1][1][_BODY]).recorded_at
                        watch.advance(first, _position(last), recorded_at)
        finally:
            client.close()

    def close(self) -> None:
        self._stop.set()
        if self._waker is not None:
            self._waker.join(self.timeout_s)
            self._waker = None
        self.client.close()


class RedisEventSource:
    """The relayed log, read from the Redis stream with XRANGE."""

    def __init__(self, feed: RedisStream) -> None:
        self.feed = feed

    def read(self, after: int, limit: int) -> list[StoredEvent]:
        client = self.feed.client
        try:
            entries = client.xrange(self.feed.key, min=f"({after}-0", max="+", count=limit)
            if entries and _position(entries[0][0]) > after + 1:
                self._check_not_trimmed(after + 1)
        except self.feed._errors as error:
            raise self.feed._unavailable(error) from None
        return [decode(_position(entry_id), fields[_BODY]) for entry_id, fields in entries]

    def _check_not_trimmed(self, wanted: int) -> None:
        """A missing position is a gap of the log, unless trimming (which removes the oldest
        entries) or XDEL took it."""
        info = self.feed.client.xinfo_stream(self.feed.key)
        first = info.get("first-entry")
        start = _position(first[0]) if first else _position(info["last-generated-id"]) + 1
        trimmed = int(info.get("entries-added", 0)) > int(info["length"]) and wanted < start
        deleted = _position(info.get("max-deleted-entry-id") or b"0-0") >= wanted
        if trimmed or deleted:
            raise StoreUnavailable(
                f"the Redis stream {self.feed.key} starts at position {start}: positions"
                f" {wanted} to {start - 1} were trimmed away; rebuild the projection from the"
                " write store, or trim the stream less")

    def head(self) -> int:
        return self.feed.last_position()


