"""The billing app on PostgreSQL: every answer equals SQL over the source tables, as on SQLite."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import NotFound, Runtime
from projectionist_examples.billing import CustomerBalance, RevenueByCountry, create_app
from tests.capture.postgres.conftest import Database
from tests.capture.test_billing import (
    BALANCES_SQL,
    COUNTRIES,
    CUSTOMERS,
    INVOICES,
    LEDGER,
    NOTES,
    REVENUE_SQL,
    STATUSES,
)


def statement(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One random write, valid or not: a refused one rolls its whole transaction back."""
    p = {
        "c": rng.choice(CUSTOMERS), "o": rng.choice(CUSTOMERS), "i": rng.choice(INVOICES),
        "j": rng.choice(INVOICES), "country": rng.choice(COUNTRIES), "notes": rng.choice(NOTES),
        "amount": 0 if rng.random() < 0.05 else rng.randint(1, 10_000),
        "status": "lost" if rng.random() < 0.05 else rng.choice(STATUSES),
    }
    return rng.choice([
        "INSERT INTO customers (id, name, country) VALUES (:c, 'N', :country)",
        "INSERT INTO customers (id, name, country, notes) VALUES (:c, 'N', :country, :notes)",
        "INSERT INTO customers (id, name, country) VALUES (:c, 'U', :country)"
        " ON CONFLICT (id) DO UPDATE SET country = excluded.country",
        "UPDATE customers SET country = :country WHERE id = :c",
        "UPDATE customers SET name = 'renamed', notes = :notes WHERE id = :c",
        "UPDATE customers SET id = :o WHERE id = :c",
        "DELETE FROM customers WHERE id = :c",
        "INSERT INTO invoices (id, customer_id, amount_cents, status)"
        " VALUES (:i, :c, :amount, :status)",
        "INSERT INTO invoices (id, customer_id, amount_cents, status) VALUES (:i, :c, :amount,"
        " 'open') ON CONFLICT (id) DO UPDATE SET amount_cents = excluded.amount_cents",
        "UPDATE invoices SET status = :status WHERE id = :i",
        "UPDATE invoices SET amount_cents = :amount WHERE id = :i",
        "UPDATE invoices SET customer_id = :c WHERE id = :i",
        "UPDATE invoices SET issued_at = '2020-01-01 00:00:00+00' WHERE id = :i",
        "UPDATE invoices SET id = :j WHERE id = :i",
        "DELETE FROM invoices WHERE id = :i",
        "UPDATE invoices SET status = 'paid' WHERE status = 'open' AND amount_cents < :amount",
    ]), p


def write_randomly(database: Database, rng: random.Random, transactions: int) -> None:
    for _ in range(transactions):
        with database.engine.connect() as connection:
            transaction = connection.begin()
            try:
                for _ in range(rng.randint(1, 5)):
                    sql, params = statement(rng)
                    connection.execute(sa.text(sql), params)
            except sa.exc.IntegrityError:
                transaction.rollback()
                continue
            if rng.random() < 0.1:
                transaction.rollback()
            else:
                transaction.commit()


def expected(database: Database) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(balances by customer, the revenue answer, the WAL position), read in one snapshot."""
    with database.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            lsn = str(connection.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar())
            balances = {
                row["customer_id"]: {k: _plain(v) for k, v in row.items()}
                for row in connection.exec_driver_sql(BALANCES_SQL).mappings()
            }
            revenue = [
                {k: _plain(v) for k, v in row.items()}
                for row in connection.exec_driver_sql(REVENUE_SQL).mappings()
            ]
    return balances, {"countries": revenue}, lsn


def _plain(value: Any) -> Any:
    return value if isinstance(value, str) or value is None else int(value)


def answers(runtime: Runtime, lsn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    revenue = runtime.ask(RevenueByCountry(), min_lsn=lsn, wait_ms=10000)
    balances = {}
    for customer_id in CUSTOMERS:
        try:
            answer = runtime.ask(CustomerBalance(customer_id=customer_id), min_lsn=lsn)
        except NotFound:
            continue
        assert answer.freshness.position == revenue.freshness.position
        balances[customer_id] = answer.data
    return balances, revenue.data


def check(runtime: Runtime, database: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    balances, revenue, lsn = expected(database)
    assert runtime.capturer is not None
    while runtime.capturer.run_once():
        pass
    runtime.capturer.idle_record_s = 0.0  # record how far it read, though nothing was captured
    runtime.capturer.run_once()
    runtime.catch_up(strict=True)
    assert answers(runtime, lsn) == (balances, revenue)
    return balances, revenue


@pytest.fixture
def runtime(database: Database) -> Iterator[Runtime]:
    runtime = Runtime(create_app(), store=database.url)
    runtime.install()
    assert runtime.capturer is not None
    runtime.capturer.run_once()
    yield runtime
    runtime.stop()


@pytest.mark.parametrize("seed", [1, 2])
def test_answers_equal_sql_over_the_source_tables_after_random_writes(
    runtime: Runtime, database: Database, seed: int
) -> None:
    rng = random.Random(seed)
    for _ in range(8):
        write_randomly(database, rng, 25)
        check(runtime, database)
    balances, revenue, _ = expected(database)
    assert balances and revenue["countries"], "the random writes left nothing to compare"


def test_the_tables_are_made_with_postgresql_types(runtime: Runtime, database: Database) -> None:
    [(issued,)] = database.sql(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_name = 'invoices' AND column_name = 'issued_at'"
    )
    assert issued == "timestamp with time zone"
    with pytest.raises(sa.exc.IntegrityError):
        database.sql("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                     " VALUES ('i1', 'nobody', 5, 'open')")


def test_a_rebuild_and_a_new_read_store_give_the_same_answers(
    runtime: Runtime, database: Database
) -> None:
    write_randomly(database, random.Random(7), 120)
    before = check(runtime, database)
    runtime.rebuild(LEDGER)
    runtime.catch_up(strict=True)
    assert [s.generation for s in runtime.status() if s.active] == [2]
    assert answers_from(runtime) == before

    other = Database()
    try:
        replay = Runtime(create_app(), store=database.url, read_store=other.url,
                         roles="projector,query")
        replay.catch_up(strict=True)
        assert answers_from(replay) == before
        replay.stop()
    finally:
        other.drop()


def answers_from(runtime: Runtime) -> tuple[dict[str, Any], dict[str, Any]]:
    balances = {}
    for customer_id in CUSTOMERS:
        try:
            balances[customer_id] = runtime.ask(CustomerBalance(customer_id=customer_id)).data
        except NotFound:
            continue
    return balances, runtime.ask(RevenueByCountry()).data
