"""Fresh databases for benchmark runs: SQLite files in a folder, or PostgreSQL databases."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from projectionist.engines import redact
from projectionist.errors import ConfigurationError
from projectionist.stores import Store

BACKENDS = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class BenchDatabases:
    """Creates a fresh write store and read store per phase, and removes them afterwards.

    SQLite: two files (write and read, as `projectionist serve` lays them out) in a new folder.
    PostgreSQL: one new database on the server of `url`, created through that URL's database
    with CREATE DATABASE; the read store shares it, as it does by default.
    """

    def __init__(self, backend: str, *, url: str | None = None, directory: Path | None = None,
                 keep: bool = False) -> None:
        if backend not in BACKENDS:
            raise ConfigurationError(f"unknown backend {backend!r}; use one of {BACKENDS}")
        self.backend = backend
        self.keep = keep
        self._created: list[str] = []
        self._admin: sa.Engine | None = None
        self.admin_url = url or DEFAULT_POSTGRES_URL
        if backend == "sqlite":
            if url is not None:
                raise ConfigurationError("--url names a PostgreSQL server; use --dir for SQLite")
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="projectionist-bench-",
                                                   dir=directory))
        else:
            self.directory = Path(tempfile.mkdtemp(prefix="projectionist-bench-"))
            self._admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def fresh(self, label: str) -> tuple[str, str]:
        """(write store URL, read store URL) on new, empty databases."""
        if self.backend == "sqlite":
            folder = self.directory / label
            folder.mkdir()
            return f"sqlite:///{folder / 'write.db'}", f"sqlite:///{folder / 'read.db'}"
        assert self._admin is not None
        name = f"pjbench_{label}_{uuid.uuid4().hex[:10]}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        url = sa.engine.make_url(self.admin_url).set(database=name)
        text = url.render_as_string(hide_password=False)
        return text, text

    def settings(self, store_url: str) -> dict[str, Any]:
        """The database settings that bear on the figures (durability above all)."""
        store = Store(store_url)
        try:
            with store.read() as connection:
                if store.is_sqlite:
                    return {
                        "path": store_url.removeprefix("sqlite:///"),
                        "journal_mode": connection.exec_driver_sql(
                            "PRAGMA journal_mode").scalar(),
                        "synchronous": _SQLITE_SYNCHRONOUS.get(
                            int(connection.exec_driver_sql("PRAGMA synchronous").scalar() or 0),
                            "?"),
                    }
                names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method",
                         "full_page_writes", "shared_buffers", "max_connections")
                return {"url": redact(store_url)} | {
                    name: connection.exec_driver_sql(f"SHOW {name}").scalar() for name in names
                }
        finally:
            store.dispose()

    def drop(self, store_url: str) -> None:
        """Removes one database made by `fresh` now, to free its space."""
        if self.keep:
            return
        if self.backend == "sqlite":
            folder = Path(store_url.removeprefix("sqlite:///")).parent
            shutil.rmtree(folder, ignore_errors=True)
            return
        name = sa.engine.make_url(store_url).database
        if name in self._created:
            self._drop(name)
            self._created.remove(name)

    def close(self) -> None:
        if not self.keep:
            for name in list(self._created):
                self._drop(name)
            self._created.clear()
            shutil.rmtree(self.directory, ignore_errors=True)
        if self._admin is not None:
            self._admin.dispose()

    def _drop(self, name: str) -> None:
        assert self._admin is not None
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> BenchDatabases:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


_SQLITE_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
