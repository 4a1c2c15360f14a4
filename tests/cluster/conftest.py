"""Fixtures of the cluster tests: the three hosts with their NATS cluster and PostgreSQL (for
the module), and the shop deployed on them (per test, on fresh databases and a fresh stream)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.deployment import Deployment, Layout
from tests.cluster.jetstream import Cluster, nats_server
from tests.cluster.network import HOSTS, Network, SetupError, check_machine
from tests.cluster.shop_load import Stores
from tests.conftest import PostgresDatabases

PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"


@dataclass
class Machine:
    """The hosts, their NATS cluster, and PostgreSQL reachable on host 1's address."""

    network: Network
    nats: Cluster
    proxy: subprocess.Popen[bytes]

    def heal(self) -> None:
        """Undoes what an earlier test's fault left: every link up, every node running."""
        for host in self.network.hosts:
            self.network.link_up(host)
        for node in self.nats.nodes.values():
            node.start()
        self.nats.wait_ready()


def _start_proxy(workdir: Path) -> subprocess.Popen[bytes]:
    host = HOSTS[0]
    if not Path(PG_SOCKET).exists():
        raise SetupError(f"PostgreSQL's Unix socket {PG_SOCKET} is missing (is it running?)")
    script = Path(__file__).with_name("pgproxy.py")
    with (workdir / "pgproxy.log").open("wb") as log:
        proxy = subprocess.Popen(
            host.command([sys.executable, str(script), host.address, "5432", PG_SOCKET]),
            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection((host.address, 5432), timeout=1).close()
            return proxy
        if proxy.poll() is not None or time.monotonic() > deadline:
            proxy.kill()
            raise SetupError(f"PostgreSQL did not answer on {host.address}:5432 through"
                             f" {script.name}: {(workdir / 'pgproxy.log').read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """Builds the hosts (removing a killed run's leftovers first); fails, never skips, when
    this machine cannot hold them."""
    workdir = tmp_path_factory.mktemp("cluster")
    network = Network()
    nats = Cluster(HOSTS, workdir)
    proxy = None
    try:
        check_machine()
        nats_server()
        network.build()
        nats.start()
        proxy = _start_proxy(workdir)
        yield Machine(network, nats, proxy)
    except SetupError as missing:
        pytest.fail(f"the cluster harness cannot set up: {missing}")
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait(10)
        nats.stop()
        network.tear_down()


@dataclass
class ShopCluster:
    """The shop on the three hosts, for one test."""

    machine: Machine
    deployment: Deployment
    stores: Stores
    stream: str
    workdir: Path


@pytest.fixture
def layout() -> Layout:
    """Which roles run where; a module overrides it to run other projectors (partitioned
    ones, say) on the same hosts."""
    return Layout()


@pytest.fixture
def shop(machine: Machine, pg_databases: PostgresDatabases, tmp_path: Path,
         layout: Layout) -> Iterator[ShopCluster]:
    """The shop deployed on fresh databases and a fresh stream of 3 replicas."""
    machine.heal()
    write, read = pg_databases.create("pjcw"), pg_databases.create("pjcr")
    stream = f"CLUSTER_{uuid.uuid4().hex[:10].upper()}"
    events = f"{machine.nats.urls}?stream={stream}&replicas=3"
    deployment = Deployment(HOSTS, tmp_path, write_url=write, read_url=read,
                            events_url=events, layout=layout)
    stores = Stores(write, read)
    try:
        deployment.start()
        yield ShopCluster(machine, deployment, stores, stream, tmp_path)
    finally:
        deployment.stop()
        stores.dispose()
        with contextlib.suppress(Exception):
            machine.nats.delete_stream(stream)

