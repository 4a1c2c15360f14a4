"""What a projection handler sees: its build's tables, the event applied, and whether it is live."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..messages import EventMetadata, StoredEvent
from ..readstore.context import ViewContext
from ..readstore.documents import DocumentCache
from ..readstore.rows import Number, RowWrites
from ..readstore.tables import ViewTable


class ApplyContext(ViewContext):
    """A projection batch: the read store's connection, and the event being applied.

    `live` is False while a build replays history: side effects must not run then.
    """

    def __init__(
        self,
        connection: Connection,
        projection: str,
        generation: int,
        *,
        live_since: float | None = None,
        live_after: int = 0,
        caches: Mapping[str, DocumentCache] | None = None,
        lock_reads: bool = False,
    ) -> None:
        super().__init__(connection, {projection: generation}, caches)
        self.lock_reads = lock_reads
        self._live_since = live_since
        self._live_after = live_after
        self._rows = RowWrites()
        self._tables: dict[ViewTable, sa.Table] = {}  # each handle's table, resolved once
        self.record: StoredEvent | None = None

    def put(self, handle: ViewTable, row: Mapping[str, Any]) -> None:
        """Inserts or replaces a row of a SQL view (written at the end of the batch)."""
        self._rows.put(self._table(handle), row)

    def update(self, handle: ViewTable, key: Mapping[str, Any], **values: Any) -> None:
        """Sets columns of the row with primary key `key`, if it exists (end of the batch)."""
        self._rows.update(self._table(handle), key, values)

    def increment(self, handle: ViewTable, key: Mapping[str, Any], **deltas: Number) -> None:
        """Adds to numeric columns of the row with primary key `key`, creating it if missing.

        Like `put` and `update`, folded in memory and written once at the end of the batch, so
        a replay of many events costs a few statements; other columns of a new row take their
        defaults. Read these rows with SQL only after `flush()`.
        """
        self._rows.increment(self._table(handle), key, deltas)

    def _table(self, handle: ViewTable) -> sa.Table:
        table = self._tables.get(handle)
        if table is None:
            table = self._tables[handle] = self[handle]
        return table

    def flush(self) -> None:
        super().flush()
        self._rows.flush(self.connection)

    @property
    def live(self) -> bool:
        """True for an event recorded after the serving build started (not a replay)."""
        return (
            self._live_since is not None
            and self._current.recorded_at >= self._live_since
            and self._current.position > self._live_after
        )

    @property
    def position(self) -> int:
        return self._current.position

    @property
    def stream(self) -> str:
        return self._current.stream

    @property
    def recorded_at(self) -> float:
        """When the event was recorded, in seconds since the epoch (UTC)."""
        return self._current.recorded_at

    @property
    def metadata(self) -> EventMetadata:
        return EventMetadata.from_json(self._current.metadata)

    @property
    def _current(self) -> StoredEvent:
        if self.record is None:
            raise RuntimeError("no event is being applied")
        return self.record
