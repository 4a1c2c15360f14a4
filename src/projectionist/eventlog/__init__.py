"""The event log: append-only, a global position per event, a version per stream."""

from .base import EventLog, EventSource, NewEvent

__all__ = ["EventLog", "EventSource", "NewEvent"]
