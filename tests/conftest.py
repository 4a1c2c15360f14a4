"""Shared fixtures: real stores per backend, and a runtime of the shop on them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from projectionist import Runtime
from projectionist_examples.shop import create_app
from tests.lifecycle.support import Processes
from tests.notes import Notes

PG_ADMIN_URL = os.environ.get(
    "PROJECTIONIST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


def require_postgres() -> None:
    """Fails (never skips) when PostgreSQL is down: CI must run every backend."""
    if not postgres_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; start it (see .ci/run)")


class PostgresDatabases:
    """Creates throw-away databases and drops them afterwards."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def create(self, prefix: str = "pj") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        with self.engine.connect() as connection:
            for name in self.created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.engine.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    require_postgres()
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_urls(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(write store URL, read store URL) on fresh databases of the backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'write.db'}", f"sqlite:///{tmp_path / 'read.db'}"
    databases: PostgresDatabases = request.getfixturevalue("pg_databases")
    return databases.create("pjw"), databases.create("pjr")


@pytest.fixture
def shop_runtime(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """The shop with every role, projector not started (tests call catch_up())."""
    write, read = store_urls
    runtime = Runtime(create_app(), store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


class PostgresSchemas:
    """Throw-away schemas in one database: an empty store per test, far cheaper than a database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")

    def create(self, prefix: str = "pj") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        return f"{self.database_url}?options=-csearch_path%3D{name}"


@pytest.fixture(scope="session")
def pg_schemas(pg_databases: PostgresDatabases) -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas(pg_databases.create("pjs"))
    yield schemas
    schemas.engine.dispose()


@pytest.fixture
def schema_store_urls(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, str]:
    """Like store_urls, but PostgreSQL stores are schemas of one database (search_path)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'write.db'}", f"sqlite:///{tmp_path / 'read.db'}"
    schemas: PostgresSchemas = request.getfixturevalue("pg_schemas")
    return schemas.create("pjw"), schemas.create("pjr")


@pytest.fixture(scope="session")
def make_store_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Callable[[str], str]:
    """Makes a new, empty store of a backend (a SQLite file, a PostgreSQL schema); its URL."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
        schemas: PostgresSchemas = request.getfixturevalue("pg_schemas")
        return schemas.create("pjx")

    return make


@pytest.fixture
def notes() -> Notes:
    """A new notes App (tests/notes.py): the framework's test app."""
    return Notes()


@pytest.fixture
def notes_runtime(notes: Notes, store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """The notes app with every role on fresh stores, projector not started."""
    write, read = store_urls
    runtime = Runtime(notes.app, store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """`projectionist` subprocesses for one test; each is stopped (or killed) at its end."""
    pool = Processes(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
