"""The shop deployed on the three hosts: which `projectionist serve` runs where.

By default the issue's layout: command processes on hosts 1 and 2, feed-only projectors on
hosts 2 and 3, query processes on all three. `Layout.projector_args` is where other projector
options plug in (partitioned projectors, say) without changing the harness.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.cluster.network import Host
from tests.helpers import projectionist_command
from tests.lifecycle.support import bearer, process_env

COMMAND_PORT = 8001
QUERY_PORT = 8002
PROJECTOR_PORT = 8003
LEASE_TTL_S = 3.0
"""The projectors' lease TTL: a dead holder's builds move within it, inside the 5 s budget."""
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class Layout:
    """Which hosts run which role; the issue's deployment by default."""

    command: tuple[int, ...] = (1, 2)
    projector: tuple[int, ...] = (2, 3)
    query: tuple[int, ...] = (1, 2, 3)
    projector_args: tuple[str, ...] = ()
    """Extra `serve` options of the projector processes."""


class Served:
    """One `projectionist serve` on one host, its output in a file."""

    def __init__(self, host: Host, role: str, port: int, args: Sequence[str],
                 workdir: Path) -> None:
        self.host = host
        self.role = role
        self.name = f"{host.name}-{role}"
        self.url = f"http://{host.address}:{port}"
        self.log_path = workdir / f"{self.name}.log"
        command = [*projectionist_command(), "serve", *args, "--host", host.address,
                   "--port", str(port), "--quiet"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(host.command(command), cwd=workdir,
                                            env=process_env(), stdout=log,
                                            stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if not self.running:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n"
                                 f"{self.output()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        return False

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(15)

    def client(self, timeout_s: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s, headers=bearer())


SESSION_OPTIONS = "-c idle_in_transaction_session_timeout=4000 -c lock_timeout=1500"
"""Every process's PostgreSQL sessions (the URL's `options`, which follow the framework's
own): a transaction left open by a host that was cut off is rolled back after 4 s, so the
locks it holds do not stall the hosts that still run, and no lock is waited for longer than
half the projectors' lease TTL."""


def on_host(url: str, host: Host) -> str:
    """A PostgreSQL URL of the root namespace, as processes reach it through host 1."""
    scheme, _, rest = url.partition("://")
    credentials, _, tail = rest.partition("@")
    database = tail.partition("/")[2]
    return (f"{scheme}://{credentials}@{host.address}:5432/{database}"
            f"?options={quote(SESSION_OPTIONS)}")


class Deployment:
    """Every `serve` process of one test, started together and stopped at its end."""

    def __init__(self, hosts: Sequence[Host], workdir: Path, *, write_url: str, read_url: str,
                 events_url: str, layout: Layout = Layout()) -> None:
        self.hosts = {host.number: host for host in hosts}
        self.workdir = workdir
        self.layout = layout
        database_host = self.hosts[1]
        write = on_host(write_url, database_host)
        read = on_host(read_url, database_host)
        common = ["--read-store", read, "--events", events_url]
        self.served: list[Served] = []
        roles = (
            ("command", COMMAND_PORT, layout.command, ["--store", write]),
            ("projector", PROJECTOR_PORT, layout.projector,
             ["--lease-ttl", str(LEASE_TTL_S), *layout.projector_args]),
            ("query", QUERY_PORT, layout.query, []),
        )
        self.plan = [(self.hosts[number], role, port, ["--roles", role, *args, *common])
                     for role, port, numbers, args in roles for number in numbers]

    def start(self) -> None:
        for host, role, port, args in self.plan:
            self.served.append(Served(host, role, port, args, self.workdir))
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = list(self.served)
        while waiting:
            waiting = [served for served in waiting if not served.ready()]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(served.name for served in waiting)
                raise AssertionError(f"not ready in {READY_TIMEOUT_S:g} s: {names}\n"
                                     f"{waiting[0].output()[-4000:]}")
            time.sleep(0.2)

    def role(self, role: str) -> list[Served]:
        return [served for served in self.served if served.role == role]

    def on(self, host: Host) -> list[Served]:
        return [served for served in self.served if served.host == host]

    def by_pid(self, pid: int) -> Served | None:
        return next((served for served in self.served if served.pid == pid), None)

    def stop(self) -> None:
        for served in self.served:
            served.stop()
