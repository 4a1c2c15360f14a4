"""The PostgreSQL log never lets a reader pass a transaction that can still commit below it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from projectionist import EventMetadata, Runtime
from projectionist.backends import open_event_log
from projectionist.eventlog import EventLog, NewEvent
from projectionist.messages import encode_event
from projectionist.stores import Store
from tests.helpers import wait_for
from tests.postgres.apps import Deposit, Deposited, Ledger, Tally
from tests.postgres.conftest import Admin

WAIT_MS = 15_000


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def runtime(tally: Tally, pg_stores: tuple[str, str]) -> Iterator[Runtime]:
    """Every role, with the projector running live in its thread."""
    write, read = pg_stores
    runtime = Runtime(tally.app, store=write, read_store=read).start()
    yield runtime
    runtime.stop()


@pytest.fixture
def log(pg_stores: tuple[str, str]) -> Iterator[EventLog]:
    """The log through its port, on a store of its own (separate connections)."""
    store = Store(pg_stores[0])
    yield open_event_log(store)
    store.dispose()


def deposited(account: str, amount: int) -> NewEvent:
    command_id = str(uuid.uuid4())
    return NewEvent(
        stream=f"account-{account}", version=1, type=Deposited.type_name,
        schema_version=Deposited.schema_version,
        data=encode_event(Deposited(account=account, amount=amount)),
        metadata=EventMetadata(event_id=str(uuid.uuid4()), command_id=command_id,
                               correlation_id=command_id).to_json(),
        recorded_at=time.time(),
    )


def ledger(runtime: Runtime, position: int) -> dict[str, Any]:
    """The ledger once the projector applied `position`."""
    data: dict[str, Any] = runtime.ask(Ledger(), min_position=position, wait_ms=WAIT_MS).data
    return data


def applied_position(runtime: Runtime) -> int:
    return min(row.position for row in runtime.status() if row.active)


def waits_for_a_lock(admin: Admin, backend_pid: int) -> bool:
    return bool(admin.value("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted",
                            pid=backend_pid))


def test_an_open_append_holds_back_later_writers_readers_and_the_projector(
    runtime: Runtime, log: EventLog, admin: Admin
) -> None:
    history = [runtime.execute(Deposit(account="base", amount=1)).position for _ in range(3)]
    assert ledger(runtime, history[-1])["positions"] == history

    a_appended, a_release = threading.Event(), threading.Event()
    b_began, b_committed = threading.Event(), threading.Event()
    result: dict[str, int] = {}

    def writer_a() -> None:
        with log.store.write() as connection:
            [result["a"]] = log.append(connection, [deposited("a", 5)])
            a_appended.set()
            assert a_release.wait(30)

    def writer_b() -> None:
        with log.store.write() as connection:
            result["b_backend"] = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            b_began.set()
            [result["b"]] = log.append(connection, [deposited("b", 7)])
        b_committed.set()

    a = threading.Thread(target=writer_a)
    b = threading.Thread(target=writer_b)
    a.start()
    try:
        assert a_appended.wait(10)
        b.start()
        assert b_began.wait(10)
        wait_for(lambda: b_committed.is_set() or waits_for_a_lock(admin, result["b_backend"]),
                 what="writer B committing or waiting")

        # A has a position and is open. Readers and the projector stay below A.
        deadline = time.monotonic() + 1.2  # more than two polls of the projector
        while time.monotonic() < deadline:
            seen = [event.position for event in log.read(0, 100)]
            assert all(position < result["a"] for position in seen), (
                f"a reader saw {seen} while position {result['a']} was uncommitted")
            assert seen == history
            assert log.head() == history[-1]
            time.sleep(0.05)
        assert applied_position(runtime) == history[-1]
        # With the append lock, B waits for A instead of committing past it.
        assert not b_committed.is_set()
        assert waits_for_a_lock(admin, result["b_backend"])
    finally:
        a_release.set()
        a.join(10)
        b.join(10)

    assert history[-1] < result["a"] < result["b"]
    final = ledger(runtime, result["b"])
    assert final["positions"] == [*history, result["a"], result["b"]]
    assert final["balances"] == {"base": 3, "a": 5, "b": 7}
    assert [event.position for event in log.read(0, 100)] == final["positions"]


@pytest.fixture
def other_writer(tally: Tally, pg_stores: tuple[str, str]) -> Iterator[Runtime]:
    """A second command-only runtime, as another command process would be."""
    write, read = pg_stores
    other = Runtime(tally.app, store=write, read_store=read, roles=["command"])
    yield other
    other.stop()


def test_a_transaction_older_than_a_committed_append_is_not_skipped(
    runtime: Runtime, other_writer: Runtime, tally: Tally, log: EventLog
) -> None:
    """A writes the write model first (so its transaction id is older), B appends and commits,
    then A appends: a reader in between saw B and must still get A."""
    first = runtime.execute(Deposit(account="base", amount=1)).position
    result: dict[str, Any] = {}

    with tally.gate("a") as gate_a:
        a = threading.Thread(target=lambda: result.update(
            a=runtime.execute(Deposit(account="a", amount=5))))
        a.start()
        assert gate_a.entered.wait(10)

        with tally.gate("b") as gate_b:
            gate_b.release.set()  # B only records its transaction id
            b = other_writer.execute(Deposit(account="b", amount=7))
        assert gate_a.transaction_id is not None and gate_b.transaction_id is not None
        assert gate_a.transaction_id < gate_b.transaction_id

        # Between the two commits: readers and the projector see B, and A is still open.
        between = ledger(runtime, b.position)
        assert between["positions"] == [first, b.position]
        assert [event.position for event in log.read(0, 100)] == [first, b.position]
        assert a.is_alive()
    a.join(10)

    assert result["a"].position > b.position
    final = ledger(runtime, result["a"].position)
    assert final["positions"] == [first, b.position, result["a"].position]
    assert final["balances"] == {"base": 1, "a": 5, "b": 7}
    logged = [event.position for event in log.read(0, 100)]
    assert logged == final["positions"]
    with log.store.read() as connection:
        balances = dict(connection.exec_driver_sql("SELECT account, total FROM balances").all())
    assert balances == final["balances"]
