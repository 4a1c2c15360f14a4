"""Event feeds beyond the write store: the log relayed to NATS JetStream or Redis Streams."""

from .base import Feed, Relay, open_feed

__all__ = ["Feed", "Relay", "open_feed"]
