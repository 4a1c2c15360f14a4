"""Stores and plain-SQL writers for the capture tests: writers are sqlite3 connections of their
own, outside any runtime, as another program writing the same database would be."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest


class Stores:
    """A write store and a read store, as files of one test."""

    def __init__(self, directory: Path) -> None:
        self.write_path = directory / "write.db"
        self.url = f"sqlite:///{self.write_path}"
        self.read_url = f"sqlite:///{directory / 'read.db'}"

    def connect(self, *, foreign_keys: bool = False) -> sqlite3.Connection:
        """A writer: autocommit unless it says BEGIN, as a plain sqlite3 program would run."""
        connection = sqlite3.connect(self.write_path, isolation_level=None, timeout=10.0)
        connection.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        return connection


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    return Stores(tmp_path)


@pytest.fixture
def writer(stores: Stores) -> Iterator[sqlite3.Connection]:
    connection = stores.connect()
    yield connection
    connection.close()


def head(connection: sqlite3.Connection) -> int:
    """The log's last position, as a writer reads it after its commit."""
    value = connection.execute("SELECT max(position) FROM projectionist_events").fetchone()[0]
    return int(value or 0)
