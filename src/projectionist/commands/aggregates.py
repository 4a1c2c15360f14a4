"""Event-sourced aggregates: a write model whose state is folded from its own stream.

    class Account(Aggregate):
        stream_prefix = "account"

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.balance = 0

        @applies(Deposited)
        def _deposited(self, event: Deposited) -> None:
            self.balance += event.amount

    @app.command(Deposit)
    def deposit(command: Deposit, uow: UnitOfWork) -> None:
        account = uow.load(Account, command.account_id)
        account.record(Deposited(amount=command.amount))
        uow.save(account)

`save` appends with the version `load` saw, so a concurrent change to the same aggregate is a
ConcurrencyError (409), never a lost update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigurationError
from ..messages import Event

A = TypeVar("A", bound="Aggregate")
E = TypeVar("E", bound=Event)

_APPLIES = "__projectionist_applies__"


def applies(
    *event_types: type[Event],
) -> Callable[[Callable[[A, E], None]], Callable[[A, E], None]]:
    """Marks an aggregate method as the one that folds these event types into its state."""

    def mark(method: Callable[[A, E], None]) -> Callable[[A, E], None]:
        setattr(method, _APPLIES, event_types)
        return method

    return mark


class Aggregate:
    """State rebuilt from the events of one stream, `<stream_prefix>-<id>`."""

    stream_prefix: ClassVar[str] = ""
    event_types: ClassVar[tuple[type[Event], ...]] = ()
    """The event types its `@applies` methods name, so its stream decodes in any process."""
    _appliers: ClassVar[dict[str, Callable[[Any, Any], None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.stream_prefix:
            cls.stream_prefix = cls.__name__.lower()
        appliers: dict[str, Callable[[Any, Any], None]] = {}
        event_types: dict[str, type[Event]] = {}
        for base in reversed(cls.__mro__):
            for attribute in vars(base).values():
                for event_type in getattr(attribute, _APPLIES, ()):
                    appliers[event_type.type_name] = attribute
                    event_types[event_type.type_name] = event_type
        cls._appliers = appliers
        cls.event_types = tuple(event_types.values())

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self.pending: list[Event] = []

    @property
    def stream(self) -> str:
        return f"{self.stream_prefix}-{self.id}"

    def apply(self, event: Event) -> None:
        """Folds one event into the state."""
        applier = self._appliers.get(event.type_name)
        if applier is None:
            raise ConfigurationError(
                f"{type(self).__name__} has no @applies method for {event.type_name}"
            )
        applier(self, event)

    def record(self, *events: Event) -> None:
        """Applies new events and keeps them for `UnitOfWork.save`."""
        for event in events:
            self.apply(event)
            self.pending.append(event)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, version={self.version})"
