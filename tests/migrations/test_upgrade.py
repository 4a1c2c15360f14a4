"""Upgrading stores made by the release before `projectionist_schema`, with their data."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from projectionist import ConfigurationError, Runtime
from projectionist.engines import redact
from projectionist.migrations import CURRENT, EARLIEST, Plan, StoreKind, UpgradeMode, upgrade
from projectionist.stores import Store
from tests.migrations.conftest import FIXTURES, load_sql
from tests.migrations.ledger import Deposit, GetBalance, create_app


def started(write: str, read: str, **options: str) -> None:
    """Starts the ledger on the stores (installs, and so upgrades), then stops it."""
    runtime = Runtime(create_app(), store=write, read_store=read, **options)
    try:
        runtime.install()
    finally:
        runtime.stop()


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    store = Store(url, pool_size=1)
    try:
        with store.read() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(sql)]
    finally:
        store.dispose()


def versions(url: str) -> dict[str, int]:
    return {str(kind): int(version)  # type: ignore[call-overload]
            for kind, version in rows(url, "SELECT store, version FROM projectionist_schema")}


def has_table(url: str, name: str) -> bool:
    store = Store(url, pool_size=1)
    try:
        with store.read() as connection:
            return sa.inspect(connection).has_table(name)
    finally:
        store.dispose()


@pytest.fixture
def ledger(old_stores: tuple[str, str]) -> Iterator[Runtime]:
    """The ledger on its old stores, started: the upgrade has run."""
    write, read = old_stores
    runtime = Runtime(create_app(), store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


def test_the_fixtures_hold_the_previous_layout(old_stores: tuple[str, str]) -> None:
    write, read = old_stores
    assert not has_table(write, "projectionist_schema")
    assert not has_table(read, "projectionist_schema")
    store = Store(read, pool_size=1)
    with store.read() as connection:
        columns = [c["name"] for c in sa.inspect(connection).get_columns(
            "projectionist_projections")]
    store.dispose()
    assert "dead_letters" not in columns
    assert "epoch" in columns


def test_a_start_upgrades_both_stores_to_this_release(
    ledger: Runtime, old_stores: tuple[str, str]
) -> None:
    write, read = old_stores
    assert versions(write) == {"write": CURRENT}
    assert versions(read) == {"read": CURRENT}
    counted = rows(read, "SELECT name, generation, dead_letters FROM projectionist_projections"
                         " ORDER BY name")
    assert counted == [("accounts", 1, 2), ("balances", 2, 0)]


def test_the_upgraded_stores_keep_their_events_checkpoints_and_dead_letters(
    ledger: Runtime,
) -> None:
    assert ledger.log is not None
    stored = ledger.log.read(0, 100)
    assert [(e.position, e.stream, e.version) for e in stored] == [
        (1, "account-a1", 1), (2, "account-a2", 1), (3, "account-a1", 2),
        (4, "account-a1", 3), (5, "account-a3", 1)]
    decoded = ledger.app.registry.decode_event(stored[0].type, stored[0].schema_version,
                                               stored[0].data)
    assert decoded == ledger.app.registry.get("Deposited").model_validate(
        {"account": "a1", "amount": 100})
    status = {s.name: s for s in ledger.status()}
    assert (status["balances"].position, status["balances"].generation) == (5, 2)
    assert (status["accounts"].position, status["accounts"].dead_letters) == (5, 2)
    parked = ledger.list_dead_letters("accounts")
    assert [(d.position, d.reason) for d in parked] == [(3, "failed"), (4, "waiting")]
    answer = ledger.ask(GetBalance(account="a1"))
    assert answer.data["total"] == 120
    assert answer.freshness.dead_letters == 2


def test_projections_continue_from_their_checkpoints_after_the_upgrade(ledger: Runtime) -> None:
    result = ledger.execute(Deposit(account="a2", amount=10))
    assert result.position == 6
    assert ledger.catch_up() == 2  # the new event, once per projection: nothing replayed
    answer = ledger.ask(GetBalance(account="a2"))
    assert answer.data == {"total": 60, "doc": {"account": "a2", "last": 10}}
    assert answer.freshness.position == 6


def test_stored_idempotency_answers_are_still_given_after_the_upgrade(
    ledger: Runtime, old_stores: tuple[str, str]
) -> None:
    [(response,)] = rows(old_stores[0], "SELECT response FROM projectionist_idempotency")
    again = ledger.execute(Deposit(account="a3", amount=5), idempotency_key="deposit-a3")
    assert again.command_id == json.loads(str(response))["command_id"]
    assert ledger.head() == 5  # answered from the store: nothing appended


def test_a_rebuild_after_the_upgrade_takes_a_generation_never_given(ledger: Runtime) -> None:
    assert ledger.rebuild("balances").generation == 3


def test_generations_are_recorded_for_a_store_older_than_their_table(
    backend: str, new_stores: Callable[[], tuple[str, str]]
) -> None:
    _, read = new_stores()
    load_sql(read, FIXTURES / f"v2-{backend}-read.sql")
    store = Store(read, pool_size=1)
    try:
        with store.write() as connection:  # back to the layout of version 1
            connection.exec_driver_sql("DROP TABLE projectionist_generations")
        done = upgrade(store, StoreKind.READ)
    finally:
        store.dispose()
    assert (done.found, done.to) == (EARLIEST, CURRENT)
    assert rows(read, "SELECT name, last FROM projectionist_generations ORDER BY name") == [
        ("accounts", 1), ("balances", 2)]


def test_new_stores_start_at_this_release_and_a_second_start_changes_nothing(
    new_stores: Callable[[], tuple[str, str]],
) -> None:
    write, read = new_stores()
    started(write, read)
    first = rows(read, "SELECT store, version, upgraded_at FROM projectionist_schema")
    started(write, read, upgrade="refuse")
    assert versions(write) == {"write": CURRENT}
    assert rows(read, "SELECT store, version, upgraded_at FROM projectionist_schema") == first


def test_one_database_as_both_stores_records_a_version_for_each(
    new_stores: Callable[[], tuple[str, str]],
) -> None:
    write, _ = new_stores()
    started(write, write)
    assert versions(write) == {"write": CURRENT, "read": CURRENT}


def test_a_store_newer_than_this_release_is_refused_in_one_line(
    new_stores: Callable[[], tuple[str, str]],
) -> None:
    write, read = new_stores()
    started(write, read)
    store = Store(read, pool_size=1)
    with store.write() as connection:
        connection.exec_driver_sql(f"UPDATE projectionist_schema SET version = {CURRENT + 1}")
    store.dispose()
    with pytest.raises(ConfigurationError) as refused:
        started(write, read)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"the read store {redact(read)} is at schema version {CURRENT + 1},"
                              f" newer than this release of projectionist knows ({CURRENT})")


def test_refuse_mode_names_projectionist_migrate_and_changes_nothing(
    old_stores: tuple[str, str],
) -> None:
    write, read = old_stores
    with pytest.raises(ConfigurationError) as refused:
        started(write, read, upgrade="refuse")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the write store ")
    assert f"is at schema version {EARLIEST} and this release needs {CURRENT}" in message
    assert "run `projectionist migrate`" in message
    assert not has_table(write, "projectionist_schema")
    assert not has_table(read, "projectionist_schema")


def test_an_unknown_upgrade_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="upgrade must be one of 'auto', 'refuse',"
                                                 " got 'sometimes'"):
        Runtime(create_app(), store="sqlite://", upgrade="sometimes")


def test_upgrade_mode_parses_its_values() -> None:
    assert UpgradeMode.parse("refuse") is UpgradeMode.REFUSE


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_upgrades_on_postgresql_run_one_after_the_other(
    old_stores: tuple[str, str],
) -> None:
    _, read = old_stores
    starters = 4
    barrier = threading.Barrier(starters)
    plans: list[Plan] = []
    failures: list[BaseException] = []

    def start() -> None:
        store = Store(read, pool_size=1)
        try:
            barrier.wait()
            plans.append(upgrade(store, StoreKind.READ))
        except BaseException as error:  # reported below, with the others
            failures.append(error)
        finally:
            store.dispose()

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # One upgraded; each of the others waited for the lock, then found the store upgraded.
    assert sorted(plan.found or 0 for plan in plans) == [EARLIEST] + [CURRENT] * (starters - 1)
    assert versions(read) == {"read": CURRENT}
    assert rows(read, "SELECT name, dead_letters FROM projectionist_projections ORDER BY name") \
        == [("accounts", 2), ("balances", 0)]
