"""The App: what a CQRS application is made of, bound in one object and passed explicitly."""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel

from .calls import check_parameters, synchronous
from .capture import CapturedTable, RowChanged
from .capture.declaration import ColumnRef
from .edge import Policy
from .errors import ConfigurationError, NotRegistered
from .messages import Command, Event, Query, Registry
from .projections.definition import Projection

if TYPE_CHECKING:
    from .commands.unit_of_work import UnitOfWork
    from .readstore.context import ReadContext

C = TypeVar("C", bound=Command)
Q = TypeVar("Q", bound=Query)

__all__ = ["App", "CommandRegistration", "Policy", "QueryRegistration"]


@dataclass(frozen=True, slots=True)
class CommandRegistration:
    """A command type, its handler and its policy."""

    command_type: type[Command]
    handler: Callable[[Any, UnitOfWork], Any]
    policy: Policy | None


@dataclass(frozen=True, slots=True)
class QueryRegistration:
    """A query type, its handler, the projections it reads, its policy, and the model of its
    result (None when it declares none)."""

    query_type: type[Query]
    handler: Callable[[Any, ReadContext], Any]
    reads: tuple[Projection, ...]
    policy: Policy | None
    result: type[BaseModel] | None = None


class App:
    """Binds command handlers, projections and query handlers into one application."""

    def __init__(self, name: str, *, write_model: sa.MetaData | None = None) -> None:
        self.name = name
        self.write_model = write_model if write_model is not None else sa.MetaData()
        self.registry = Registry()
        self.commands: dict[str, CommandRegistration] = {}
        self.queries: dict[str, QueryRegistration] = {}
        self.projections: dict[str, Projection] = {}
        self.captures: dict[str, CapturedTable] = {}

    def command(
        self, command_type: type[C], *, policy: Policy | None = None
    ) -> Callable[[Callable[[C, UnitOfWork], Any]], Callable[[C, UnitOfWork], Any]]:
        """Registers the handler of a command type."""
        name = command_type.type_name
        checked = _policy(policy, f"command {name}", "command")

        def register(handler: Callable[[C, UnitOfWork], Any]) -> Callable[[C, UnitOfWork], Any]:
            check_parameters(handler, f"the handler of command {name}", ("command", "uow"))
            if name in self.commands:
                raise ConfigurationError(f"command {name} already has a handler")
            self.registry.add(command_type)
            self.commands[name] = CommandRegistration(command_type, synchronous(handler), checked)
            return handler

        return register

    def query(
        self,
        query_type: type[Q],
        *,
        reads: Sequence[Projection],
        policy: Policy | None = None,
        result: type[BaseModel] | None = None,
    ) -> Callable[[Callable[[Q, ReadContext], Any]], Callable[[Q, ReadContext], Any]]:
        """Registers the handler of a query type and the projections it reads.

        `result` is the Pydantic model of what the handler returns (the model itself or a dict
        of its shape), stated in the OpenAPI document; by default, the handler's return
        annotation when it is a Pydantic model.
        """
        name = query_type.type_name
        if result is not None and not _is_model(result):
            raise ConfigurationError(
                f"query {name}: result must be a Pydantic model class, got {result!r:.80}"
            )
        if not reads:
            raise ConfigurationError(
                f"query {name} must name the projections it reads (reads=[...])"
            )
        checked = _policy(policy, f"query {name}", "query")

        def register(handler: Callable[[Q, ReadContext], Any]) -> Callable[[Q, ReadContext], Any]:
            check_parameters(handler, f"the handler of query {name}", ("query", "ctx"))
            if name in self.queries:
                raise ConfigurationError(f"query {name} already has a handler")
            for projection in reads:
                self.projection(projection)
            self.registry.add(query_type)
            self.queries[name] = QueryRegistration(
                query_type,
                synchronous(handler),
                tuple(reads),
                checked,
                result or _returned_model(handler),
            )
            return handler

        return register

    def projection(self, projection: Projection) -> Projection:
        """Registers a projection (queries register the ones they read)."""
        known = self.projections.get(projection.name)
        if known is projection:
            return projection
        if known is not None:
            raise ConfigurationError(f"two projections are named {projection.name!r}")
        names = {t for p in self.projections.values() for t in (*p.tables, *p.collections)}
        for table in (*projection.tables, *projection.collections):
            if table in names:
                raise ConfigurationError(
                    f"projection {projection.name!r} declares {table!r}, which another"
                    " projection declares too"
                )
        self.projections[projection.name] = projection
        for event_type in projection.event_types:
            self.registry.add(event_type)
        return projection

    def capture(
        self, table: sa.Table | str, columns: Sequence[ColumnRef] | None = None
    ) -> CapturedTable:
        """Declares a table whose row changes, by any writer, become RowChanged events.

        `table` is a Table, or the name of one (of the write model, else as the store has it);
        `columns` are the columns kept in each event, all of them by default. Each row's stream
        is keyed by its primary key.
        """
        captured = CapturedTable.declare(table, columns, self.write_model)
        if captured.name in self.captures:
            raise ConfigurationError(f"table {captured.name!r} is captured twice")
        self.captures[captured.name] = captured
        self.registry.add(RowChanged)
        return captured

    def events(self, *event_types: type[Event]) -> None:
        """Registers event types that no projection handles (so the log can decode them)."""
        self.registry.add_all(event_types)

    def command_registration(self, name: str) -> CommandRegistration:
        try:
            return self.commands[name]
        except KeyError:
            raise NotRegistered(f"there is no command named {name!r}") from None

    def query_registration(self, name: str) -> QueryRegistration:
        try:
            return self.queries[name]
        except KeyError:
            raise NotRegistered(f"there is no query named {name!r}") from None

    def __repr__(self) -> str:
        return (
            f"App({self.name!r}, commands={len(self.commands)}, queries={len(self.queries)},"
            f" projections={len(self.projections)})"
        )


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _returned_model(handler: Callable[..., Any]) -> type[BaseModel] | None:
    """The handler's return annotation, when it names a Pydantic model."""
    try:
        returned = typing.get_type_hints(handler).get("return")
    except Exception:  # an annotation that does not resolve here states no model
        return None
    return returned if _is_model(returned) else None


def _policy(policy: Policy | None, message: str, parameter: str) -> Policy | None:
    """The policy, checked, as a plain call (an async policy is awaited)."""
    if policy is None:
        return None
    check_parameters(policy, f"the policy of {message}", ("principal", parameter))
    return synchronous(policy)
