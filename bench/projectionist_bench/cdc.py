"""The change-data-capture benchmark: the billing app's tables written by plain SQL, captured
from PostgreSQL's WAL (pgoutput) by `projectionist serve billing` in a child process, and read
back through its queries over HTTP.

Per run, on a fresh database with the billing tables made by plain SQL and `--customers`
customers in them (taken by the capture's initial snapshot):

LIVE     `--writers` psycopg connections write N changes between them (invoice inserts and
         updates, customers moving country), `--per-transaction` changes per transaction, while
         the server captures and projects. Timed from the first write until a query with
         `min_position` of the last change's event answers: changes/s end to end. Also timed:
         the writes alone, and until the capture's checkpoint holds every change.
BACKLOG  the server stopped, N more changes written; then a capture alone, in the bench
         process, catches up round after round: changes/s of the capture by itself, with no
         writer or projector beside it (its own ceiling). Then the server is started again and
         timed until a query shows them all.
DECODE   the pgoutput rows of LIVE and BACKLOG, peeked from a second slot made before them, and
         decoded again in the bench process: pgoutput messages/s of the pure-Python decoder.
IDLE     `--samples` times: one invoice inserted in its own transaction, then
         `pg_current_wal_lsn()` read, then `CustomerBalance` asked with that `min_lsn`: ms from
         the commit until the answer, which must count the new invoice.
LOAD     the same while a background writer keeps `--load-rate` changes/s going to other
         customers.

After LIVE and BACKLOG every customer's balance and the revenue by country are compared with
the same aggregates computed by SQL over the tables, and the log must hold one event per change.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from projectionist.capture.postgres import pgoutput
from projectionist.capture.postgres.pgoutput import Relations
from projectionist.capture.postgres.transactions import group

from . import report
from .databases import DEFAULT_POSTGRES_URL, BenchDatabases
from .http import ChildServer
from .orders import BenchmarkFailed

Progress = Callable[[str], None]

COUNTRIES = ("DE", "FR", "IT", "NL", "PL", "SE")
TABLES = (
    "CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL, country text NOT NULL,"
    " notes text NOT NULL DEFAULT '')",
    "CREATE TABLE invoices (id text PRIMARY KEY, customer_id text NOT NULL REFERENCES"
    " customers(id), amount_cents bigint NOT NULL CHECK (amount_cents > 0), status text NOT NULL"
    " CHECK (status IN ('open', 'paid', 'void')), issued_at timestamptz NOT NULL DEFAULT now())",
)
BALANCES_SQL = """
SELECT c.id AS customer_id, c.country,
       count(i.id) FILTER (WHERE i.status <> 'void') AS invoices,
       coalesce(sum(i.amount_cents) FILTER (WHERE i.status = 'open'), 0) AS open_cents,
       coalesce(sum(i.amount_cents) FILTER (WHERE i.status = 'paid'), 0) AS paid_cents
FROM customers c LEFT JOIN invoices i ON i.customer_id = c.id GROUP BY c.id ORDER BY c.id"""
WAIT_MS = 30_000
TARGETS = {
    "changes_per_s": ">= 10,000",
    "idle_p50_ms": "<= 20",
    "idle_p99_ms": "<= 60",
    "load_p50_ms": "<= 20",
    "load_p99_ms": "<= 60",
}
ANCHORS = {
    "sequin": {"changes_per_s": 10_000, "mean_ms": 22, "p99_ms": 34},
    "debezium": {"changes_per_s": 6_000, "mean_ms": 258, "p99_ms": 499},
    "note": "published figures of Sequin and Debezium, on larger machines than this one: anchors,"
            " not measured here",
}


@dataclass(frozen=True, slots=True)
class CdcSettings:
    """What one run of the CDC benchmark does."""

    changes: int = 20_000
    runs: int = 1
    samples: int = 300
    writers: int = 4
    per_transaction: int = 10
    customers: int = 200
    load_rate: float = 2000.0
    url: str | None = None
    timeout_s: float = 600.0


# The workload: changes as plain SQL


@dataclass(slots=True)
class Ledger:
    """What the changes written so far hold, so that each next change changes a kept column."""

    invoices: dict[str, str]
    """invoice id -> status"""
    countries: dict[str, str]
    """customer id -> country"""


def writes(prefix: str, writer: int, writers: int, count: int, customers: list[str],
           ledger: Ledger, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """`count` statements of one writer, each changing exactly one row's kept columns. A writer
    moves only its own customers (i % writers) and updates only its own invoices, so writers
    never wait on each other's locks."""
    own = [c for i, c in enumerate(customers) if i % writers == writer]
    mine: list[str] = []
    made: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.05 and own:
            customer = rng.choice(own)
            country = rng.choice([c for c in COUNTRIES if c != ledger.countries[customer]])
            ledger.countries[customer] = country
            made.append(("UPDATE customers SET country = %(country)s WHERE id = %(id)s",
                         {"country": country, "id": customer}))
        elif roll < 0.45 and mine:
            invoice = rng.choice(mine)
            if ledger.invoices[invoice] == "open":
                status = rng.choice(("paid", "void"))
                ledger.invoices[invoice] = status
                made.append(("UPDATE invoices SET status = %(status)s WHERE id = %(id)s",
                             {"status": status, "id": invoice}))
            else:
                made.append(("UPDATE invoices SET amount_cents = amount_cents + 1"
                             " WHERE id = %(id)s", {"id": invoice}))
        else:
            invoice = f"{prefix}-{writer}-{n}"
            mine.append(invoice)
            ledger.invoices[invoice] = "open"
            made.append(("INSERT INTO invoices (id, customer_id, amount_cents, status)"
                         " VALUES (%(id)s, %(customer)s, %(amount)s, 'open')",
                         {"id": invoice, "customer": rng.choice(customers),
                          "amount": rng.randint(1, 100_000)}))
    return made


def write_all(dsn: str, statements: list[tuple[str, dict[str, Any]]], per_transaction: int,
              start: threading.Barrier | None = None) -> None:
    """The statements in transactions of `per_transaction`, on a connection of their own."""
    with psycopg.connect(dsn) as connection:
        if start is not None:
            start.wait()
        for at in range(0, len(statements), per_transaction):
            with connection.transaction(), connection.cursor() as cursor:
                for sql, params in statements[at:at + per_transaction]:
                    cursor.execute(sql, params)


def run_writers(dsn: str, parts: list[list[tuple[str, dict[str, Any]]]], per_transaction: int
                ) -> tuple[float, float]:
    """Each part on its own connection and thread, started together: (began, ended) in
    `time.perf_counter()`."""
    start = threading.Barrier(len(parts) + 1)
    failures: list[BaseException] = []

    def write(part: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            write_all(dsn, part, per_transaction, start)
        except BaseException as error:
            failures.append(error)
            start.abort()

    threads = [threading.Thread(target=write, args=(part,), daemon=True) for part in parts]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()  # broken when a writer failed to connect: reported below
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise BenchmarkFailed(f"a writer failed: {failures[0]}")
    return began, time.perf_counter()


# The server and what it answers


class BillingServer(ChildServer):
    """`projectionist serve billing` in a child process, every role (capture too), no auth."""

    name = "billing server"

    def __init__(self, store_url: str, folder: Path) -> None:
        super().__init__(folder)
        self._env["PROJECTIONIST_AUTH"] = "off"
        self._command = [
            sys.executable, "-c", "from projectionist.cli import main; main()", "serve",
            "billing", "--host", self.host, "--port", str(self.port), "--store", store_url,
            "--quiet",
        ]


class Client:
    """Queries over one keep-alive HTTP/1.1 connection."""

    def __init__(self, server: ChildServer) -> None:
        self.connection = http.client.HTTPConnection(server.host, server.port, timeout=60)

    def ask(self, name: str, **params: Any) -> tuple[int, dict[str, Any]]:
        path = f"/queries/{name}?{urlencode(params)}"
        try:
            self.connection.request("GET", path)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closes a keep-alive connection idle for 5 s (while the writers
            # write): a query is safe to send again, on a new connection.
            self.connection.close()
            self.connection.request("GET", path)
            response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def fresh(self, name: str, timeout_s: float, **params: Any) -> dict[str, Any]:
        """The answer once it is as fresh as asked, asking again after each 503."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, body = self.ask(name, wait_ms=WAIT_MS, **params)
            if status == 200:
                return body
            if status != 503 or time.monotonic() > deadline:
                raise BenchmarkFailed(f"{name} {params} answered {status}: {body}")

    def close(self) -> None:
        self.connection.close()


class Database:
    """The benchmark's database through psycopg: the writers' DSN and small reads."""

    def __init__(self, store_url: str) -> None:
        url = sa.engine.make_url(store_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.name = str(url.database)
        # Slot names are server-wide: one of this database's own, dropped with it.
        self.decoder_slot = f"{self.name}_decoder"

    def one(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            row = connection.execute(sql, params).fetchone()
            return None if row is None else row[0]

    def lsn(self) -> str:
        return str(self.one("SELECT pg_current_wal_lsn()::text"))



def wait_captured(database: Database, position: int, timeout_s: float) -> float:
    """Polls the capture's checkpoint every 2 ms until it holds `position`; when it did, in
    `time.perf_counter()`."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT coalesce(max(position), 0) FROM projectionist_capture_state").fetchone()
            at = int(row[0]) if row else 0
            if at >= position:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"the capture reached position {at}, not {position},"
                                      f" within {timeout_s:g} s")
            time.sleep(0.002)


# One run


def _check(checks: list[dict[str, Any]], name: str, passed: bool, detail: str) -> None:
    checks.append({"name": name, "passed": passed, "detail": detail})


def run_cdc(settings: CdcSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Runs every phase `settings.runs` times; the figures are the medians over the runs."""
    say = progress or (lambda _message: None)
    checks: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "benchmark": "cdc",
        "backend": "postgresql",
        "started_at": report.now_iso(),
        "host": report.host(),
        "changes": settings.changes,
        "runs": settings.runs,
    }
    store_settings: dict[str, Any] = {}
    with BenchDatabases("postgresql", url=settings.url) as databases:
        for number in range(1, settings.runs + 1):
            store_url, _ = databases.fresh("cdc")
            try:
                if not store_settings:
                    store_settings = databases.settings(store_url)
                say(f"run {number} of {settings.runs}")
                runs.append(_run(settings, store_url, databases.directory, checks, say))
            finally:
                _drop_slots(settings.url or DEFAULT_POSTGRES_URL, store_url)
                databases.drop(store_url)
    result["figures"] = {key: _median([run.get(key) for run in runs]) for key in runs[0]}
    result["per_run"] = runs
    result["targets"] = TARGETS
    result["anchors"] = ANCHORS
    failures = [check["detail"] for check in checks if not check["passed"]]
    result["verification"] = {"passed": not failures, "checks": checks, "failures": failures}
    result["settings"] = {
        "store": store_settings,
        "samples": settings.samples,
        "writers": settings.writers,
        "per_transaction": settings.per_transaction,
        "customers": settings.customers,
        "load_rate": settings.load_rate,
        "server": "projectionist serve billing, every role in one child process",
        "read_store": "the write store's database",
    }
    result["versions"] = report.versions()
    return result


def _median(values: list[Any]) -> Any:
    found = [v for v in values if v is not None]
    if not found:
        return None
    middle = statistics.median(found)
    return round(middle, 3) if isinstance(middle, float) else middle


def _drop_slots(admin_url: str, store_url: str) -> None:
    """Drops the replication slots of the run's database, which would keep it from dropping."""
    name = sa.engine.make_url(store_url).database
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE database = :db AND active_pid IS NOT NULL"), {"db": name})
            connection.execute(sa.text(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE database = :db"), {"db": name})
    finally:
        admin.dispose()


# long: one run's phases in order, each short, sharing the server and the figures
def _run(settings: CdcSettings, store_url: str, folder: Path, checks: list[dict[str, Any]],
         say: Progress) -> dict[str, Any]:
    database = Database(store_url)
    rng = random.Random(7)
    customers = [f"c{k:05d}" for k in range(settings.customers)]
    latency_customers = [f"lat{k:03d}" for k in range(10)]
    ledger = Ledger({}, {})
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        for statement in TABLES:
            connection.execute(statement)
        with connection.cursor() as cursor:
            for customer in customers + latency_customers:
                ledger.countries[customer] = rng.choice(COUNTRIES)
            cursor.executemany(
                "INSERT INTO customers (id, name, country) VALUES (%s, %s, %s)",
                [(c, f"Customer {c}", ledger.countries[c]) for c in customers + latency_customers])
    seeded = len(customers) + len(latency_customers)
    figures: dict[str, Any] = {}
    server = BillingServer(store_url, folder)
    client: Client | None = None
    try:
        server.start(timeout_s=60)
        client = Client(server)
        client.fresh("RevenueByCountry", settings.timeout_s, min_lsn=database.lsn())
        # Made once the server made the publication, which decoding looks up.
        database.one("SELECT pg_create_logical_replication_slot(%(slot)s, 'pgoutput')::text",
                     {"slot": database.decoder_slot})
        writers = max(1, settings.writers)

        say(f"LIVE: {settings.changes:,} changes from {writers} writers while capturing")
        parts = [writes("live", w, writers, settings.changes // writers
                        + (w < settings.changes % writers), customers, ledger, rng)
                 for w in range(writers)]
        target = seeded + settings.changes
        watch: dict[str, float] = {}
        watcher = threading.Thread(target=lambda: watch.update(
            captured=wait_captured(database, target, settings.timeout_s)), daemon=True)
        watcher.start()
        began, written = run_writers(database.dsn, parts, settings.per_transaction)
        client.fresh("RevenueByCountry", settings.timeout_s, min_position=target)
        visible = time.perf_counter()
        watcher.join(settings.timeout_s)
        figures["changes_per_s"] = round(settings.changes / (visible - began), 1)
        figures["writes_per_s"] = round(settings.changes / (written - began), 1)
        figures["capture_changes_per_s"] = (
            round(settings.changes / (watch["captured"] - began), 1) if "captured" in watch
            else None)
        figures["visible_after_writes_ms"] = round((visible - written) * 1000, 1)
        _verify(client, database, checks, "LIVE", target)

        say(f"BACKLOG: {settings.changes:,} changes written with the server stopped")
        server.stop()
        client.close()
        parts = [writes("backlog", w, writers, settings.changes // writers
                        + (w < settings.changes % writers), customers, ledger, rng)
                 for w in range(writers)]
        run_writers(database.dsn, parts, settings.per_transaction)
        target += settings.changes
        figures["backlog_capture_changes_per_s"] = _capture_backlog(store_url, settings)
        began = time.perf_counter()
        server.start(timeout_s=60)
        client = Client(server)
        client.fresh("RevenueByCountry", settings.timeout_s, min_position=target)
        figures["backlog_visible_s"] = round(time.perf_counter() - began, 3)
        _verify(client, database, checks, "BACKLOG", target)

        say("DECODE: the pgoutput rows of LIVE and BACKLOG, decoded again")
        figures.update(_decode_rate(database))

        for phase, rate in (("idle", 0.0), ("load", settings.load_rate)):
            say(f"{phase.upper()}: {settings.samples} commits, each until its min_lsn answer"
                + (f", beside {rate:g} changes/s" if rate else ""))
            figures.update(_latency(settings, database, client, phase, rate, latency_customers,
                                    customers, ledger, checks))
    finally:
        if client is not None:
            client.close()
        server.stop()
    return figures


def _capture_backlog(store_url: str, settings: CdcSettings) -> float:
    """Changes/s of the capture alone, in this process, catching up with N changes written
    while it was stopped: round after round until it has appended them all."""
    from projectionist.runtime import Runtime
    from projectionist_examples.billing import create_app

    runtime = Runtime(create_app(), store=store_url, roles="capture")
    try:
        runtime.install()
        capturer = runtime.capturer
        assert capturer is not None
        appended = 0
        deadline = time.monotonic() + settings.timeout_s
        began = time.perf_counter()
        while appended < settings.changes:
            appended += capturer.run_once()
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"the capture appended {appended} of"
                                      f" {settings.changes} changes in {settings.timeout_s:g} s")
        return round(appended / (time.perf_counter() - began), 1)
    finally:
        runtime.stop()


def _verify(client: Client, database: Database, checks: list[dict[str, Any]], phase: str,
            events: int) -> None:
    """Every customer's balance and the revenue by country against SQL over the tables, and
    one event per change in the log."""
    lsn = database.lsn()
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        expected = {row[0]: row for row in connection.execute(BALANCES_SQL)}
        logged = connection.execute("SELECT count(*) FROM projectionist_events").fetchone()
    wrong: list[str] = []
    for customer, (_, country, invoices, open_cents, paid_cents) in expected.items():
        answer = client.fresh("CustomerBalance", 60, customer_id=customer, min_lsn=lsn)["data"]
        got = (answer["country"], answer["invoices"], answer["open_cents"], answer["paid_cents"])
        if got != (country, invoices, open_cents, paid_cents):
            wrong.append(f"{customer}: {got}, SQL says"
                         f" {(country, invoices, open_cents, paid_cents)}")
    revenue: dict[str, list[int]] = {}
    for _, country, _, open_cents, paid_cents in expected.values():
        sums = revenue.setdefault(country, [0, 0, 0])
        sums[0] += 1
        sums[1] += int(open_cents)
        sums[2] += int(paid_cents)
    answer = client.fresh("RevenueByCountry", 60, min_lsn=lsn)["data"]
    got_revenue = {c["country"]: [c["customers"], c["open_cents"], c["paid_cents"]]
                   for c in answer["countries"]}
    if got_revenue != revenue:
        wrong.append(f"RevenueByCountry {got_revenue}, SQL says {revenue}")
    _check(checks, f"{phase} answers", not wrong,
           f"{phase}: {len(expected)} balances and the revenue compared with SQL,"
           f" {len(wrong)} wrong" + (f", e.g. {wrong[0]}" if wrong else ""))
    count = int(logged[0]) if logged else 0
    _check(checks, f"{phase} events", count == events,
           f"{phase}: the log holds {count} events for {events} changes")


def _decode_rate(database: Database) -> dict[str, Any]:
    """Messages/s of `pgoutput.decode` alone, and of grouping them into transactions (decode
    included), over the rows peeked from the decoder's slot; then the slot is dropped."""
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        publication = "projectionist_billing"
        rows = [bytes(r[0]) for r in connection.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
            " 'proto_version', '1', 'publication_names', %s, 'messages', 'true')",
            (database.decoder_slot, publication))]
        connection.execute("SELECT pg_drop_replication_slot(%s)", (database.decoder_slot,))
    if not rows:
        return {}
    began = time.perf_counter()
    for data in rows:
        pgoutput.decode(data)
    decoded = time.perf_counter() - began
    began = time.perf_counter()
    grouped = group(((data,) for data in rows), Relations())
    grouping = time.perf_counter() - began
    return {
        "decoder_messages": len(rows),
        "decoder_messages_per_s": round(len(rows) / decoded, 1),
        "decoder_group_messages_per_s": round(len(rows) / grouping, 1),
        "decoder_transactions": len(grouped.transactions),
    }


# long: the closed loop of one latency phase, with its optional background load
def _latency(settings: CdcSettings, database: Database, client: Client, phase: str,
             rate: float, mine: list[str], others: list[str], ledger: Ledger,
             checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per sample: an invoice inserted for one of `mine`, committed; the WAL LSN read; then
    CustomerBalance asked with that min_lsn until answered. The answer must count it."""
    stop = threading.Event()
    loaded: list[int] = []
    load_failures: list[BaseException] = []

    def load() -> None:
        try:
            loaded.append(_load(database.dsn, rate, settings.per_transaction, others, ledger,
                                stop))
        except BaseException as error:
            load_failures.append(error)

    background = threading.Thread(target=load, daemon=True) if rate else None
    rng = random.Random(phase)
    counts = {c: _invoices_of(client, database, c) for c in mine}
    visible: list[float] = []
    wrong: list[str] = []
    began = time.perf_counter()
    if background is not None:
        background.start()
        time.sleep(1.0)  # the load at its pace before the first sample
    try:
        with psycopg.connect(database.dsn, autocommit=True) as connection:
            for n in range(settings.samples):
                customer = mine[n % len(mine)]
                connection.execute(
                    "INSERT INTO invoices (id, customer_id, amount_cents, status)"
                    " VALUES (%s, %s, 100, 'open')", (f"{phase}-{uuid.uuid4().hex}", customer))
                committed = time.perf_counter()
                lsn = connection.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                status, body = client.ask("CustomerBalance", customer_id=customer,
                                          min_lsn=lsn[0] if lsn else "0/0", wait_ms=WAIT_MS)
                visible.append((time.perf_counter() - committed) * 1000.0)
                counts[customer] += 1
                if status != 200 or body["data"]["invoices"] != counts[customer]:
                    wrong.append(f"{customer}: {status} {body}, expected {counts[customer]}"
                                 " invoices")
                time.sleep(rng.uniform(0.0, 0.02))  # not in step with the capture's polls
    finally:
        stop.set()
        if background is not None:
            background.join(30)
    seconds = time.perf_counter() - began
    if load_failures:
        raise BenchmarkFailed(f"the background writer failed: {load_failures[0]}")
    _check(checks, f"{phase} answers", not wrong and len(visible) == settings.samples,
           f"{phase}: {len(visible)} commits answered with min_lsn, {len(wrong)} wrong"
           + (f", e.g. {wrong[0]}" if wrong else ""))
    figures = {
        f"{phase}_p50_ms": report.rounded(report.percentile(visible, 50)),
        f"{phase}_p99_ms": report.rounded(report.percentile(visible, 99)),
        f"{phase}_mean_ms": report.rounded(statistics.fmean(visible) if visible else None),
        f"{phase}_max_ms": report.rounded(max(visible, default=None)),
    }
    if rate:
        figures["load_changes_per_s"] = round(sum(loaded) / max(seconds - 1.0, 1e-9), 1)
    return figures


def _invoices_of(client: Client, database: Database, customer: str) -> int:
    answer = client.fresh("CustomerBalance", 60, customer_id=customer, min_lsn=database.lsn())
    return int(answer["data"]["invoices"])


def _load(dsn: str, rate: float, per_transaction: int, customers: list[str], ledger: Ledger,
          stop: threading.Event) -> int:
    """Writes `rate` changes/s in transactions of `per_transaction` until `stop`; the count."""
    rng = random.Random(11)
    done = 0
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    with psycopg.connect(dsn) as connection:
        while not stop.is_set():
            batch = writes(f"{prefix}-{done}", 0, 1, per_transaction, customers, ledger, rng)
            with connection.transaction(), connection.cursor() as cursor:
                for sql, params in batch:
                    cursor.execute(sql, params)
            done += len(batch)
            ahead = began + done / rate - time.perf_counter()
            if ahead > 0:
                stop.wait(ahead)
    return done


# The report

ROWS = (
    ("changes_per_s", "LIVE", "changes/s, first write → all visible"),
    ("writes_per_s", "LIVE", "changes/s written (the writers alone)"),
    ("capture_changes_per_s", "LIVE", "changes/s, first write → all captured"),
    ("visible_after_writes_ms", "LIVE", "ms from the last write to all visible"),
    ("backlog_capture_changes_per_s", "BACKLOG", "changes/s captured, nothing else writing"),
    ("backlog_visible_s", "BACKLOG", "s from starting the server to all visible"),
    ("decoder_messages_per_s", "DECODE", "pgoutput messages/s, decode()"),
    ("decoder_group_messages_per_s", "DECODE", "messages/s, decoded into transactions"),
    ("idle_p50_ms", "IDLE", "commit → min_lsn answer, p50 ms"),
    ("idle_p99_ms", "IDLE", "commit → min_lsn answer, p99 ms"),
    ("idle_mean_ms", "IDLE", "commit → min_lsn answer, mean ms"),
    ("load_p50_ms", "LOAD", "commit → min_lsn answer, p50 ms"),
    ("load_p99_ms", "LOAD", "commit → min_lsn answer, p99 ms"),
    ("load_mean_ms", "LOAD", "commit → min_lsn answer, mean ms"),
    ("load_changes_per_s", "LOAD", "background changes/s"),
)


def print_cdc(console: Console, result: dict[str, Any]) -> None:
    """The CDC benchmark as a table: each figure beside its target and the anchors."""
    figures = result["figures"]
    settings = result["settings"]
    table = Table(title=f"cdc benchmark — postgresql, {result['changes']:,} changes,"
                        f" {settings['writers']} writers, {settings['per_transaction']} per"
                        f" transaction; median of {result['runs']} run(s)")
    for column in ("phase", "figure", "value", "target", "Sequin", "Debezium"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for key, phase, label in ROWS:
        table.add_row(phase, label, report.figure(figures.get(key)), TARGETS.get(key, "-"),
                      *(_anchor(name, key) for name in ("sequin", "debezium")))
    console.print(table)
    console.print("Sequin and Debezium: their published figures, on larger machines; anchors"
                  " only, not measured here")
    load = result["host"].get("load_average_1m")
    if load is not None and result["host"].get("cpus") and load >= result["host"]["cpus"]:
        console.print(f"[yellow]the machine was busy: load average {load} on"
                      f" {result['host']['cpus']} CPUs at the start")
    report.print_verification(console, result["verification"])


def _anchor(name: str, key: str) -> str:
    anchor = ANCHORS[name]
    assert isinstance(anchor, dict)
    if key == "changes_per_s":
        return f"{anchor['changes_per_s']:,}"
    if key.endswith("_mean_ms"):
        return str(anchor["mean_ms"])
    if key.endswith("_p99_ms"):
        return str(anchor["p99_ms"])
    return "-"


