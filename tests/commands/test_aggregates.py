"""Event-sourced aggregates: state folded from their stream, saves guarded by the loaded version."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import Connection

from projectionist import (
    SYSTEM,
    Aggregate,
    App,
    Command,
    ConcurrencyError,
    Event,
    Refused,
    Runtime,
    UnitOfWork,
    applies,
)


class Opened(Event):
    owner: str


class Deposited(Event):
    amount: int


class Withdrawn(Event):
    amount: int


class Account(Aggregate):
    """A bank account whose balance is the sum of its stream."""

    stream_prefix = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner: str | None = None
        self.balance = 0

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        self.owner = event.owner

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    @applies(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount


class Frozen(Event):
    reason: str


class FreezableAccount(Account):
    """An account that can also be frozen: its event types add to those of Account."""

    @applies(Frozen)
    def _frozen(self, event: Frozen) -> None:
        self.balance = 0


class Open(Command):
    account_id: str
    owner: str


class Deposit(Command):
    account_id: str
    amount: int


class Withdraw(Command):
    account_id: str
    amount: int


class Transfer(Command):
    source: str
    target: str
    amount: int


def bank_app() -> App:
    """A new App of accounts; it lists no event types, so only the aggregate names them."""
    app = App("bank")

    @app.command(Open)
    def open_account(command: Open, uow: UnitOfWork) -> None:
        account = uow.load(Account, command.account_id)
        if account.version:
            raise Refused(f"account {command.account_id} is already open")
        account.record(Opened(owner=command.owner))
        uow.save(account)

    @app.command(Deposit)
    def deposit(command: Deposit, uow: UnitOfWork) -> None:
        account = uow.load(Account, command.account_id)
        account.record(Deposited(amount=command.amount))
        uow.save(account)

    @app.command(Withdraw)
    def withdraw(command: Withdraw, uow: UnitOfWork) -> None:
        account = uow.load(Account, command.account_id)
        if account.balance < command.amount:
            raise Refused(f"account {command.account_id} holds only {account.balance}")
        account.record(Withdrawn(amount=command.amount))
        uow.save(account)

    @app.command(Transfer)
    def transfer(command: Transfer, uow: UnitOfWork) -> None:
        source = uow.load(Account, command.source)
        target = uow.load(Account, command.target)
        source.record(Withdrawn(amount=command.amount))
        target.record(Deposited(amount=command.amount))
        uow.save(source)
        uow.save(target)

    assert "Deposited" not in app.registry
    return app


@contextmanager
def bank(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """A runtime of a new bank App over the stores; stopped at the end of the block."""
    write, read = store_urls
    runtime = Runtime(bank_app(), store=write, read_store=read)
    try:
        runtime.install()
        yield runtime
    finally:
        runtime.stop()


def unit_of_work(runtime: Runtime, connection: Connection) -> UnitOfWork:
    assert runtime.log is not None
    return UnitOfWork(connection, runtime.log, runtime.app.registry, command_id="test",
                      correlation_id="test", principal=SYSTEM)


def load(runtime: Runtime, account_id: str) -> Account:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        return unit_of_work(runtime, connection).load(Account, account_id)


def stream_events(runtime: Runtime) -> list[tuple[str, str, int]]:
    assert runtime.log is not None
    return [(e.stream, e.type, e.version) for e in runtime.log.read(0, 1000)]


def test_an_aggregate_lists_the_event_types_its_appliers_name() -> None:
    assert set(Account.event_types) == {Opened, Deposited, Withdrawn}
    assert set(FreezableAccount.event_types) == {Opened, Deposited, Withdrawn, Frozen}
    assert Aggregate.event_types == ()


def test_load_folds_the_stream_into_the_state_and_the_version(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        runtime.execute(Deposit(account_id="a", amount=100))
        runtime.execute(Withdraw(account_id="a", amount=30))
        runtime.execute(Open(account_id="b", owner="bob"))

        account = load(runtime, "a")
        assert (account.owner, account.balance, account.version) == ("ann", 70, 3)
        assert account.pending == []
        assert account.stream == "account-a"
        other = load(runtime, "b")
        assert (other.owner, other.balance, other.version) == ("bob", 0, 1)
        unknown = load(runtime, "nobody")
        assert (unknown.owner, unknown.balance, unknown.version) == (None, 0, 0)


def test_save_appends_the_recorded_events_after_the_loaded_version(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        result = runtime.execute(Transfer(source="a", target="b", amount=5))
        assert [(e.stream, e.type, e.version) for e in result.events] == [
            ("account-a", "Withdrawn", 2), ("account-b", "Deposited", 1)]
        assert (load(runtime, "a").balance, load(runtime, "b").balance) == (-5, 5)


def test_save_of_an_aggregate_without_new_events_records_nothing(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        assert runtime.store is not None
        with runtime.store.write() as connection:
            unit = unit_of_work(runtime, connection)
            account = unit.load(Account, "a")
            unit.save(account)
            assert unit.pending == []
            assert unit.flush() == []
        assert account.version == 1
        assert runtime.head() == 1


def test_a_handler_decides_on_the_state_folded_from_earlier_commands(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        runtime.execute(Deposit(account_id="a", amount=10))
        with pytest.raises(Refused, match="account a holds only 10"):
            runtime.execute(Withdraw(account_id="a", amount=11))
        with pytest.raises(Refused, match="already open"):
            runtime.execute(Open(account_id="a", owner="someone else"))
        assert stream_events(runtime) == [("account-a", "Opened", 1),
                                          ("account-a", "Deposited", 2)]


def test_of_two_units_that_loaded_an_aggregate_at_one_version_the_second_fails_to_commit(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        runtime.execute(Deposit(account_id="a", amount=100))
        assert runtime.store is not None
        with runtime.store.write() as connection:
            first, second = unit_of_work(runtime, connection), unit_of_work(runtime, connection)
            mine, theirs = first.load(Account, "a"), second.load(Account, "a")
            assert mine.version == theirs.version == 2
            mine.record(Deposited(amount=5))
            first.save(mine)
            first.flush()
            theirs.record(Withdrawn(amount=100))
            second.save(theirs)
            # The savepoint keeps the first unit's append when the second one's fails.
            savepoint = connection.begin_nested()
            with pytest.raises(ConcurrencyError) as raised:
                second.flush()
            savepoint.rollback()
        assert raised.value.status == 409
        assert raised.value.stream == "account-a"
        assert not raised.value.retryable
        assert stream_events(runtime) == [("account-a", "Opened", 1),
                                          ("account-a", "Deposited", 2),
                                          ("account-a", "Deposited", 3)]
        assert load(runtime, "a").balance == 105


def test_a_handler_saving_two_copies_of_one_aggregate_is_refused_with_409_and_writes_nothing(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        with pytest.raises(ConcurrencyError) as raised:
            runtime.execute(Transfer(source="a", target="a", amount=5))
        assert raised.value.status == 409
        assert raised.value.detail == "stream 'account-a' is at version 2, expected version 1"
        assert stream_events(runtime) == [("account-a", "Opened", 1)]


def test_concurrent_commands_on_one_aggregate_lose_no_update(
    store_urls: tuple[str, str],
) -> None:
    """Commands batched into one transaction load the same version; the batch's append
    conflicts, and each command runs again by itself on the state the others left."""
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        start = threading.Barrier(8)
        failures: list[BaseException] = []

        def deposit(amount: int) -> None:
            start.wait()
            try:
                runtime.execute(Deposit(account_id="a", amount=amount))
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=deposit, args=(2**n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert [version for _, _, version in stream_events(runtime)] == list(range(1, 10))
        account = load(runtime, "a")
        assert (account.balance, account.version) == (255, 9)


def test_an_aggregate_loads_after_a_restart_without_listing_its_event_types(
    store_urls: tuple[str, str],
) -> None:
    with bank(store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
        runtime.execute(Deposit(account_id="a", amount=100))

    with bank(store_urls) as restarted:
        result = restarted.execute(Withdraw(account_id="a", amount=40))
        assert [(e.type, e.version) for e in result.events] == [("Withdrawn", 3)]
        account = load(restarted, "a")
        assert (account.owner, account.balance, account.version) == ("ann", 60, 3)
