"""A database of its own per test, with its replication slots dropped afterwards even when the
test fails (a slot left behind keeps WAL on the server forever)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL, require_postgres


class Database:
    """A fresh PostgreSQL database: its URL, and a plain-SQL writer outside any runtime."""

    def __init__(self) -> None:
        self.name = f"pjc_{uuid.uuid4().hex[:12]}"
        self.admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self.writer = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.engine = sa.create_engine(self.url)

    def sql(self, *statements: str, **params: object) -> list[tuple[object, ...]]:
        """Runs statements in autocommit, each its own transaction; the last one's rows."""
        rows: list[tuple[object, ...]] = []
        with self.writer.connect() as connection:
            for statement in statements:
                result = connection.execute(sa.text(statement), params)
                rows = [tuple(r) for r in result] if result.returns_rows else []
        return rows

    def transaction(self, *statements: str) -> str:
        """Runs statements in one transaction; the WAL position after its commit."""
        with self.engine.connect() as connection, connection.begin():
            for statement in statements:
                connection.execute(sa.text(statement))
        return str(self.sql("SELECT pg_current_wal_lsn()::text")[0][0])

    def rolled_back(self, *statements: str) -> None:
        """Runs statements in one transaction and rolls it back."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            for statement in statements:
                connection.execute(sa.text(statement))
            transaction.rollback()

    def slots(self) -> list[tuple[object, ...]]:
        with self.admin.connect() as connection:
            return [
                tuple(r)
                for r in connection.execute(
                    sa.text(
                        "SELECT slot_name, confirmed_flush_lsn::text, wal_status"
                        " FROM pg_replication_slots WHERE database = :db"
                    ),
                    {"db": self.name},
                )
            ]

    def drop(self) -> None:
        self.writer.dispose()
        self.engine.dispose()
        try:
            with self.admin.connect() as connection:
                # A capture's stream ends with its process: wait for its sender to go (a slot
                # is busy until then), then drop the slots and the database.
                for _ in range(50):
                    busy = connection.execute(
                        sa.text(
                            "SELECT count(pg_terminate_backend(active_pid, 5000))"
                            " FROM pg_replication_slots"
                            " WHERE database = :db AND active_pid IS NOT NULL"
                        ),
                        {"db": self.name},
                    ).scalar_one()
                    if not busy:
                        break
                    time.sleep(0.1)
                connection.execute(
                    sa.text(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE database = :db"
                    ),
                    {"db": self.name},
                )
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            self.admin.dispose()


@pytest.fixture
def database() -> Iterator[Database]:
    require_postgres()
    made = Database()
    try:
        yield made
    finally:
        made.drop()
