"""Fixtures for the process-level PostgreSQL tests: fresh databases, `projectionist serve`
processes on free ports, and an admin connection to watch and break the server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from projectionist import TokenAuthority
from tests.conftest import PG_ADMIN_URL, PostgresDatabases
from tests.helpers import free_port, projectionist_command

pytest.register_assert_rewrite("tests.postgres.shopcheck")

REPO = Path(__file__).resolve().parents[2]
SECRET = "pg-process-tests-" + "s" * 40
AUTHORITY = TokenAuthority([SECRET])
STAFF_TOKEN = AUTHORITY.issue(["commands:*", "queries:*", "admin"], subject="staff",
                              ttl_s=3600)
READY_TIMEOUT_S = 30.0


def database_name(url: str) -> str:
    name = sa.engine.make_url(url).database
    assert name
    return name


def process_env(app_name: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROJECTIONIST_AUTH", None)
    env.update(
        PROJECTIONIST_SECRET=SECRET,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        # libpq names every connection of the process after it (pg_stat_activity).
        PGAPPNAME=app_name,
        **extra,
    )
    return env


class Server:
    """One `projectionist serve` process."""

    def __init__(self, name: str, args: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*projectionist_command(), "serve", *args, "--port", str(self.port), "--quiet"],
            cwd=workdir, env=process_env(name), stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30.0,
                                 headers={"Authorization": f"Bearer {STAFF_TOKEN}"})

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> Server:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                if self.http.get("/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} was not ready in {timeout_s} s:\n"
                                     f"{self.output()}")
            time.sleep(0.05)

    def command(self, name: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(f"/commands/{name}", json=body, headers=headers)

    def query(self, name: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/queries/{name}",
                             params={k: v for k, v in params.items() if v is not None})

    def kill(self) -> None:
        """kill -9."""
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.http.close()
        self._log.close()


class Servers:
    """Starts serve processes for one test and stops every one of them at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Server] = []

    def start(self, name: str, *, roles: str, store: str, read_store: str,
              app: str = "shop", extra: Sequence[str] = (), wait: bool = True) -> Server:
        args = [app, "--roles", roles, "--store", store, "--read-store", read_store, *extra]
        server = Server(name, args, self.workdir)
        self.started.append(server)
        return server.wait_ready() if wait else server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    pool = Servers(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


class Admin:
    """The PostgreSQL superuser's view: activity, locks, and switching databases off."""

    def __init__(self) -> None:
        self.engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                                       poolclass=sa.pool.NullPool)
        self._blocked: set[str] = set()

    def rows(self, sql: str, **params: Any) -> list[sa.Row[Any]]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params))

    def value(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar()

    def refuse_connections(self, database: str) -> None:
        """Makes a database unreachable: no new connections, existing ones terminated."""
        self._blocked.add(database)
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            connection.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": database},
            )

    def allow_connections(self, database: str) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        self._blocked.discard(database)

    def close(self) -> None:
        for database in list(self._blocked):
            self.allow_connections(database)
        self.engine.dispose()


@pytest.fixture
def admin(pg_databases: PostgresDatabases) -> Iterator[Admin]:
    helper = Admin()
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def pg_stores(pg_databases: PostgresDatabases) -> tuple[str, str]:
    """(write store URL, read store URL): two fresh PostgreSQL databases."""
    return pg_databases.create("pjw"), pg_databases.create("pjr")
