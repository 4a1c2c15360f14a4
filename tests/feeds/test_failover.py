"""A feed across a NATS cluster: the client fails over between the cluster's servers, and a
projector that cannot read its feed gives its leases back so that one that can takes over."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from projectionist import Runtime
from projectionist.errors import ConfigurationError, StoreUnavailable
from projectionist.feeds.jetstream import JetStream
from projectionist.feeds.jetstream_url import parse
from projectionist.projections.coordination import Claim, Coordinator
from projectionist.readstore.leases import Leases
from projectionist.stores import Store
from tests.feeds.test_feeds import UNREACHABLE_STORE
from tests.helpers import wait_for
from tests.notes import AddNotes, CountNotes, Notes


def test_an_events_url_names_every_server_of_a_cluster() -> None:
    address = parse("nats://a:4222,u:p@b,nats://c:5222?stream=S1&replicas=3")
    assert address.servers == ("nats://a:4222", "nats://u:p@b", "nats://c:5222")
    assert address.shown == "nats://a:4222,b:4222,c:5222"  # no credentials in messages
    assert (address.stream, address.replicas) == ("S1", 3)
    assert parse("tls://a?stream=S").replicas == 1


def test_the_credentials_of_an_events_url_serve_every_server_of_the_cluster() -> None:
    address = parse("nats://shop:s%40cret@a:4222,b:4222,shop:s%40cret@c")
    assert (address.user, address.password) == ("shop", "s@cret")
    assert "cret" not in address.shown
    token = parse("nats://t0ken@a:4222")
    assert (token.user, token.password) == ("t0ken", None)
    assert (parse("nats://a,b").user, parse("nats://a,b").password) == (None, None)


@pytest.mark.parametrize("url, message", [
    ("nats://a:4222,b:x?stream=S", "the server 'b:x' of the events URL"),
    ("nats://a:4222,,b:4222", "the server '' of the events URL"),
    ("nats://a:4222,http://b:4222", "the server 'http://b:4222'"),
    ("nats://a:4222?replicas=9", "replicas='9' .* 1 to 5 copies"),
    ("nats://a:4222?replicas=two", "replicas='two'"),
    ("nats://u:p@a:4222,u:q@b:4222", "give different credentials"),
])
def test_a_bad_server_list_or_replica_count_is_refused_at_start(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JetStream(url)


def test_the_client_fails_over_to_a_server_that_answers(nats_url: str) -> None:
    """The first server refuses connections; the client uses the next one of the list."""
    cluster = nats_url.replace("nats://", "nats://127.0.0.1:1,", 1)
    feed = JetStream(cluster)
    try:
        feed.ensure()
        assert feed.last_position() == 0
        assert "127.0.0.1:1,127.0.0.1:4222" in repr(feed)
    finally:
        feed.close()


def test_a_coordinator_gives_a_lease_back_after_failing_for_a_while(tmp_path: str) -> None:
    store = Store(f"sqlite:///{tmp_path}/read.db")
    leases = Leases(store, ttl_s=60.0)
    leases.install()
    coordinator = Coordinator(leases, give_up_after_s=0.3, stand_down_s=60.0)
    try:
        assert coordinator.claim("p:g1") is Claim.TAKEN
        started = time.monotonic()
        assert not coordinator.failed("p:g1", started)  # one failure is not yet a pattern
        time.sleep(0.35)
        assert coordinator.failed("p:g1", started, ["p:g1:p0"])
        owner, expires_at = leases.owners()["p:g1"]
        assert (owner, expires_at) == (leases.owner, 0)  # free for anyone, at once
        assert coordinator.claim("p:g1") is Claim.WAITING  # standing down
        coordinator.succeeded("p:g1")
    finally:
        store.dispose()


def test_a_projector_that_cannot_read_its_feed_hands_its_lease_to_one_that_can(
    store_urls: tuple[str, str], nats_url: str,
) -> None:
    """The lease lasts 60 s, so only giving it back explains the second projector's takeover
    within seconds."""
    write, read = store_urls
    cut_off = "nats://127.0.0.1:1?stream=NOWHERE"
    writer = Runtime(Notes().app, store=write, read_store=read, roles=["command"],
                     events=nats_url, poll_interval_s=0.05)
    stranded = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read,
                       roles=["projector"], events=cut_off, lease_ttl_s=60.0,
                       poll_interval_s=0.05)
    healthy = Runtime(Notes().app, store=UNREACHABLE_STORE, read_store=read,
                      roles=["projector", "query"], events=nats_url, lease_ttl_s=60.0,
                      poll_interval_s=0.05)
    try:
        writer.start()
        stranded.start()
        assert stranded.leases is not None
        own = stranded.leases.owner
        wait_for(lambda: any(owner == own for owner, _ in stranded.leases.owners().values()),
                 what="the stranded projector taking the lease")
        healthy.start()
        added = writer.execute(AddNotes(stream="a", texts=["x", "y", "z"]))
        answer = healthy.ask(CountNotes(stream="a"), min_position=added.position,
                             wait_ms=20000)
        assert answer.data["count"] == 3
        assert healthy.leases is not None
        # The other build's lease comes back when its own failures have lasted long enough.
        leases = healthy.leases
        wait_for(lambda: {owner for owner, _ in leases.owners().values()} == {leases.owner},
                 what="the healthy projector holding every lease")
    finally:
        healthy.stop()
        stranded.stop()
        writer.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_servers_with_auth(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two routed nats-servers that take clients with a user and password, on free ports."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    assert Path(binary).exists(), "this test needs nats-server"
    clients, routes = [free_port(), free_port()], [free_port(), free_port()]
    servers = []
    logs = []
    for i in range(2):
        command = [binary, "-a", "127.0.0.1", "-p", str(clients[i]), "--user", "shop",
                   "--pass", "pw", "--cluster_name", "pjt", "--cluster",
                   f"nats://127.0.0.1:{routes[i]}", "--routes",
                   f"nats://127.0.0.1:{routes[1 - i]}"]
        logs.append((tmp_path / f"n{i}.log").open("wb"))
        servers.append(subprocess.Popen(command, stdout=logs[-1], stderr=subprocess.STDOUT))
    servers[0].port = clients[0]  # type: ignore[attr-defined]
    servers[1].port = clients[1]  # type: ignore[attr-defined]
    try:
        yield servers
    finally:
        for server, log in zip(servers, logs, strict=True):
            server.kill()
            server.wait()
            log.close()


def test_the_client_reconnects_with_its_credentials_to_a_server_it_learnt_of(
    two_servers_with_auth: list[subprocess.Popen[bytes]],
) -> None:
    """The URL names one server; the cluster tells the client of the other, without
    credentials. When the first dies, the client must log in to the other with the URL's."""
    first, second = two_servers_with_auth
    feed = JetStream(f"nats://shop:pw@127.0.0.1:{first.port}?stream=S")  # type: ignore[attr-defined]

    async def nothing() -> None:
        return None

    try:
        wait_for(lambda: _connects(feed, nothing), timeout_s=10, what="a first connection")
        wait_for(lambda: any(s.port == second.port  # type: ignore[attr-defined]
                             for s in feed.client.discovered_servers),
                 timeout_s=10, what="the cluster telling of its second server")
        first.kill()
        first.wait()
        wait_for(lambda: feed.client.is_connected
                 and feed.client.connected_url.port == second.port,  # type: ignore[attr-defined]
                 timeout_s=10, what="the client logged in to the second server")
    finally:
        feed.close()


def _connects(feed: JetStream, work: Any) -> bool:
    try:
        feed.call(work)
    except StoreUnavailable:
        return False
    return bool(feed.client.is_connected)
