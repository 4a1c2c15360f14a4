"""The same Idempotency-Key sent to two command processes at once: one command runs, and both
callers get its answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from projectionist import Runtime
from tests.helpers import wait_for
from tests.postgres.apps import Deposit, Ledger, Tally
from tests.postgres.conftest import Admin, database_name


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def two_command_processes(tally: Tally, pg_stores: tuple[str, str]) -> Iterator[list[Runtime]]:
    write, read = pg_stores
    runtimes = [Runtime(tally.app, store=write, read_store=read, roles=["command"])
                for _ in range(2)]
    yield runtimes
    for runtime in runtimes:
        runtime.stop()


def lock_waiters(admin: Admin, database: str) -> int:
    return int(admin.value(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE a.datname = :database AND NOT l.granted", database=database))


def test_one_key_at_two_command_processes_runs_the_command_once(
    tally: Tally, two_command_processes: list[Runtime], pg_stores: tuple[str, str],
    admin: Admin,
) -> None:
    first, second = two_command_processes
    command = Deposit(account="k", amount=5)
    results: dict[str, Any] = {}

    def send(name: str, runtime: Runtime) -> None:
        try:
            results[name] = runtime.execute(command, idempotency_key="same-key")
        except Exception as error:  # the test reports it below
            results[name] = error

    with tally.gate("k") as gate:
        one = threading.Thread(target=send, args=("first", first))
        one.start()
        assert gate.entered.wait(10)
        # The second caller sends the same request while the first is still running.
        two = threading.Thread(target=send, args=("second", second))
        two.start()
        wait_for(lambda: lock_waiters(admin, database_name(pg_stores[0])) > 0 or not two.is_alive(),
                 what="the second command waiting for the first")
    one.join(10)
    two.join(10)

    assert results["first"] == results["second"], results
    with Runtime(tally.app, store=pg_stores[0], read_store=pg_stores[1]) as runtime:
        runtime.catch_up()
        ledger = runtime.ask(Ledger()).data
        assert ledger["balances"] == {"k": 5}
        assert ledger["positions"] == [results["first"].position]
        assert runtime.head() == results["first"].position
