"""Command handlers that are easy to get wrong still do what they say, through Runtime.execute.

An async handler or policy is awaited (its events are recorded, its refusal refuses); an
aggregate loaded and changed but never saved is saved when the handler returns; a Forbidden
raised inside a handler is audited like any other refusal.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import (
    ANY_VERSION,
    Aggregate,
    App,
    Command,
    ConcurrencyError,
    Event,
    Forbidden,
    Principal,
    Refused,
    Runtime,
    UnitOfWork,
    applies,
)

AUDIT = "projectionist.audit"
WRITER = Principal(subject="writer", scopes=["commands:*"])


class Write(Command):
    stream: str
    text: str


class WriteByObject(Write):
    """Handled by a callable object whose __call__ is a coroutine function."""


class WriteByPartial(Write):
    """Handled by a functools.partial of a coroutine function."""


class Guarded(Write):
    """Only subjects whose name starts with `allowed` may send it (an async policy)."""


class Written(Event):
    text: str


class Deposited(Event):
    amount: int


class Counter(Aggregate):
    """A running total folded from its stream."""

    stream_prefix = "counter"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.total += event.amount


class Deposit(Command):
    """Changes a counter and never saves it."""

    counter: str
    amount: int


class Move(Command):
    """Changes two counters and saves only the first."""

    source: str
    target: str
    amount: int


class Peek(Command):
    """Loads a counter and changes nothing."""

    counter: str


class Interleave(Command):
    """Loads a counter, records on its stream at any version, then changes it unsaved."""

    counter: str


class Vault(Command):
    """Refused inside the handler, sync or async, with Forbidden or Refused."""

    how: str


class AsyncVault(Vault):
    """Refused inside an async handler."""


class AsyncObjectHandler:
    """A command handler that is a callable object."""

    def __init__(self, rows: sa.Table) -> None:
        self.rows = rows

    async def __call__(self, command: WriteByObject, uow: UnitOfWork) -> None:
        await asyncio.sleep(0)
        uow.connection.execute(sa.insert(self.rows).values(text=command.text))
        uow.record(command.stream, Written(text=command.text))


async def write_tagged(rows: sa.Table, command: WriteByPartial, uow: UnitOfWork) -> None:
    await asyncio.sleep(0)
    uow.connection.execute(sa.insert(rows).values(text=command.text))
    uow.record(command.stream, Written(text=command.text))


def guard_app() -> App:
    """A new App of async handlers and policies, aggregates, and refusing handlers."""
    metadata = sa.MetaData()
    rows = sa.Table(
        "rows",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("text", sa.String(200), nullable=False),
    )
    app = App("guards", write_model=metadata)

    @app.command(Write)
    async def write(command: Write, uow: UnitOfWork) -> None:
        await asyncio.sleep(0)
        uow.connection.execute(sa.insert(rows).values(text=command.text))
        uow.record(command.stream, Written(text=command.text))

    app.command(WriteByObject)(AsyncObjectHandler(rows))
    app.command(WriteByPartial)(functools.partial(write_tagged, rows))

    async def allowed_only(principal: Principal, command: Guarded) -> bool:
        await asyncio.sleep(0)
        return (principal.subject or "").startswith("allowed")

    @app.command(Guarded, policy=allowed_only)
    async def guarded(command: Guarded, uow: UnitOfWork) -> None:
        uow.record(command.stream, Written(text=command.text))

    _register_aggregates(app)
    _register_refusals(app)
    app.events(Written)
    return app


def _register_aggregates(app: App) -> None:
    @app.command(Deposit)
    def deposit(command: Deposit, uow: UnitOfWork) -> None:
        uow.load(Counter, command.counter).record(Deposited(amount=command.amount))

    @app.command(Move)
    async def move(command: Move, uow: UnitOfWork) -> None:
        source, target = uow.load(Counter, command.source), uow.load(Counter, command.target)
        source.record(Deposited(amount=-command.amount))
        target.record(Deposited(amount=command.amount))
        uow.save(source)

    @app.command(Peek)
    def peek(command: Peek, uow: UnitOfWork) -> None:
        uow.load(Counter, command.counter)

    @app.command(Interleave)
    def interleave(command: Interleave, uow: UnitOfWork) -> None:
        counter = uow.load(Counter, command.counter)
        uow.record(counter.stream, Deposited(amount=1), expected_version=ANY_VERSION)
        counter.record(Deposited(amount=2))


def _register_refusals(app: App) -> None:
    @app.command(Vault)
    def vault(command: Vault, uow: UnitOfWork) -> None:
        uow.record("vault", Written(text="opened"))
        if command.how == "forbidden":
            raise Forbidden("only the keeper may open the vault")
        raise Refused("the vault is closed today")

    @app.command(AsyncVault)
    async def async_vault(command: AsyncVault, uow: UnitOfWork) -> None:
        await asyncio.sleep(0)
        raise Forbidden("only the keeper may open the vault, asynchronously")


@pytest.fixture
def runtime(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    write, read = store_urls
    runtime = Runtime(guard_app(), store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


def stream_events(runtime: Runtime) -> list[tuple[str, str, int, dict[str, Any]]]:
    assert runtime.log is not None
    return [(e.stream, e.type, e.version, json.loads(e.data)) for e in runtime.log.read(0, 1000)]


def row_texts(runtime: Runtime) -> list[str]:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        return list(connection.execute(sa.text("SELECT text FROM rows ORDER BY id")).scalars())


def in_threads(calls: list[Callable[[], Any]]) -> list[BaseException]:
    """Runs the calls at once, in threads (so the group commit batches them); their errors."""
    start = threading.Barrier(len(calls))
    failures: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            call()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


# Async handlers and policies


@pytest.mark.parametrize("command_type", [Write, WriteByObject, WriteByPartial])
def test_an_async_command_handler_is_awaited_and_its_changes_commit(
    runtime: Runtime, command_type: type[Write]
) -> None:
    result = runtime.execute(command_type(stream="s", text="hello"))
    assert result.position == 1
    assert [(e.type, e.stream, e.version) for e in result.events] == [("Written", "s", 1)]
    assert stream_events(runtime) == [("s", "Written", 1, {"text": "hello"})]
    assert row_texts(runtime) == ["hello"]


def test_async_command_handlers_run_in_a_group_commit(runtime: Runtime) -> None:
    texts = [f"t{n}" for n in range(8)]
    failures = in_threads([
        functools.partial(runtime.execute, Write(stream=f"s{n}", text=text))
        for n, text in enumerate(texts)
    ])
    assert failures == []
    assert sorted(row_texts(runtime)) == texts
    assert sorted(data["text"] for *_, data in stream_events(runtime)) == texts


def test_an_async_policy_refuses_and_allows(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    refused = Principal(subject="mallory", scopes=["commands:*"])
    with pytest.raises(Forbidden, match="the policy of Guarded refuses this subject"):
        runtime.execute(Guarded(stream="g", text="no"), principal=refused)
    [record] = [r for r in caplog.records if r.name == AUDIT]
    assert record.levelno == logging.WARNING
    assert "subject=mallory command=Guarded" in record.getMessage()

    allowed = Principal(subject="allowed-1", scopes=["commands:*"])
    result = runtime.execute(Guarded(stream="g", text="yes"), principal=allowed)
    assert result.position == 1
    assert stream_events(runtime) == [("g", "Written", 1, {"text": "yes"})]


# Aggregates changed and never saved


def test_an_aggregate_changed_and_never_saved_is_saved_when_the_handler_returns(
    runtime: Runtime,
) -> None:
    first = runtime.execute(Deposit(counter="a", amount=5))
    second = runtime.execute(Deposit(counter="a", amount=7))
    assert [(e.stream, e.version) for e in first.events] == [("counter-a", 1)]
    assert [(e.stream, e.version) for e in second.events] == [("counter-a", 2)]
    assert second.position == 2
    assert stream_events(runtime) == [("counter-a", "Deposited", 1, {"amount": 5}),
                                      ("counter-a", "Deposited", 2, {"amount": 7})]


def test_an_aggregate_left_unsaved_beside_a_saved_one_is_saved_after_it(
    runtime: Runtime,
) -> None:
    result = runtime.execute(Move(source="a", target="b", amount=3))
    assert [(e.stream, e.type, e.version) for e in result.events] == [
        ("counter-a", "Deposited", 1), ("counter-b", "Deposited", 1)]


def test_an_aggregate_loaded_and_not_changed_records_nothing(runtime: Runtime) -> None:
    runtime.execute(Deposit(counter="a", amount=5))
    result = runtime.execute(Peek(counter="a"))
    assert (result.position, result.events) == (0, [])
    assert len(stream_events(runtime)) == 1


def test_an_unsaved_aggregate_is_saved_at_the_version_it_was_loaded_at(
    runtime: Runtime,
) -> None:
    runtime.execute(Deposit(counter="a", amount=5))
    with pytest.raises(ConcurrencyError) as raised:
        runtime.execute(Interleave(counter="a"))
    assert raised.value.detail == "stream 'counter-a' is at version 2, expected version 1"
    assert len(stream_events(runtime)) == 1


def test_unsaved_aggregates_are_saved_in_a_group_commit_and_lose_no_update(
    runtime: Runtime,
) -> None:
    amounts = [2**n for n in range(8)]
    failures = in_threads([
        functools.partial(runtime.execute, Deposit(counter="a", amount=amount))
        for amount in amounts
    ])
    assert failures == []
    events = stream_events(runtime)
    assert [version for _, _, version, _ in events] == list(range(1, 9))
    assert sum(data["amount"] for *_, data in events) == 255


def test_unsaved_aggregates_of_many_streams_are_saved_in_one_batch(runtime: Runtime) -> None:
    failures = in_threads([
        functools.partial(runtime.execute, Deposit(counter=f"c{n}", amount=n))
        for n in range(8)
    ])
    assert failures == []
    assert sorted((stream, version) for stream, _, version, _ in stream_events(runtime)) == [
        (f"counter-c{n}", 1) for n in range(8)]


# Refusals inside handlers are audited


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == AUDIT]


@pytest.mark.parametrize(("command_type", "reason"), [
    (Vault, "only the keeper may open the vault"),
    (AsyncVault, "only the keeper may open the vault, asynchronously"),
])
def test_forbidden_raised_inside_a_command_handler_is_audited_at_warning(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, command_type: type[Vault], reason: str
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    with pytest.raises(Forbidden, match=reason):
        runtime.execute(command_type(how="forbidden"), principal=WRITER)
    [record] = audit_lines(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"command refused: subject=writer command={command_type.type_name} reason={reason}")
    assert stream_events(runtime) == []


def test_a_refused_command_is_still_audited_at_info(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    with pytest.raises(Refused):
        runtime.execute(Vault(how="refused"), principal=WRITER)
    [record] = audit_lines(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "command refused: subject=writer command=Vault reason=the vault is closed today")


def test_forbidden_raised_inside_handlers_in_a_group_commit_is_audited(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    subjects = [f"writer-{n}" for n in range(6)]
    failures = in_threads([
        functools.partial(runtime.execute, Vault(how="forbidden"),
                          principal=Principal(subject=subject, scopes=["commands:*"]))
        for subject in subjects
    ])
    assert len(failures) == len(subjects)
    assert all(isinstance(failure, Forbidden) for failure in failures)
    lines = audit_lines(caplog)
    assert {line.levelno for line in lines} == {logging.WARNING}
    assert {line.getMessage() for line in lines} == {
        f"command refused: subject={subject} command=Vault"
        " reason=only the keeper may open the vault" for subject in subjects}
