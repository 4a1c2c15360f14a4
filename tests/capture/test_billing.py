"""The billing app: customers and invoices written by plain SQL, answered from captured changes.

Every answer must equal the same aggregate computed by SQL over the source tables, at the
position the answer states.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from projectionist import App, NotFound, Runtime
from projectionist.cli import load_app
from projectionist_examples.billing import CustomerBalance, RevenueByCountry, create_app
from tests.capture.conftest import Stores, head
from tests.helpers import ServeSubprocess

LEDGER = "billing_ledger"
CUSTOMERS = [f"c{i}" for i in range(8)]
INVOICES = [f"i{i}" for i in range(24)]
COUNTRIES = ["DE", "FR", "NO", "ZA", "Ísland"]
NOTES = ["", "vip", "naïve café ☕", "x" * 40, "two\nlines", "🎉🎉"]
STATUSES = ["open", "paid", "void"]

# The tables as another program would make them (timestamptz and now() are PostgreSQL's).
DDL = (
    "CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL, country text NOT NULL,"
    " notes text NOT NULL DEFAULT '')",
    "CREATE TABLE invoices (id text PRIMARY KEY, customer_id text NOT NULL REFERENCES"
    " customers(id), amount_cents bigint NOT NULL CHECK (amount_cents > 0), status text NOT NULL"
    " CHECK (status IN ('open', 'paid', 'void')), issued_at timestamptz NOT NULL DEFAULT"
    " CURRENT_TIMESTAMP)",
)

BALANCES_SQL = """
SELECT c.id AS customer_id, c.name, c.country, length(c.notes) AS notes_chars,
       (SELECT count(*) FROM invoices i WHERE i.customer_id = c.id AND i.status != 'void')
           AS invoices,
       (SELECT coalesce(sum(i.amount_cents), 0) FROM invoices i
         WHERE i.customer_id = c.id AND i.status = 'open') AS open_cents,
       (SELECT coalesce(sum(i.amount_cents), 0) FROM invoices i
         WHERE i.customer_id = c.id AND i.status = 'paid') AS paid_cents
FROM customers c
"""

REVENUE_SQL = """
SELECT c.country, count(*) AS customers, coalesce(sum(t.open_cents), 0) AS open_cents,
       coalesce(sum(t.paid_cents), 0) AS paid_cents
FROM customers c LEFT JOIN (
    SELECT customer_id,
           sum(CASE WHEN status = 'open' THEN amount_cents ELSE 0 END) AS open_cents,
           sum(CASE WHEN status = 'paid' THEN amount_cents ELSE 0 END) AS paid_cents
    FROM invoices GROUP BY customer_id
) t ON t.customer_id = c.id
GROUP BY c.country ORDER BY c.country
"""


def rows(connection: sqlite3.Connection, sql: str) -> list[dict[str, Any]]:
    cursor = connection.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def expected(connection: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(balances by customer, the revenue answer, the log's head), read in one snapshot."""
    connection.execute("BEGIN")
    try:
        balances = {row["customer_id"]: row for row in rows(connection, BALANCES_SQL)}
        revenue = {"countries": rows(connection, REVENUE_SQL)}
        return balances, revenue, head(connection)
    finally:
        connection.execute("COMMIT")


def answers(
    runtime: Runtime, position: int, *, wait: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the queries answer at `position`: (balances by customer, the revenue answer).

    Without `wait`, the answers must be there already (no min_position is asked for).
    """
    at = position if wait else None
    revenue = runtime.ask(RevenueByCountry(), min_position=at)
    assert revenue.freshness.position == position
    balances = {}
    for customer_id in [*CUSTOMERS, "nobody"]:
        try:
            answer = runtime.ask(CustomerBalance(customer_id=customer_id), min_position=at)
        except NotFound:
            continue
        assert answer.freshness.position == position
        balances[customer_id] = answer.data
    return balances, revenue.data


def check(runtime: Runtime, writer: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """Catches up and compares both queries with SQL over the source tables."""
    balances, revenue, position = expected(writer)
    runtime.catch_up(strict=True)
    assert answers(runtime, position) == (balances, revenue)
    return balances, revenue


def statement(rng: random.Random) -> tuple[str, tuple[Any, ...]]:
    """One random write, valid or not: a refused one rolls its whole transaction back."""
    customer, other = rng.choice(CUSTOMERS), rng.choice(CUSTOMERS)
    invoice = rng.choice(INVOICES)
    amount = 0 if rng.random() < 0.05 else rng.randint(1, 10_000)
    country = rng.choice(COUNTRIES)
    status = "lost" if rng.random() < 0.05 else rng.choice(STATUSES)
    choices: list[tuple[str, tuple[Any, ...]]] = [
        ("INSERT INTO customers (id, name, country) VALUES (?, ?, ?)",
         (customer, f"name {rng.random():.3f}", country)),
        ("INSERT INTO customers (id, name, country, notes) VALUES (?, ?, ?, ?)",
         (customer, "N", country, rng.choice(NOTES))),
        ("INSERT INTO customers (id, name, country) VALUES (?, 'U', ?)"
         " ON CONFLICT (id) DO UPDATE SET country = excluded.country", (customer, country)),
        ("UPDATE customers SET country = ? WHERE id = ?", (country, customer)),
        ("UPDATE customers SET name = ?, notes = ? WHERE id = ?",
         (f"renamed {rng.randint(0, 9)}", rng.choice(NOTES), customer)),
        ("UPDATE customers SET id = ? WHERE id = ?", (other, customer)),
        ("DELETE FROM customers WHERE id = ?", (customer,)),
        ("INSERT INTO invoices (id, customer_id, amount_cents, status) VALUES (?, ?, ?, ?)",
         (invoice, customer, amount, status)),
        ("INSERT INTO invoices (id, customer_id, amount_cents, status) VALUES (?, ?, ?, ?)",
         (rng.choice(INVOICES), other, rng.randint(1, 500), "open")),
        ("INSERT OR REPLACE INTO invoices (id, customer_id, amount_cents, status)"
         " VALUES (?, ?, ?, ?)", (invoice, customer, rng.randint(1, 900), "open")),
        ("UPDATE invoices SET status = ? WHERE id = ?", (status, invoice)),
        ("UPDATE invoices SET amount_cents = ? WHERE id = ?", (amount, invoice)),
        ("UPDATE invoices SET customer_id = ? WHERE id = ?", (customer, invoice)),
        ("UPDATE invoices SET issued_at = '2020-01-01 00:00:00' WHERE id = ?", (invoice,)),
        ("UPDATE invoices SET id = ? WHERE id = ?", (rng.choice(INVOICES), invoice)),
        ("DELETE FROM invoices WHERE id = ?", (invoice,)),
        ("UPDATE invoices SET status = 'paid' WHERE status = 'open' AND amount_cents < ?",
         (rng.randint(0, 5000),)),
        ("DELETE FROM invoices WHERE customer_id = ?", (customer,)),
    ]
    return rng.choice(choices)


def write_randomly(writer: sqlite3.Connection, rng: random.Random, transactions: int) -> None:
    """Random transactions of one to five statements; some fail, some are rolled back."""
    for _ in range(transactions):
        writer.execute("BEGIN")
        try:
            for _ in range(rng.randint(1, 5)):
                writer.execute(*statement(rng))
        except sqlite3.IntegrityError:
            writer.execute("ROLLBACK")
            continue
        writer.execute("ROLLBACK" if rng.random() < 0.1 else "COMMIT")


@pytest.fixture
def runtime(stores: Stores) -> Iterator[Runtime]:
    runtime = Runtime(create_app(), store=stores.url, read_store=stores.read_url)
    runtime.install()
    yield runtime
    runtime.stop()


@pytest.mark.parametrize("foreign_keys", [True, False], ids=["foreign-keys", "orphans"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_answers_equal_sql_over_the_source_tables_after_random_writes(
    runtime: Runtime, stores: Stores, seed: int, foreign_keys: bool
) -> None:
    rng = random.Random(seed)
    writer = stores.connect(foreign_keys=foreign_keys)
    for _ in range(20):
        write_randomly(writer, rng, 25)
        check(runtime, writer)
    balances, revenue, _ = expected(writer)
    assert balances and revenue["countries"], "the random writes left nothing to compare"
    writer.close()


def test_a_rebuild_and_a_new_read_store_give_the_same_answers(
    runtime: Runtime, stores: Stores, tmp_path: Path
) -> None:
    writer = stores.connect()
    write_randomly(writer, random.Random(7), 150)
    before = check(runtime, writer)
    [serving] = runtime.status()
    runtime.rebuild(LEDGER)
    runtime.catch_up(strict=True)
    [rebuilt] = runtime.status()
    assert rebuilt.generation > serving.generation
    assert answers(runtime, head(writer)) == before

    replay = Runtime(create_app(), store=stores.url,
                     read_store=f"sqlite:///{tmp_path / 'other-read.db'}")
    replay.catch_up(strict=True)
    assert answers(replay, head(writer)) == before
    replay.stop()
    writer.close()


def test_rows_already_there_are_snapshotted_when_capture_starts(stores: Stores) -> None:
    writer = stores.connect(foreign_keys=True)
    for ddl in DDL:
        writer.execute(ddl)
    writer.execute("INSERT INTO customers (id, name, country) VALUES ('c1', 'Ann', 'DE'),"
                   " ('c2', 'Bob', 'FR')")
    writer.execute("INSERT INTO invoices (id, customer_id, amount_cents, status) VALUES"
                   " ('i1', 'c1', 100, 'open'), ('i2', 'c1', 50, 'paid'), ('i3', 'c2', 7, 'void')")
    runtime = Runtime(create_app(), store=stores.url, read_store=stores.read_url)
    runtime.install()
    assert head(writer) == 5
    balances, _ = check(runtime, writer)
    assert balances["c1"] == {
        "customer_id": "c1", "name": "Ann", "country": "DE", "notes_chars": 0, "invoices": 2,
        "open_cents": 100, "paid_cents": 50,
    }
    writer.execute("UPDATE customers SET country = 'FR' WHERE id = 'c1'")
    _, revenue = check(runtime, writer)
    assert revenue == {"countries": [
        {"country": "FR", "customers": 2, "open_cents": 100, "paid_cents": 50},
    ]}
    runtime.stop()
    writer.close()


def test_the_write_model_declares_the_tables_with_their_constraints(
    runtime: Runtime, stores: Stores
) -> None:
    writer = stores.connect(foreign_keys=True)
    writer.execute("INSERT INTO customers (id, name, country) VALUES ('c1', 'Ann', 'DE')")
    for values in ("('i1', 'c1', 0, 'open')", "('i1', 'c1', 5, 'lost')",
                   "('i1', 'nobody', 5, 'open')"):
        with pytest.raises(sqlite3.IntegrityError):
            writer.execute("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                           f" VALUES {values}")
    writer.execute("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                   " VALUES ('i1', 'c1', 5, 'open')")
    [(notes, issued_at)] = writer.execute(
        "SELECT c.notes, i.issued_at FROM customers c JOIN invoices i ON i.customer_id = c.id"
    ).fetchall()
    assert notes == "" and len(issued_at) == 19  # CURRENT_TIMESTAMP: YYYY-MM-DD HH:MM:SS
    assert head(writer) == 2
    check(runtime, writer)
    writer.close()


def test_a_rolled_back_transaction_leaves_no_event_and_no_answer(
    runtime: Runtime, stores: Stores
) -> None:
    writer = stores.connect()
    writer.execute("INSERT INTO customers (id, name, country) VALUES ('c1', 'Ann', 'DE')")
    writer.execute("BEGIN")
    writer.execute("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                   " VALUES ('i1', 'c1', 100, 'open')")
    writer.execute("UPDATE customers SET country = 'NO'")
    writer.execute("ROLLBACK")
    assert head(writer) == 1
    balances, revenue = check(runtime, writer)
    assert balances["c1"]["open_cents"] == 0
    assert revenue["countries"][0]["country"] == "DE"
    writer.close()


def test_a_multi_row_transaction_is_applied_whole(runtime: Runtime, stores: Stores) -> None:
    writer = stores.connect()
    writer.execute("INSERT INTO customers (id, name, country) VALUES ('c1', 'Ann', 'DE')")
    runtime.catch_up(strict=True)
    writer.execute("BEGIN")
    for n in range(40):
        writer.execute("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                       " VALUES (?, 'c1', 10, 'open')", (f"i{n}",))
    writer.execute("UPDATE invoices SET status = 'paid' WHERE id < 'i2'")
    writer.execute("UPDATE customers SET country = 'NO'")
    writer.execute("COMMIT")
    position = head(writer)
    [runner] = runtime.runners
    result = runner.run_once()  # one batch, then the query
    assert (result.applied, result.position) == (position - 1, position)
    balances, revenue, _ = expected(writer)
    assert answers(runtime, position, wait=False) == (balances, revenue)
    writer.close()


def test_answers_never_show_half_a_transaction_while_the_projector_runs(stores: Stores) -> None:
    """Transfers between invoices of customers in different countries keep the totals."""
    writer = stores.connect()
    with Runtime(create_app(), store=stores.url, read_store=stores.read_url,
                 poll_interval_s=0.01) as runtime:
        writer.execute("BEGIN")
        for n, country in enumerate(COUNTRIES[:4]):
            writer.execute("INSERT INTO customers (id, name, country) VALUES (?, 'x', ?)",
                           (f"c{n}", country))
            writer.execute("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                           " VALUES (?, ?, 1000, 'open')", (f"i{n}", f"c{n}"))
        writer.execute("COMMIT")
        done = threading.Event()
        seen: list[tuple[int, int, int]] = []

        def read() -> None:
            while not done.is_set():
                answer = runtime.ask(RevenueByCountry())
                countries = answer.data["countries"]
                seen.append((answer.freshness.position,
                             sum(c["customers"] for c in countries),
                             sum(c["open_cents"] for c in countries)))

        reader = threading.Thread(target=read)
        reader.start()
        rng = random.Random(5)
        try:
            # Fewer events than a batch holds: a batch may end inside a larger transaction.
            for _ in range(150):
                source, target = rng.sample(range(4), 2)
                writer.execute("BEGIN")
                writer.execute("UPDATE invoices SET amount_cents = amount_cents - 1"
                               " WHERE id = ? AND amount_cents > 1", (f"i{source}",))
                writer.execute("UPDATE invoices SET amount_cents = amount_cents + 1"
                               " WHERE id = ? AND changes() = 1", (f"i{target}",))
                writer.execute("COMMIT")
            position = head(writer)
            final = runtime.ask(RevenueByCountry(), min_position=position, wait_ms=10000)
        finally:
            done.set()
            reader.join()
    writer.close()
    assert final.freshness.position == position
    assert sum(c["open_cents"] for c in final.data["countries"]) == 4000
    applied = [(customers, cents) for at, customers, cents in seen if at > 0]
    assert applied, "no answer was read while the projector ran"
    assert set(applied) == {(4, 4000)}
    assert len({at for at, _, _ in seen}) > 2, "the reader saw too few positions to matter"


def test_billing_is_an_installed_app_and_serve_starts_it(tmp_path: Path) -> None:
    app = load_app("billing")
    assert isinstance(app, App) and app.name == "billing"
    assert set(app.captures) == {"customers", "invoices"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env["PROJECTIONIST_AUTH"] = "off"
    server = ServeSubprocess(tmp_path, ["billing", "--quiet", "--store", "sqlite:///b.db"], env)
    try:
        server.wait_until_healthy()
        writer = sqlite3.connect(tmp_path / "b.db", isolation_level=None, timeout=10.0)
        writer.execute("INSERT INTO customers (id, name, country, notes)"
                       " VALUES ('c1', 'Ann', 'DE', 'hello')")
        position = head(writer)
        writer.close()
        answer = httpx.get(f"{server.url}/queries/CustomerBalance",
                           params={"customer_id": "c1", "min_position": position,
                                   "wait_ms": 10000}, timeout=15)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["notes_chars"] == 5
        missing = httpx.get(f"{server.url}/queries/CustomerBalance",
                            params={"customer_id": "c9"}, timeout=15)
        assert missing.status_code == 404, missing.text
    finally:
        server.stop()
