"""Leases across processes: one projector applies each projection (each partition of a
partitioned one, shared between the projectors); kill -9 one and the other takes over within
the lease's time, without losing or repeating an event."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from projectionist import Runtime
from tests.helpers import wait_for
from tests.postgres.apps import create_audited_shop
from tests.postgres.conftest import Server, Servers
from tests.postgres.shopcheck import (
    ask_runtime,
    assert_read_models_match,
    register_products,
    run_workload,
)

TTL_S = 3.0
APP = "tests.postgres.apps:audited_shop"


@pytest.fixture
def commands(pg_stores: tuple[str, str]) -> Iterator[Runtime]:
    write, read = pg_stores
    runtime = Runtime(create_audited_shop(), store=write, read_store=read, roles=["command"])
    yield runtime
    runtime.stop()


@pytest.fixture
def reader(pg_stores: tuple[str, str]) -> Iterator[Runtime]:
    write, read = pg_stores
    runtime = Runtime(create_audited_shop(), store=write, read_store=read, roles=["query"])
    yield runtime
    runtime.stop()


def lease_owners(read_url: str) -> dict[str, tuple[str, float]]:
    """name -> (owner, seconds left), from the read store's lease table."""
    engine = sa.create_engine(read_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT name, owner, expires_at - extract(epoch FROM clock_timestamp())"
                " FROM projectionist_leases")).all()
    finally:
        engine.dispose()
    # The leases that hand out work: a process's membership in a partitioned build only
    # counts the processes that share it.
    return {name: (owner, float(left)) for name, owner, left in rows if ":members:" not in name}


def held_by(owners: dict[str, tuple[str, float]], server: Server) -> set[str]:
    """The leases `server` holds now (owner ids are host:pid:random)."""
    return {name for name, (owner, left) in owners.items()
            if owner.split(":")[1] == str(server.pid) and left > 0}


def test_killing_the_lease_holder_hands_every_projection_over_within_the_ttl(
    pg_stores: tuple[str, str], servers: Servers, commands: Runtime, reader: Runtime,
) -> None:
    write, read = pg_stores
    app = create_audited_shop()
    # A lease per unpartitioned projection, and one per partition of a partitioned one.
    projections = sum(p.partitions for p in app.projections.values())
    partitioned = {name for name, p in app.projections.items() if p.partitions > 1}
    assert partitioned == {"order_summary"}
    settings = ["--lease-ttl", str(TTL_S)]
    commands.install()
    register_products(commands)

    first = servers.start("pjtest-projector-1", roles="projector", store=write,
                          read_store=read, app=APP, extra=settings)
    wait_for(lambda: len(held_by(lease_owners(read), first)) == projections,
             what="the first projector taking every lease")
    second = servers.start("pjtest-projector-2", roles="projector", store=write,
                           read_store=read, app=APP, extra=settings)

    timeline: list[tuple[float, int]] = []
    stop = threading.Event()

    def keep_commanding() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            run_workload(commands, f"w{seed}", 5, seed)
            timeline.append((time.monotonic(), commands.head()))

    writer = threading.Thread(target=keep_commanding)
    writer.start()
    try:
        # Both run. The partitions of order_summary are shared, two each; every other
        # projection stays with the first (the second waits for leases it cannot take).
        wait_for(lambda: len(held_by(lease_owners(read), second)) == 2,
                 timeout_s=4 * TTL_S, what="the second projector taking its share")
        deadline = time.monotonic() + TTL_S + 1.0
        while time.monotonic() < deadline:
            owners = lease_owners(read)
            assert len(owners) == projections
            seconds = held_by(owners, second)
            assert len(held_by(owners, first)) == projections - 2
            assert len(seconds) == 2
            assert all(name.startswith("order_summary:") for name in seconds)
            time.sleep(0.1)

        first.kill()
        killed_at = time.monotonic()
        wait_for(lambda: len(held_by(lease_owners(read), second)) == projections,
                 timeout_s=4 * TTL_S, what="the second projector taking every lease")
        takeover_s = time.monotonic() - killed_at
        time.sleep(1.0)  # commands keep coming after the takeover
    finally:
        stop.set()
        writer.join(60)

    assert takeover_s < TTL_S + 2.0, f"took {takeover_s:.2f} s"
    assert any(at < killed_at for at, _ in timeline)
    assert any(killed_at < at < killed_at + takeover_s for at, _ in timeline)
    assert any(at > killed_at + takeover_s for at, _ in timeline)

    head = commands.head()
    started = time.monotonic()
    assert_read_models_match(ask_runtime(reader, min_position=head), write, audited=True)
    caught_up_s = time.monotonic() - started
    assert second.running
    print(f"\nfailover: lease ttl {TTL_S} s, takeover {takeover_s:.2f} s after kill -9,"
          f" {head} events, caught up {caught_up_s:.2f} s after the last command")
