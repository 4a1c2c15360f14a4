"""Correlation: one id ties together a request, the events its command records and its log lines.

Over HTTP the id is the request's `X-Request-ID`, else the trace id of its W3C `traceparent`,
else a fresh one; the answer echoes it in `X-Request-ID`. A command stores it as the
`correlation_id` of its events' metadata (its own command id when no id was given), and
`CorrelationFilter` puts it on every log record made while the request or the handler runs.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from collections.abc import Iterable
from contextvars import ContextVar

current: ContextVar[str | None] = ContextVar("projectionist_correlation_id", default=None)
"""The correlation id of the request or command being handled in this context."""

MAX_REQUEST_ID = 200
REQUEST_ID_HEADER = "X-Request-ID"
# Visible ASCII, as an Idempotency-Key: anything else is not echoed, and a fresh id is used.
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")
# version-traceid-parentid-flags; a later version may add fields after these four.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def trace_id(traceparent: str) -> str | None:
    """The trace id of a W3C traceparent header; None when the header is malformed."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace, parent, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == _ZERO_TRACE:
        return None
    return None if parent == _ZERO_PARENT else trace


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The correlation id of a request with these (lowercase name, value) headers."""
    request_id = traceparent = None
    for name, value in headers:
        if name == b"x-request-id":
            request_id = value
        elif name == b"traceparent":
            traceparent = value
    if request_id is not None:
        text = request_id.decode("latin-1")
        if _REQUEST_ID.fullmatch(text):
            return text
    if traceparent is not None:
        trace = trace_id(traceparent.decode("latin-1"))
        if trace is not None:
            return trace
    return fresh_id()


def fresh_id() -> str:
    """A new id, 32 hexadecimal digits: this process's random prefix and a counter. Unique
    like a random UUID, without asking the system for randomness at every request."""
    global _prefix, _pid
    pid = os.getpid()
    if pid != _pid:  # a forked process draws a prefix of its own
        _prefix, _pid = secrets.token_hex(8), pid
    return f"{_prefix}{next(_counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_prefix = secrets.token_hex(8)
_pid = os.getpid()
_counter = itertools.count(secrets.randbits(32))


class CorrelationFilter(logging.Filter):
    """Puts `correlation_id` on each record: the id of the request or command it was logged
    in, or `-`. Add it to a handler whose format names `%(correlation_id)s`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = current.get() or "-"
        return True
