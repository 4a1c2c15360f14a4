"""Partitioned projections: split by stream, each partition checkpointed and leased, shared
fairly by projector processes, and the same read model as one runner builds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    Command,
    ConfigurationError,
    Event,
    Projection,
    Runtime,
    UnitOfWork,
)
from projectionist.projections.partitions import PartitionedRunner
from projectionist.readstore.partitions import (
    MAX_PARTITIONS,
    Partition,
    PartitionCheckpoints,
    partition_of,
)
from tests.helpers import wait_for

STREAMS = 24


class Deposit(Command):
    account: str
    cents: int


class Deposited(Event):
    account: str
    cents: int


def bank(partitions: int, version: int = 1) -> App:
    """Accounts (a document per stream) and one shared total row, changed by increments."""
    app = App("bank")
    app.refuse_negative = True  # type: ignore[attr-defined]
    app.delay_s = 0.0  # type: ignore[attr-defined]
    balances = Projection("balances", version, partitions=partitions)
    accounts = balances.documents("accounts")
    totals = balances.table(
        "totals",
        sa.Column("bank", sa.String, primary_key=True),
        sa.Column("deposits", sa.Integer, nullable=False),
        sa.Column("cents", sa.BigInteger, nullable=False),
    )

    @balances.on(Deposited)
    def deposited(event: Deposited, ctx: ApplyContext) -> None:
        if event.cents < 0 and app.refuse_negative:
            raise ValueError(f"a negative deposit of {event.cents}")
        time.sleep(app.delay_s)
        doc = ctx[accounts].get(event.account) or {"deposits": 0, "cents": 0}
        doc = {"deposits": doc["deposits"] + 1, "cents": doc["cents"] + event.cents}
        ctx[accounts].put(event.account, doc)
        ctx.increment(totals, {"bank": "all"}, deposits=1, cents=event.cents)

    app.projection(balances)

    @app.command(Deposit)
    def deposit(command: Deposit, uow: UnitOfWork) -> None:
        uow.record(f"account-{command.account}", Deposited(**command.model_dump()))

    return app


def deposits(count: int, offset: int = 0) -> list[Deposit]:
    return [
        Deposit(account=f"a{(offset + i) % STREAMS}", cents=offset + i + 1) for i in range(count)
    ]


def expected(commands: list[Deposit]) -> dict[str, dict[str, int]]:
    accounts: dict[str, dict[str, int]] = {}
    for c in commands:
        doc = accounts.setdefault(c.account, {"deposits": 0, "cents": 0})
        doc["deposits"] += 1
        doc["cents"] += c.cents
    return accounts


def position(runtime: Runtime) -> int:
    """The position answers state for the projection: its serving build's checkpoint."""
    with runtime.read_store.read() as connection:
        return runtime.checkpoints.active(connection, ["balances"])["balances"].position


def read_back(runtime: Runtime, app: App) -> tuple[dict[str, Any], tuple[int, int]]:
    projection = app.projections["balances"]
    with runtime.read_store.read() as connection:
        active = runtime.checkpoints.active(connection, ["balances"])["balances"]
        docs = projection.collections["accounts"].physical(active.generation)
        rows = connection.execute(sa.select(docs.c.key, docs.c.doc)).fetchall()
        totals = projection.tables["totals"].physical(active.generation)
        total = connection.execute(sa.select(totals.c.deposits, totals.c.cents)).one()
    import json

    return {key: json.loads(doc) for key, doc in rows}, (total[0], total[1])


@pytest.fixture
def urls(schema_store_urls: tuple[str, str]) -> tuple[str, str]:
    return schema_store_urls


def runtime_of(app: App, urls: tuple[str, str], **options: Any) -> Runtime:
    runtime = Runtime(app, store=urls[0], read_store=urls[1], **options)
    runtime.install()
    return runtime


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for runtime in made:
        runtime.stop()


def test_partition_of_is_stable_and_spreads() -> None:
    # CRC-32: the same in every process (Python's hash() of a str is not).
    assert partition_of("account-a1", 4) == partition_of("account-a1", 4)
    assert {partition_of(f"s{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert Partition(2, 4).holds("x") == (partition_of("x", 4) == 2)


@pytest.mark.parametrize("count", [0, -1, MAX_PARTITIONS + 1, 2.0, True, "4"])
def test_a_bad_partition_count_is_refused(count: Any) -> None:
    with pytest.raises(ConfigurationError, match="partitions of projection 'p'"):
        Projection("p", partitions=count)


def test_a_partitioned_build_equals_the_unpartitioned_one(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    commands = deposits(120)
    app = bank(partitions=4)
    runtime = runtime_of(app, urls)
    runtimes.append(runtime)
    for command in commands:
        runtime.execute(command)
    runtime.catch_up()
    docs, total = read_back(runtime, app)
    assert docs == expected(commands)
    assert total == (120, sum(c.cents for c in commands))
    # Each partition checkpoint reached the head; the build's row holds the lowest.
    with runtime.read_store.read() as connection:
        parts = PartitionCheckpoints().all(connection, "balances", 1)
        build = runtime.checkpoints.load(connection, "balances", 1)
    assert [p.partition for p in parts] == [0, 1, 2, 3]
    assert build is not None and build.position == runtime.head() == min(p.position for p in parts)


def test_live_partitions_apply_and_queries_wait_for_all_of_them(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    app = bank(partitions=3)
    runtime = runtime_of(app, urls, poll_interval_s=0.05)
    runtimes.append(runtime)
    runtime.start()
    commands = deposits(60)
    last = 0
    for command in commands:
        last = runtime.execute(command).position
    wait_for(lambda: position(runtime) >= last)
    docs, total = read_back(runtime, app)
    assert docs == expected(commands)
    assert total[0] == 60


def test_two_processes_share_the_partitions_and_one_takes_over_when_the_other_dies(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    options = {"poll_interval_s": 0.05, "lease_ttl_s": 1.0}
    app_a, app_b = bank(partitions=4), bank(partitions=4)
    a = runtime_of(app_a, urls, roles="command,projector", **options)
    b = runtime_of(app_b, urls, roles="projector", **options)
    runtimes.extend([a, b])
    a.start()
    b.start()

    def held(runtime: Runtime) -> int:
        runner = next(iter(runtime.projector.runners.values()))
        assert isinstance(runner, PartitionedRunner)
        return sum(1 for p in runner.parts if runner.coordinator.leases.holds(p.lease_name))

    wait_for(lambda: held(a) == 2 and held(b) == 2, timeout_s=20)
    # Status names each partition's owner: two processes, two partitions each.
    status = next(s for s in a.status() if s.name == "balances")
    owners = [p["owner"] for p in status.to_json()["partitions"]]
    assert [p["partition"] for p in status.to_json()["partitions"]] == [0, 1, 2, 3]
    assert sorted(owners.count(o) for o in set(owners)) == [2, 2]
    assert set(owners) == {a.leases.owner, b.leases.owner}
    first = deposits(80)
    for command in first:
        a.execute(command)
    wait_for(lambda: position(a) >= a.head())
    b.stop()  # gives its leases back: a takes them all
    wait_for(lambda: held(a) == 4, timeout_s=20)
    second = deposits(40, offset=80)
    for command in second:
        a.execute(command)
    wait_for(lambda: position(a) >= a.head())
    docs, total = read_back(a, app_a)
    assert docs == expected(first + second)  # nothing lost, nothing applied twice
    assert total == (120, sum(c.cents for c in first + second))


def test_concurrent_partitions_keep_shared_increments_exact(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    # Four projector processes (runtimes), one partition each, all incrementing one row.
    options = {"poll_interval_s": 0.02, "lease_ttl_s": 2.0}
    apps = [bank(partitions=4) for _ in range(4)]
    writer = runtime_of(apps[0], urls, roles="command", **options)
    runtimes.append(writer)
    projectors = [runtime_of(app, urls, roles="projector", **options) for app in apps]
    runtimes.extend(projectors)
    commands = deposits(200)
    done = threading.Event()

    def write() -> None:
        for command in commands:
            writer.execute(command)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    for projector in projectors:
        projector.start()
    thread.join()
    head = writer.head()
    wait_for(lambda: position(projectors[0]) >= head, timeout_s=60)
    docs, total = read_back(projectors[0], apps[0])
    assert docs == expected(commands)
    assert total == (200, sum(c.cents for c in commands))


def test_changing_the_partition_count_needs_a_new_version(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    runtime = runtime_of(bank(partitions=2), urls)
    runtimes.append(runtime)
    for command in deposits(10):
        runtime.execute(command)
    runtime.catch_up()
    for count in (3, 1):
        other = Runtime(bank(partitions=count), store=urls[0], read_store=urls[1])
        runtimes.append(other)
        with pytest.raises(ConfigurationError, match="new version of the projection"):
            other.install()
            other.catch_up()
    # A new version rebuilds beside the old one with the new count, and swaps in.
    rebuilt = Runtime(bank(partitions=3, version=2), store=urls[0], read_store=urls[1])
    runtimes.append(rebuilt)
    rebuilt.install()
    rebuilt.catch_up()
    docs, total = read_back(rebuilt, bank(partitions=3, version=2))
    assert docs == expected(deposits(10))
    assert total[0] == 10
    status = {s.name: s for s in rebuilt.status()}
    assert status["balances"].version == 2


class CountingReads:
    """The log, counting the reads made of it."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.reads = 0

    def read(self, after: int, limit: int) -> Any:
        self.reads += 1
        return self.source.read(after, limit)

    def head(self) -> int:
        return int(self.source.head())


def test_the_partitions_of_a_build_read_each_batch_of_the_log_once(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    app = bank(partitions=4)
    runtime = runtime_of(app, urls, batch_size=1000)
    runtimes.append(runtime)
    runtime.catch_up()
    runner = next(iter(runtime.projector.runners.values()))
    assert isinstance(runner, PartitionedRunner) and runner.reads is not None
    counting = CountingReads(runner.reads.source)
    runner.reads.source = counting
    commands = deposits(40)
    for command in commands:
        runtime.execute(command)
    result = runner.run_once()
    # Four partitions at one position: one read of the batch, shared.
    assert counting.reads == 1
    assert result.applied == 40 and result.caught_up
    docs, _ = read_back(runtime, app)
    assert docs == expected(commands)


def test_a_poison_event_parks_its_stream_in_its_partition_and_the_rest_goes_on(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    app = bank(partitions=4)
    runtime = runtime_of(app, urls)
    runtimes.append(runtime)
    good = deposits(48)
    poison = Deposit(account="a5", cents=-7)
    after = Deposit(account="a5", cents=100)  # same stream: waits behind the poison
    for command in [*good[:24], poison, after, *good[24:]]:
        runtime.execute(command)
    runtime.catch_up()
    letters = runtime.list_dead_letters("balances")
    # The poison, then every later event of its stream (ours, and a5's among the good ones).
    assert [(letter.stream, letter.reason) for letter in letters] == [
        ("account-a5", "failed"),
        ("account-a5", "waiting"),
        ("account-a5", "waiting"),
    ]
    docs, total = read_back(runtime, app)
    # Every other stream is whole; a5 lacks the parked pair and nothing after it.
    assert {k: v for k, v in docs.items() if k != "a5"} == {
        k: v for k, v in expected(good).items() if k != "a5"
    }
    assert docs["a5"] == expected(good[:24])["a5"]
    assert position(runtime) == runtime.head()
    status = next(s for s in runtime.status() if s.name == "balances")
    assert status.dead_letters == 3
    # Fixed: the retry applies all three, in stream order.
    app.refuse_negative = False  # type: ignore[attr-defined]
    assert runtime.retry_dead_letters("balances") == (3, 0)
    docs, total = read_back(runtime, app)
    assert docs == expected([*good, poison, after])
    assert total[0] == len(good) + 2


def test_partitions_without_events_of_their_own_move_on_together(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    app = bank(partitions=4)
    runtime = runtime_of(app, urls)
    runtimes.append(runtime)
    runtime.catch_up()
    runner = next(iter(runtime.projector.runners.values()))
    store = runtime.read_store
    transactions: list[int] = []
    write = store.write

    def counted(**options: Any) -> Any:
        transactions.append(1)
        return write(**options)

    store.write = counted  # type: ignore[method-assign]
    last = runtime.execute(deposits(1)[0]).position
    result = runner.run_once()
    # One transaction applies the event in its partition; one moves the three others on.
    assert len(transactions) == 2
    assert result.applied == 1 and result.position == last
    with runtime.read_store.read() as connection:
        parts = PartitionCheckpoints().all(connection, "balances", 1)
    assert [p.position for p in parts] == [last] * 4


def test_a_process_started_a_moment_later_gets_its_share(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    # Lease time 3 s: a process that waited for the count to hold would wait 9 s.
    options = {"poll_interval_s": 0.05, "lease_ttl_s": 3.0}
    a = runtime_of(bank(partitions=4), urls, roles="projector", **options)
    runtimes.append(a)
    a.start()
    wait_for(lambda: bool(a.projector.runners))
    runner = next(iter(a.projector.runners.values()))
    assert isinstance(runner, PartitionedRunner)
    leases = runner.coordinator.leases
    wait_for(lambda: sum(leases.holds(p.lease_name) for p in runner.parts) == 4)
    b = runtime_of(bank(partitions=4), urls, roles="projector", **options)
    runtimes.append(b)
    b.start()
    # The first process had only just started: it gives two back without waiting.
    wait_for(lambda: sum(leases.holds(p.lease_name) for p in runner.parts) == 2, timeout_s=8.0)


def test_a_step_longer_than_the_lease_ttl_lets_no_lease_of_the_process_lapse(
    urls: tuple[str, str], runtimes: list[Runtime]
) -> None:
    """Each batch of two holds an event of each partition and each takes 0.6 s to apply (a
    slow handler), so one step of the build outlasts the 0.9 s lease: between its partitions
    the process extends every lease it holds. A rival asking for each lease all along gets
    none."""
    from projectionist.readstore.leases import Leases

    app = bank(partitions=2)
    app.delay_s = 0.6  # type: ignore[attr-defined]
    tally = Projection("tally")
    counts = tally.documents("counts")

    @tally.on(Deposited)
    def counted(event: Deposited, ctx: ApplyContext) -> None:
        doc = ctx[counts].get("all") or {"n": 0}
        ctx[counts].put("all", {"n": doc["n"] + 1})

    app.projection(tally)
    a = runtime_of(app, urls, roles="command,projector", poll_interval_s=0.05,
                   lease_ttl_s=0.9, batch_size=2)
    runtimes.append(a)
    a.start()
    assert a.leases is not None
    held = a.leases
    wait_for(lambda: len(held.owners()) == 4, what="the process leasing both builds")
    names = list(held.owners())
    rival = Leases(a.read_store, owner="rival", ttl_s=0.9)
    by_partition = {partition_of(f"account-a{i}", 2): f"a{i}" for i in range(STREAMS)}
    for i in range(16):  # streams of both partitions
        a.execute(Deposit(account=by_partition[i % 2], cents=1))
    taken = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        taken += [name for name in names if rival.take(name)]
        time.sleep(0.03)
    assert position(a) < a.head(), "the slow build was not running all along"
    assert taken == []
