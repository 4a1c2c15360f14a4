"""Upcasters: events stored in an older shape are read in the current one, by commands and
projections alike."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import (
    Aggregate,
    App,
    ApplyContext,
    Command,
    ConfigurationError,
    Event,
    HandlerFailed,
    Projection,
    Query,
    ReadContext,
    Registry,
    Runtime,
    UnitOfWork,
    applies,
)


@pytest.fixture
def store_urls(schema_store_urls: tuple[str, str]) -> tuple[str, str]:
    return schema_store_urls


class OpenedV1(Event):
    """The first shape of AccountOpened: an owner, and no currency."""

    type_name = "AccountOpened"
    owner: str


class OpenedV2(Event):
    """AccountOpened once accounts had a currency."""

    type_name = "AccountOpened"
    schema_version = 2
    owner: str
    currency: str


class OpenedV3(Event):
    """AccountOpened once the owner was called the holder."""

    type_name = "AccountOpened"
    schema_version = 3
    holder: str
    currency: str


class Deposited(Event):
    amount: int


def add_currency(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}


def rename_owner(data: dict[str, Any]) -> dict[str, Any]:
    return {"holder": data["owner"], "currency": data["currency"]}


UPCASTERS = {1: add_currency, 2: rename_owner}


class Ledger(Aggregate):
    """The part of an account that every shape of AccountOpened shares."""

    stream_prefix = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.holder = ""
        self.currency = ""
        self.balance = 0

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount


class AccountV2(Ledger):
    @applies(OpenedV2)
    def _opened(self, event: OpenedV2) -> None:
        self.holder, self.currency = event.owner, event.currency


class AccountV3(Ledger):
    @applies(OpenedV3)
    def _opened(self, event: OpenedV3) -> None:
        self.holder, self.currency = event.holder, event.currency


class Open(Command):
    account_id: str
    owner: str
    currency: str = "EUR"


class Deposit(Command):
    account_id: str
    amount: int


class ListAccounts(Query):
    pass


def opened(schema_version: int, command: Open) -> Event:
    if schema_version == 1:
        return OpenedV1(owner=command.owner)
    if schema_version == 2:
        return OpenedV2(owner=command.owner, currency=command.currency)
    return OpenedV3(holder=command.owner, currency=command.currency)


@dataclass
class Accounts:
    """An App of accounts whose AccountOpened is at `schema_version`."""

    schema_version: int
    upcasters: Sequence[int] = ()
    app: App = field(init=False)
    loaded: list[tuple[str, str, int]] = field(init=False, default_factory=list)
    """(holder, currency, version) of each account the Deposit handler loaded."""

    def __post_init__(self) -> None:
        self.app = App("accounts")
        self._register_commands()
        if self.schema_version > 1:
            self._register_projection()
        shapes: dict[int, type[Event]] = {1: OpenedV1, 2: OpenedV2, 3: OpenedV3}
        event_type = shapes[self.schema_version]
        for from_version in self.upcasters:
            self.app.registry.upcaster(event_type, from_version)(UPCASTERS[from_version])

    def _register_commands(self) -> None:
        schema_version, loaded = self.schema_version, self.loaded
        aggregate: type[AccountV2 | AccountV3] = AccountV2 if schema_version == 2 else AccountV3

        @self.app.command(Open)
        def open_account(command: Open, uow: UnitOfWork) -> None:
            uow.record(f"account-{command.account_id}", opened(schema_version, command),
                       expected_version=0)

        @self.app.command(Deposit)
        def deposit(command: Deposit, uow: UnitOfWork) -> None:
            account = uow.load(aggregate, command.account_id)
            loaded.append((account.holder, account.currency, account.version))
            account.record(Deposited(amount=command.amount))
            uow.save(account)

    def _register_projection(self) -> None:
        projection = Projection("accounts", on_error="stop")
        table = projection.table(
            "accounts",
            sa.Column("stream", sa.String(64), primary_key=True),
            sa.Column("holder", sa.String(64), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
        )

        def insert(ctx: ApplyContext, holder: str, currency: str) -> None:
            ctx.connection.execute(sa.insert(ctx[table]).values(
                stream=ctx.stream, holder=holder, currency=currency))

        # Each App handles the one shape of AccountOpened it knows.
        if self.schema_version == 2:
            @projection.on(OpenedV2)
            def opened_v2(event: OpenedV2, ctx: ApplyContext) -> None:
                insert(ctx, event.owner, event.currency)
        else:
            @projection.on(OpenedV3)
            def opened_v3(event: OpenedV3, ctx: ApplyContext) -> None:
                insert(ctx, event.holder, event.currency)

        @self.app.query(ListAccounts, reads=[projection])
        def list_accounts(query: ListAccounts, ctx: ReadContext) -> list[list[str]]:
            rows = ctx.connection.execute(
                sa.select(ctx[table].c.stream, ctx[table].c.holder, ctx[table].c.currency)
                .order_by(ctx[table].c.stream))
            return [list(row) for row in rows]


@contextmanager
def running(accounts: Accounts, store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """A runtime of the App over the stores, its projector moved by the test; then stopped."""
    write, read = store_urls
    runtime = Runtime(accounts.app, store=write, read_store=read)
    try:
        runtime.install()
        yield runtime
    finally:
        runtime.stop()


def stored_schema_versions(runtime: Runtime) -> list[tuple[str, str, int]]:
    assert runtime.log is not None
    return [(e.stream, e.type, e.schema_version) for e in runtime.log.read(0, 1000)]


def test_an_event_stored_at_version_1_is_read_through_one_upcaster(
    store_urls: tuple[str, str],
) -> None:
    with running(Accounts(1), store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))

    accounts = Accounts(2, upcasters=[1])
    with running(accounts, store_urls) as runtime:
        result = runtime.execute(Deposit(account_id="a", amount=10))
        assert accounts.loaded == [("ann", "EUR", 1)]
        assert [(e.type, e.version) for e in result.events] == [("Deposited", 2)]

        runtime.catch_up()
        assert runtime.ask(ListAccounts()).data == [["account-a", "ann", "EUR"]]
        assert stored_schema_versions(runtime) == [
            ("account-a", "AccountOpened", 1), ("account-a", "Deposited", 1)]


def test_events_stored_at_versions_1_and_2_are_read_through_two_upcasters_and_one(
    store_urls: tuple[str, str],
) -> None:
    with running(Accounts(1), store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))
    with running(Accounts(2, upcasters=[1]), store_urls) as runtime:
        runtime.execute(Open(account_id="b", owner="bob", currency="USD"))
        runtime.catch_up()
        assert stored_schema_versions(runtime) == [
            ("account-a", "AccountOpened", 1), ("account-b", "AccountOpened", 2)]

    accounts = Accounts(3, upcasters=[1, 2])
    with running(accounts, store_urls) as runtime:
        runtime.execute(Deposit(account_id="a", amount=5))
        runtime.execute(Deposit(account_id="b", amount=7))
        assert accounts.loaded == [("ann", "EUR", 1), ("bob", "USD", 1)]

        # A rebuild replays the log from its start with the App's current handlers.
        build = runtime.rebuild("accounts")
        runtime.catch_up()
        assert runtime.runners[0].generation == build.generation
        assert runtime.ask(ListAccounts()).data == [
            ["account-a", "ann", "EUR"], ["account-b", "bob", "USD"]]


def test_a_missing_upcaster_is_a_configuration_error_naming_the_type_and_the_version(
    store_urls: tuple[str, str],
) -> None:
    with running(Accounts(1), store_urls) as runtime:
        runtime.execute(Open(account_id="a", owner="ann"))

    message = "no upcaster for AccountOpened from schema version 1"
    with running(Accounts(3, upcasters=[2]), store_urls) as runtime:
        with pytest.raises(ConfigurationError, match=message):
            runtime.execute(Deposit(account_id="a", amount=5))
        assert runtime.head() == 1

        with pytest.raises(HandlerFailed) as raised:
            runtime.catch_up()
        assert isinstance(raised.value.__cause__, ConfigurationError)
        assert message in str(raised.value.__cause__)
        assert runtime.ask(ListAccounts()).data == []


def test_an_upcaster_that_could_never_run_is_refused() -> None:
    registry = Registry()
    with pytest.raises(ConfigurationError, match="AccountOpened is at schema version 2"):
        registry.upcaster(OpenedV2, 2)(add_currency)


def test_an_event_at_the_current_version_is_decoded_without_upcasters() -> None:
    registry = Registry()
    registry.add(OpenedV3)
    event = registry.decode_event("AccountOpened", 3, '{"holder":"ann","currency":"SEK"}')
    assert event == OpenedV3(holder="ann", currency="SEK")
