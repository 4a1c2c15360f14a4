"""Event feeds beyond the write store: the log relayed to NATS JetStream or Redis Streams."""

from .base import Feed
from .relay import Relay

__all__ = ["Feed", "Relay"]
