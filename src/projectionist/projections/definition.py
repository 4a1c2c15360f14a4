"""Defining a projection: name, version, event handlers, and the read-model storage it owns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..calls import check_parameters, synchronous
from ..capture.events import RowChanged
from ..errors import ConfigurationError
from ..messages import Event
from ..readstore.partitions import check_count
from ..readstore.tables import DocumentCollection, ViewTable

if TYPE_CHECKING:
    from .context import ApplyContext

E = TypeVar("E", bound=Event)

ON_ERROR = ("park-stream", "park", "stop")
"""What a runner does with an event whose handler keeps failing: park it and hold back the
rest of its stream (the default), park only it, or stop the projection."""
Handler = Callable[[Any, "ApplyContext"], None]
ROW_CHANGED = RowChanged.type_name


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One handler of one event type; a live-only one never runs during a replay."""

    event_type: type[Event]
    function: Handler
    live_only: bool = False


class Projection:
    """A read model built from events: a name, a version, handlers, and the tables it owns.

    Raise `version` when the handlers or tables change: the new version is built apart from
    the one serving queries.

    With `partitions=N`, events are split by stream (a stable hash of its name) into N
    partitions, each with its own checkpoint and lease, applied side by side by the
    projector processes that share them; each stream's events keep their order. Key what a
    partitioned projection writes by the event's stream, or change shared rows with
    `ctx.increment`: two partitions may write the same row at the same time.
    """

    def __init__(
        self,
        name: str,
        version: int = 1,
        *,
        on_error: str = "park-stream",
        partitions: int = 1,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ConfigurationError(
                f"projection {name!r}: on_error must be one of {', '.join(ON_ERROR)}"
            )
        if not name.isidentifier():
            raise ConfigurationError(f"projection name {name!r} must be an identifier")
        if version < 1:
            raise ConfigurationError(f"projection {name!r} has version {version}; start at 1")
        self.name = name
        self.version = version
        self.on_error = on_error
        self.partitions = check_count(name, partitions)
        self.handlers: dict[str, HandlerSpec] = {}
        # Row changes of captured tables share one event type: one handler of that type
        # routes each change to its table's handler.
        self.row_handlers: dict[str, HandlerSpec] = {}
        self.tables: dict[str, ViewTable] = {}
        self.collections: dict[str, DocumentCollection] = {}

    def on(
        self,
        *event_types: type[E],
        live_only: bool = False,
    ) -> Callable[[Callable[[E, ApplyContext], None]], Callable[[E, ApplyContext], None]]:
        """Registers a handler of one or more event types.

        A `live_only` handler is for side effects (an email, a call to another system): it runs
        only for events recorded after the serving build started, never during a replay.
        """
        if not event_types:
            raise ConfigurationError(f"projection {self.name!r}: on() needs an event type")

        def register(
            function: Callable[[E, ApplyContext], None],
        ) -> Callable[[E, ApplyContext], None]:
            handled = " and ".join(event_type.type_name for event_type in event_types)
            check_parameters(
                function, f"the handler of {handled} in projection {self.name!r}", ("event", "ctx")
            )
            for event_type in event_types:
                if event_type.type_name == ROW_CHANGED and self.row_handlers:
                    raise ConfigurationError(
                        f"projection {self.name!r} handles {ROW_CHANGED} per table with"
                        " on_row(); it cannot also handle it with on()"
                    )
                if event_type.type_name in self.handlers:
                    raise ConfigurationError(
                        f"projection {self.name!r} already handles {event_type.type_name}"
                    )
            # The runner calls handlers as plain functions, in the projector's thread.
            call = synchronous(function)
            for event_type in event_types:
                self.handlers[event_type.type_name] = HandlerSpec(event_type, call, live_only)
            return function

        return register

    def on_row(
        self, *tables: sa.Table | str, live_only: bool = False
    ) -> Callable[
        [Callable[[RowChanged, ApplyContext], None]], Callable[[RowChanged, ApplyContext], None]
    ]:
        """Registers a handler of the row changes of one or more captured tables."""
        if not tables:
            raise ConfigurationError(f"projection {self.name!r}: on_row() needs a table")
        names = [table if isinstance(table, str) else table.name for table in tables]

        def register(
            function: Callable[[RowChanged, ApplyContext], None],
        ) -> Callable[[RowChanged, ApplyContext], None]:
            handled = " and ".join(repr(name) for name in names)
            check_parameters(
                function,
                f"the handler of row changes of {handled} in projection {self.name!r}",
                ("change", "ctx"),
            )
            if ROW_CHANGED in self.handlers and not self.row_handlers:
                raise ConfigurationError(
                    f"projection {self.name!r} handles {ROW_CHANGED} with on(); handle each"
                    " table with on_row() instead"
                )
            for name in names:
                if name in self.row_handlers:
                    raise ConfigurationError(
                        f"projection {self.name!r} already handles row changes of {name!r}"
                    )
            call = synchronous(function)
            for name in names:
                self.row_handlers[name] = HandlerSpec(RowChanged, call, live_only)
            self.handlers[ROW_CHANGED] = HandlerSpec(RowChanged, self._apply_row)
            return function

        return register

    def _apply_row(self, change: RowChanged, ctx: ApplyContext) -> None:
        spec = self.row_handlers.get(change.table)
        if spec is None or (spec.live_only and not ctx.live):
            return
        spec.function(change, ctx)

    def table(
        self, name: str, *columns: sa.Column[Any], indexes: tuple[tuple[str, ...], ...] = ()
    ) -> ViewTable:
        """Declares a SQL table of this projection; handlers write it with SQLAlchemy."""
        self._check_free(name)
        table = ViewTable(self.name, name, columns, indexes)
        self.tables[name] = table
        return table

    def documents(
        self, name: str, *, indexes: Mapping[str, type] | None = None
    ) -> DocumentCollection:
        """Declares a document collection of this projection, queryable by its indexes."""
        self._check_free(name)
        collection = DocumentCollection(self.name, name, indexes or {})
        self.collections[name] = collection
        return collection

    def physical_tables(self, generation: int) -> list[sa.Table]:
        """Every table of one generation of this projection."""
        return [t.physical(generation) for t in self.tables.values()] + [
            c.physical(generation) for c in self.collections.values()
        ]

    def table_names(self, generation: int) -> list[str]:
        """The names of every table of one generation of this projection."""
        return [table.name for table in self.physical_tables(generation)]

    @property
    def event_types(self) -> list[type[Event]]:
        return [spec.event_type for spec in self.handlers.values()]

    def _check_free(self, name: str) -> None:
        if not name.isidentifier():
            raise ConfigurationError(f"table name {name!r} must be an identifier")
        if name in self.tables or name in self.collections:
            raise ConfigurationError(f"projection {self.name!r} already declares {name!r}")

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, version={self.version})"
