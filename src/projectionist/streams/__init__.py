"""Event feeds beyond the write store: the log relayed to a distributed streaming engine."""

from .jetstream import JetStream, JetStreamEventSource, JetStreamRelay

__all__ = ["JetStream", "JetStreamEventSource", "JetStreamRelay"]
