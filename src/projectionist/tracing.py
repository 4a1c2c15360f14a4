"""OpenTelemetry spans around command handling, appends, projection batches and queries.

Optional: with opentelemetry-api importable (the `otel` extra) and a tracer provider set by the
application (the SDK's), each of these is a span of the `projectionist` tracer, a child of the
span current where it starts. Without the package, `span` returns one shared no-op context.
With the package but no provider yet it returns the same, and looks for a provider again at
most once a second: a provider set after the first spans is used within a second.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

Attributes = Mapping[str, str | int]

_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()
_RECHECK_S = 1.0
_tracer: Any = None
_checked_at = -_RECHECK_S


def span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[Any]:
    """A span named `name`, current while the block runs; a no-op without OpenTelemetry."""
    if trace is None:
        return _NO_SPAN
    tracer = _tracer or _configured_tracer()
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)  # type: ignore[no-any-return]


def _configured_tracer() -> Any:
    # A provider, once set, stays for the life of the process: keep its tracer. Until then,
    # asking the API costs more than the rest of a no-op span: ask once a second at most.
    global _tracer, _checked_at
    now = time.monotonic()
    if now - _checked_at < _RECHECK_S:
        return None
    _checked_at = now
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None  # nothing would record the span
    _tracer = provider.get_tracer("projectionist")
    return _tracer
