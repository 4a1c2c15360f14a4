"""What handlers see of the read store: declared tables and collections, at one build each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..auth import Principal
from ..errors import ConfigurationError
from .documents import DocumentCache, Documents
from .tables import DocumentCollection, ViewTable


class ViewContext:
    """Resolves declared tables and collections to the version this context works on."""

    lock_reads = False
    """True where other writers share the tables: documents are read locked (PostgreSQL)."""

    def __init__(
        self,
        connection: Connection,
        generations: Mapping[str, int],
        caches: Mapping[str, DocumentCache] | None = None,
    ) -> None:
        self.connection = connection
        self._generations = generations
        self._caches = caches or {}
        self._documents: dict[int, Documents] = {}

    @overload
    def __getitem__(self, handle: ViewTable) -> sa.Table: ...

    @overload
    def __getitem__(self, handle: DocumentCollection) -> Documents: ...

    def __getitem__(self, handle: ViewTable | DocumentCollection) -> sa.Table | Documents:
        generation = self._generations.get(handle.owner)
        if generation is None:
            raise ConfigurationError(
                f"{handle!r} belongs to projection {handle.owner!r}, which this"
                f" handler does not read; list it in reads="
            )
        if isinstance(handle, ViewTable):
            return handle.physical(generation)
        documents = self._documents.get(id(handle))
        if documents is None:
            documents = Documents(
                self.connection,
                handle,
                handle.physical(generation),
                self._caches.get(handle.name),
                lock=self.lock_reads,
            )
            self._documents[id(handle)] = documents
        return documents

    def flush(self) -> None:
        """Writes what the document caches hold."""
        for documents in self._documents.values():
            documents.flush()


class ReadContext(ViewContext):
    """One query's read transaction; `ctx[view]` gives the serving version of a view."""

    def __init__(
        self, connection: Connection, generations: Mapping[str, int], principal: Principal
    ) -> None:
        super().__init__(connection, generations)
        self.principal = principal
