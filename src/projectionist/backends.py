"""Backends by name: the event log of a store's dialect, the feed of an events URL.

The ports (`eventlog.EventLog`, `feeds.Feed`) know none of their implementations; the runtime
chooses one here, where the app is composed. A backend module is imported only when chosen, so
a process without NATS or Redis never imports their clients.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ConfigurationError
from .eventlog import EventLog
from .feeds import Feed
from .stores import Store

EVENT_LOGS = {
    "sqlite": "projectionist.eventlog.sqlite:SQLiteEventLog",
    "postgresql": "projectionist.eventlog.postgres:PostgresEventLog",
}
"""The event log of each store dialect."""

FEEDS = {
    "nats": "projectionist.feeds.jetstream:JetStream",
    "tls": "projectionist.feeds.jetstream:JetStream",
    "redis": "projectionist.feeds.redis:RedisStream",
    "rediss": "projectionist.feeds.redis:RedisStream",
}
"""The feed of each events URL scheme."""


def open_event_log(store: Store) -> EventLog:
    """The event log backend for the store's database."""
    target = EVENT_LOGS.get(store.dialect)
    if target is None:
        raise ConfigurationError(f"no event log backend for {store.dialect!r}")
    log: EventLog = _load(target)(store)
    return log


def open_feed(url: str, *, read_timeout_s: float | None = None) -> Feed:
    """The feed an events URL names: nats:// (JetStream) or redis:// (Redis Streams); with
    `read_timeout_s`, no read of its readers waits longer than that."""
    target = FEEDS.get(url.partition("://")[0])
    if target is None:
        raise ConfigurationError(
            f"an events URL starts with nats:// (JetStream) or redis:// (Redis Streams), not"
            f" {url!r}"
        )
    options = {} if read_timeout_s is None else {"read_timeout_s": read_timeout_s}
    feed: Feed = _load(target)(url, **options)
    return feed


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
