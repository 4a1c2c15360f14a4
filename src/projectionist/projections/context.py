"""What projection handlers and query handlers see: read-model tables of the right version."""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ConfigurationError
from ..messages import EventMetadata, StoredEvent
from .definition import DocumentCollection, ViewTable
from .documents import Documents


class ViewContext:
    """Resolves declared tables and collections to the version this context works on."""

    def __init__(self, connection: Connection, versions: Mapping[str, int]) -> None:
        self.connection = connection
        self._versions = versions
        self._documents: dict[int, Documents] = {}

    @overload
    def __getitem__(self, handle: ViewTable) -> sa.Table: ...

    @overload
    def __getitem__(self, handle: DocumentCollection) -> Documents: ...

    def __getitem__(self, handle: ViewTable | DocumentCollection) -> sa.Table | Documents:
        version = self._versions.get(handle.projection.name)
        if version is None:
            raise ConfigurationError(
                f"{handle!r} belongs to projection {handle.projection.name!r}, which this"
                f" handler does not read; list it in reads="
            )
        if isinstance(handle, ViewTable):
            return handle.physical(version)
        documents = self._documents.get(id(handle))
        if documents is None:
            documents = Documents(self.connection, handle, handle.physical(version))
            self._documents[id(handle)] = documents
        return documents

    def flush(self) -> None:
        """Writes what the document caches hold."""
        for documents in self._documents.values():
            documents.flush()


class ApplyContext(ViewContext):
    """A projection batch: the read store's connection, and the event being applied."""

    def __init__(self, connection: Connection, projection: str, version: int, *,
                 live: bool = True) -> None:
        super().__init__(connection, {projection: version})
        self.live = live
        self.record: StoredEvent | None = None

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


