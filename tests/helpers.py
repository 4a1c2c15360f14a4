"""Helpers shared by the tests: waiting for a condition, reading checkpoints and read models,
and starting the command line."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from projectionist import ProjectionStatus, Runtime


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 15.0,
             what: str = "the condition") -> None:
    """Polls until `condition()` holds; fails the test after `timeout_s` (a hang guard only)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.01)


def serving(runtime: Runtime, name: str) -> ProjectionStatus:
    """The status of the build of `name` that serves queries."""
    [status] = [s for s in runtime.status() if s.name == name and s.active]
    return status


def checkpoint(runtime: Runtime, name: str) -> int:
    """The checkpoint of the serving build of a projection."""
    return serving(runtime, name).position


def read_model_rows(runtime: Runtime) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read-model table in the read store, by table name, in key order.

    Found by reflection, so the dump does not depend on how tables are named per build.
    """
    metadata = sa.MetaData()
    dump: dict[str, list[dict[str, Any]]] = {}
    with runtime.read_store.read() as connection:
        metadata.reflect(connection)
        for name, table in sorted(metadata.tables.items()):
            if name.startswith("projectionist_"):
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = connection.execute(sa.select(table).order_by(*order)).mappings()
            dump[name] = [dict(row) for row in rows]
    return dump


def projectionist_executable() -> str:
    """The console script of the installed package, beside this interpreter if it is there."""
    beside = Path(sys.executable).with_name("projectionist")
    if beside.exists():
        return str(beside)
    found = shutil.which("projectionist")
    if found is None:
        pytest.fail("the projectionist console script is not installed (pip install -e .)")
    return found


def projectionist_command() -> list[str]:
    """The installed console script, run by this interpreter (its pid is the process's)."""
    script = Path(sys.executable).with_name("projectionist")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from projectionist.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeSubprocess:
    """`projectionist serve` on a free port, run in `cwd` with its output in files there."""

    STARTUP_TIMEOUT_S = 30.0

    def __init__(self, cwd: Path, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = cwd / "serve.stdout"
        self.stderr_path = cwd / "serve.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [projectionist_executable(), "serve", "--port", str(self.port), *args],
                cwd=cwd, env=dict(env), stdout=out, stderr=err,
            )

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"projectionist serve exited with {self.process.returncode}:\n"
                            f"{self.stderr}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"projectionist serve did not answer /healthz in {self.STARTUP_TIMEOUT_S}"
                    f" s:\n{self.stderr}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def uid(prefix: str) -> str:
    """A fresh id, so that tests sharing one server never meet."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
