"""The command side: dispatch, units of work, idempotency."""

from .dispatch import CommandBus, CommandResult
from .unit_of_work import ANY_VERSION, RecordedEvent, UnitOfWork

__all__ = ["ANY_VERSION", "CommandBus", "CommandResult", "RecordedEvent", "UnitOfWork"]
