"""Helpers of the lifecycle tests: real HTTP servers (in this process or as `projectionist serve`
processes), CLI runs, the read store's tables, and threads that query without pause."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

from projectionist import Runtime, TokenAuthority
from projectionist.http import create_http_app
from projectionist_examples.shop import (
    OrderLineIn,
    PayOrder,
    PlaceOrder,
    RegisterProduct,
    RestockProduct,
)
from tests.helpers import free_port, projectionist_command

REPO = Path(__file__).resolve().parents[2]
SECRET = "lifecycle-tests-secret-" + "x" * 40
AUTHORITY = TokenAuthority([SECRET])
ADMIN_TOKEN = AUTHORITY.issue(["admin", "commands:*", "queries:*"], subject="ops", ttl_s=3600)
READY_TIMEOUT_S = 30.0


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def process_env() -> dict[str, str]:
    """A CLI process's environment: the test secret, the repo importable, no store overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env.update(
        PROJECTIONIST_SECRET=SECRET,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


def run_cli(*args: str, cwd: Path, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs `projectionist ARGS` to completion."""
    return subprocess.run(
        [*projectionist_command(), *args], cwd=cwd, env=process_env(), capture_output=True,
        text=True, timeout=timeout_s, check=False,
    )


class Process:
    """A `projectionist` subprocess whose output goes to a file; killed at teardown."""

    def __init__(self, name: str, args: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*projectionist_command(), *args], cwd=workdir, env=process_env(),
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9."""
        if self.running:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class ServeProcess(Process):
    """`projectionist serve` on a free port, with an admin client."""

    def __init__(self, name: str, args: Sequence[str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, ["serve", *args, "--port", str(self.port), "--quiet"], workdir)
        self.http = httpx.Client(base_url=self.url, timeout=30.0, headers=bearer())

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> ServeProcess:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n"
                                     f"{self.output()}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/healthz", timeout=1.0).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} was not ready in {timeout_s} s:\n"
                                     f"{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        super().stop()
        self.http.close()


class Processes:
    """Every subprocess of one test; all of them are stopped at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Process] = []

    def serve(self, name: str, *args: str) -> ServeProcess:
        server = ServeProcess(name, args, self.workdir)
        self.started.append(server)
        return server.wait_ready()

    def run(self, name: str, *args: str) -> Process:
        process = Process(name, args, self.workdir)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


class InProcessServer:
    """A runtime's HTTP app on a real uvicorn server, in a thread of this process."""

    def __init__(self, runtime: Runtime) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        api = create_http_app(runtime, authority=AUTHORITY)
        config = uvicorn.Config(api, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.http = httpx.Client(base_url=self.url, timeout=30.0, headers=bearer())

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the in-process uvicorn server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


def table_names(url: str) -> set[str]:
    """The tables of a database, read with a connection of its own."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def builds(url: str, name: str) -> list[dict[str, Any]]:
    """The checkpoint rows of a projection, read with a connection of its own."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT generation, version, position, active, state"
                " FROM projectionist_projections WHERE name = :name ORDER BY generation"
            ), {"name": name}).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


class Hammer:
    """Threads that run a check without pause; every failure is kept, none is raised there."""

    def __init__(self, check: Callable[[], None], *, threads: int = 3) -> None:
        self.check = check
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"hammer-{i}", daemon=True)
                         for i in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as error:  # kept for the test thread to report
                with self._lock:
                    self.failures.append(f"{type(error).__name__}: {error}")
            with self._lock:
                self.count += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[Hammer]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(30)

    def assert_clean(self, *, at_least: int) -> None:
        assert not self.failures, f"{len(self.failures)} of {self.count} checks failed:" \
            f" {self.failures[:5]}"
        assert self.count >= at_least, f"only {self.count} checks ran"


def seed_shop(runtime: Runtime, *, products: int, orders: int) -> list[str]:
    """Registers and stocks products, then places and pays orders; the skus."""
    skus = [f"sku-{i:03d}" for i in range(products)]
    for i, sku in enumerate(skus):
        runtime.execute(RegisterProduct(sku=sku, name=f"Product {i}", price_cents=100 + i))
        runtime.execute(RestockProduct(sku=sku, quantity=50))
    for i in range(orders):
        order_id = f"order-{i:03d}"
        sku = skus[i % len(skus)]
        runtime.execute(PlaceOrder(order_id=order_id, customer_id=f"customer-{i % 5}",
                                   lines=[OrderLineIn(sku=sku, quantity=1 + i % 3)]))
        if i % 2 == 0:
            price = 100 + i % len(skus)
            runtime.execute(PayOrder(order_id=order_id, amount_cents=price * (1 + i % 3)))
    return skus


def dump_build(runtime: Runtime, name: str, generation: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of one build of a projection, in key order."""
    projection = runtime.app.projections[name]
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with runtime.read_store.read() as connection:
        for table in projection.physical_tables(generation):
            order = list(table.primary_key.columns) or list(table.columns)
            rows = connection.execute(sa.select(table).order_by(*order))
            dump[table.name.rsplit("_g", 1)[0]] = [tuple(row) for row in rows]
    return dump


def serving_generation(runtime: Runtime, name: str) -> int:
    """The serving build of `name`, from the checkpoints themselves (a cheap read)."""
    with runtime.read_store.read() as connection:
        return runtime.checkpoints.active(connection, [name])[name].generation
