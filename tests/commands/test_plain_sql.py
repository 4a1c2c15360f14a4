"""A handler's own plain SQL (`uow.sql`, `uow.sql_many`, and `uow.write`, `uow.write_many`,
whose writes PostgreSQL receives with the next statement or the commit): in the command's
transaction, with its events, on both backends; its errors end a command as SQLAlchemy's do."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    Command,
    Event,
    InvalidMessage,
    Refused,
    Runtime,
    Sql,
    UnitOfWork,
)

tables = sa.MetaData()
accounts = sa.Table(
    "sql_accounts",
    tables,
    sa.Column("account_id", sa.String(16), primary_key=True),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.CheckConstraint("balance >= 0", name="sql_accounts_not_negative"),
)
entries = sa.Table(
    "sql_entries",
    tables,
    sa.Column("account_id", sa.String(16), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
)

OPEN = Sql("INSERT INTO sql_accounts (account_id, balance) VALUES (?, 0)")
MOVE = Sql("UPDATE sql_accounts SET balance = balance + ? WHERE account_id = ? RETURNING balance")
BALANCE = Sql("SELECT balance FROM sql_accounts WHERE account_id = ?")
ENTRY = Sql("INSERT INTO sql_entries (account_id, n, amount) VALUES (?, ?, ?)")
ADD = Sql("UPDATE sql_accounts SET balance = balance + ? WHERE account_id = ?")


class Open(Command):
    account_id: str


class Move(Command):
    account_id: str
    amounts: list[int]


class Deposit(Command):
    """Like Move, with every write held (`uow.write`): no RETURNING, nothing read back."""

    account_id: str
    amounts: list[int]


class OpenHeld(Command):
    account_id: str
    quietly: bool = False  # records no event


class Hold(Command):
    """Holds the command side's one running batch until the test lets it go."""


HELD = threading.Event()
RELEASE = threading.Event()


class Opened(Event):
    account_id: str


class Moved(Event):
    balance: int


def create_app() -> App:
    app = App("plain_sql", write_model=tables)

    @app.command(Open)
    def open_account(command: Open, uow: UnitOfWork) -> None:
        uow.sql(OPEN, (command.account_id,))
        uow.record(f"account-{command.account_id}", Opened(account_id=command.account_id),
                   expected_version=0)

    @app.command(Move)
    def move(command: Move, uow: UnitOfWork) -> None:
        if not uow.sql(BALANCE, (command.account_id,)):
            raise Refused(f"no account {command.account_id!r}")
        start = len(uow.sql(Sql("SELECT n FROM sql_entries WHERE account_id = ?"),
                            (command.account_id,)))
        uow.sql_many(ENTRY, [(command.account_id, start + i, amount)
                             for i, amount in enumerate(command.amounts)])
        [(balance,)] = uow.sql(MOVE, (sum(command.amounts), command.account_id))
        uow.record(f"account-{command.account_id}", Moved(balance=balance))

    @app.command(Deposit)
    def deposit(command: Deposit, uow: UnitOfWork) -> None:
        start = len(uow.sql(Sql("SELECT n FROM sql_entries WHERE account_id = ?"),
                            (command.account_id,)))
        uow.write_many(ENTRY, [(command.account_id, start + i, amount)
                               for i, amount in enumerate(command.amounts)])
        uow.write(ADD, (sum(command.amounts), command.account_id))
        uow.record(f"account-{command.account_id}", Moved(balance=0))

    @app.command(OpenHeld)
    def open_held(command: OpenHeld, uow: UnitOfWork) -> None:
        uow.write(OPEN, (command.account_id,))
        if not command.quietly:
            uow.record(f"opened-{command.account_id}", Opened(account_id=command.account_id))

    @app.command(Hold)
    def hold(command: Hold, uow: UnitOfWork) -> None:
        HELD.set()
        assert RELEASE.wait(10), "the test never let the held batch go"

    return app


@pytest.fixture
def runtime(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    write, read = store_urls
    runtime = Runtime(create_app(), store=write, read_store=read, roles=["command"])
    runtime.install()
    yield runtime
    runtime.stop()


def rows(runtime: Runtime, statement: str) -> list[tuple[object, ...]]:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(statement)]


def test_plain_sql_writes_and_reads_in_the_commands_transaction(runtime: Runtime) -> None:
    runtime.execute(Open(account_id="a"))
    result = runtime.execute(Move(account_id="a", amounts=[5, 7, 30]))
    assert rows(runtime, "SELECT account_id, balance FROM sql_accounts") == [("a", 42)]
    assert rows(runtime, "SELECT n, amount FROM sql_entries ORDER BY n") == [
        (0, 5), (1, 7), (2, 30)]
    assert runtime.log is not None
    [event] = runtime.log.read(result.position - 1, 1)
    assert event.type == "Moved" and '"balance":42' in event.data


def test_a_broken_constraint_refuses_the_command_and_writes_nothing(runtime: Runtime) -> None:
    runtime.execute(Open(account_id="a"))
    runtime.execute(Move(account_id="a", amounts=[10]))
    head = runtime.head()
    with pytest.raises(Refused):
        runtime.execute(Move(account_id="a", amounts=[1, -20]))  # entries, then a negative
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(10,)]
    assert rows(runtime, "SELECT count(*) FROM sql_entries") == [(1,)]
    assert runtime.head() == head
    with pytest.raises(Refused):
        runtime.execute(Open(account_id="a"))  # the primary key, through uow.sql


def test_a_value_the_column_cannot_hold_is_invalid_input(runtime: Runtime) -> None:
    runtime.execute(Open(account_id="a"))
    with pytest.raises(InvalidMessage):
        runtime.execute(Move(account_id="a", amounts=[2**70]))
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(0,)]


def test_concurrent_commands_share_a_transaction_and_a_refusal_undoes_only_its_own(
    runtime: Runtime,
) -> None:
    for name in ("a", "b"):
        runtime.execute(Open(account_id=name))
    refused: list[Exception] = []

    def send(account: str, amounts: list[int]) -> None:
        for _ in range(20):
            try:
                runtime.execute(Move(account_id=account, amounts=amounts))
            except Refused as error:
                refused.append(error)

    threads = [threading.Thread(target=send, args=("a", [1])),
               threading.Thread(target=send, args=("b", [-1])),
               threading.Thread(target=send, args=("a", [2]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 20  # every move of b would take it below zero
    assert rows(runtime, "SELECT account_id, balance FROM sql_accounts ORDER BY account_id") == [
        ("a", 60), ("b", 0)]
    assert rows(runtime, "SELECT count(*) FROM sql_entries WHERE account_id = 'a'") == [(40,)]


def test_a_percent_sign_in_the_text_is_refused_when_the_statement_is_made() -> None:
    with pytest.raises(ValueError, match="%"):
        Sql("SELECT * FROM sql_accounts WHERE account_id LIKE 'a%'")


def run_as_one_batch(runtime: Runtime, commands: list[Command]) -> dict[int, object]:
    """Queues the commands, in order, behind a held batch, so they run as the next batch; each
    one's position, or its refusal."""
    HELD.clear()
    RELEASE.clear()
    holder = threading.Thread(target=runtime.execute, args=(Hold(),))
    holder.start()
    assert HELD.wait(10)
    outcomes: dict[int, object] = {}

    def send(n: int) -> None:
        try:
            outcomes[n] = runtime.execute(commands[n]).position
        except (Refused, InvalidMessage) as refusal:
            outcomes[n] = refusal

    senders = []
    for n in range(len(commands)):
        senders.append(threading.Thread(target=send, args=(n,)))
        senders[-1].start()
        time.sleep(0.1)
    RELEASE.set()
    for thread in [holder, *senders]:
        thread.join(10)
    return outcomes


def test_one_batch_keeps_the_writes_of_its_good_commands_and_none_of_its_refused_ones(
    runtime: Runtime, backend: str
) -> None:
    """Commands queued behind a running batch run as the next batch, in one transaction: a
    command refused after it wrote (a broken CHECK, a duplicate key) leaves none of its rows,
    and the others commit theirs and their events."""
    for name in ("a", "b"):
        runtime.execute(Open(account_id=name))
    outcomes = run_as_one_batch(runtime, [
        Move(account_id="a", amounts=[5]), Move(account_id="b", amounts=[1, -20]),
        Open(account_id="a"), Move(account_id="a", amounts=[7])])
    assert isinstance(outcomes[1], Refused) and isinstance(outcomes[2], Refused)
    assert isinstance(outcomes[0], int) and outcomes[3] == outcomes[0] + 1
    assert rows(runtime, "SELECT account_id, balance FROM sql_accounts ORDER BY account_id") == [
        ("a", 12), ("b", 0)]
    assert rows(runtime, "SELECT account_id, n, amount FROM sql_entries ORDER BY n") == [
        ("a", 0, 5), ("a", 1, 7)]
    if backend == "postgresql":  # one transaction appended both events
        assert rows(runtime, "SELECT count(DISTINCT xmin::text) FROM projectionist_events"
                             " WHERE type = 'Moved'") == [(1,)]


def test_batches_of_good_commands_and_batches_with_refusals_follow_each_other(
    runtime: Runtime, backend: str
) -> None:
    """A batch whose commands all succeed commits them in one transaction; one with a refused
    command keeps the others' writes; and so on, whichever came before."""
    runtime.execute(Open(account_id="a"))
    expected = 0
    for batch in range(4):
        refused = batch % 2 == 1
        amounts = [[1], [-1000] if refused else [2], [3]]
        outcomes = run_as_one_batch(runtime, [Move(account_id="a", amounts=a) for a in amounts])
        assert isinstance(outcomes[1], Refused) == refused
        assert [isinstance(outcomes[n], int) for n in (0, 2)] == [True, True]
        expected += 4 if refused else 6
        assert rows(runtime, "SELECT balance FROM sql_accounts") == [(expected,)]
    if backend == "postgresql":  # each batch appended its events in one transaction
        assert rows(runtime, "SELECT count(DISTINCT xmin::text) FROM projectionist_events"
                             " WHERE type = 'Moved'") == [(4,)]


def test_held_writes_commit_with_the_commands_events(runtime: Runtime) -> None:
    runtime.execute(OpenHeld(account_id="a"))
    head = runtime.head()
    result = runtime.execute(Deposit(account_id="a", amounts=[5, 7]))
    assert result.position == head + 1
    assert rows(runtime, "SELECT account_id, balance FROM sql_accounts") == [("a", 12)]
    assert rows(runtime, "SELECT n, amount FROM sql_entries ORDER BY n") == [(0, 5), (1, 7)]
    # With an idempotency key, the stored answer follows the append in the same transaction.
    again = [runtime.execute(Deposit(account_id="a", amounts=[1]), idempotency_key="k")
             for _ in range(2)]
    assert again[0].position == again[1].position == head + 2
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(13,)]


def test_a_held_write_that_breaks_a_constraint_refuses_the_command_and_writes_nothing(
    runtime: Runtime,
) -> None:
    runtime.execute(OpenHeld(account_id="a"))
    runtime.execute(Deposit(account_id="a", amounts=[10]))
    head = runtime.head()
    with pytest.raises(Refused, match="Deposit conflicts with existing data"):
        runtime.execute(Deposit(account_id="a", amounts=[1, -20]))  # the CHECK
    with pytest.raises(Refused, match="OpenHeld conflicts with existing data"):
        runtime.execute(OpenHeld(account_id="a"))  # the primary key
    with pytest.raises(InvalidMessage, match="Deposit has a value the store cannot hold"):
        runtime.execute(Deposit(account_id="a", amounts=[2**70]))
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(10,)]
    assert rows(runtime, "SELECT count(*) FROM sql_entries") == [(1,)]
    assert runtime.head() == head
    runtime.execute(Deposit(account_id="a", amounts=[1]))  # and the next one goes through
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(11,)]


def test_in_a_batch_a_held_write_that_fails_refuses_only_its_own_command(
    runtime: Runtime, backend: str
) -> None:
    """In batches without savepoints (all went well before) and with them (one failed
    before), a command whose held write fails is refused alone."""
    runtime.execute(OpenHeld(account_id="a"))
    expected = 0
    for batch in range(4):
        refused = batch in (1, 2)
        amounts = [[1], [-1000] if refused else [2], [3]]
        outcomes = run_as_one_batch(
            runtime, [Deposit(account_id="a", amounts=a) for a in amounts])
        assert isinstance(outcomes[1], Refused) == refused, outcomes
        assert [isinstance(outcomes[n], int) for n in (0, 2)] == [True, True], outcomes
        expected += 4 if refused else 6
        assert rows(runtime, "SELECT balance FROM sql_accounts") == [(expected,)]


def test_a_held_write_that_fails_at_the_batchs_append_refuses_only_its_own_command(
    runtime: Runtime,
) -> None:
    """The batch's last command's held writes go with the append of every command's events:
    when one fails there, each command runs again alone, and only that one is refused."""
    runtime.execute(OpenHeld(account_id="a"))
    outcomes = run_as_one_batch(runtime, [Deposit(account_id="a", amounts=a)
                                          for a in ([1], [2], [-1000])])
    assert [isinstance(outcomes[n], int) for n in (0, 1)] == [True, True], outcomes
    assert isinstance(outcomes[2], Refused), outcomes
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(3,)]
    assert rows(runtime, "SELECT count(*) FROM sql_entries") == [(2,)]


def test_a_held_write_of_a_command_without_events_still_ends_that_command(
    runtime: Runtime,
) -> None:
    runtime.execute(OpenHeld(account_id="a", quietly=True))
    with pytest.raises(Refused, match="OpenHeld conflicts"):
        runtime.execute(OpenHeld(account_id="a", quietly=True))
    outcomes = run_as_one_batch(runtime, [
        OpenHeld(account_id="b", quietly=True), OpenHeld(account_id="a", quietly=True)])
    assert isinstance(outcomes[0], int) and isinstance(outcomes[1], Refused), outcomes
    assert rows(runtime, "SELECT account_id FROM sql_accounts ORDER BY account_id") == [
        ("a",), ("b",)]


def test_a_value_a_held_write_cannot_store_fails_only_its_own_command_of_a_batch(
    runtime: Runtime,
) -> None:
    runtime.execute(OpenHeld(account_id="a"))
    outcomes = run_as_one_batch(runtime, [Deposit(account_id="a", amounts=a)
                                          for a in ([1], [2], [2**70])])
    assert [isinstance(outcomes[n], int) for n in (0, 1)] == [True, True], outcomes
    assert isinstance(outcomes[2], InvalidMessage), outcomes
    assert rows(runtime, "SELECT balance FROM sql_accounts") == [(3,)]
