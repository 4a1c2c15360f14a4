"""The orders benchmark, in-process through the library: phases W, W8, P and L.

R   the raw database, no framework: one-row transactions/s, the ceiling W is measured against.
W   the workload's N orders from one thread, each command its own transaction: commands/s.
W8  the same N orders on a fresh store from 8 threads (thread t takes i % 8 == t).
P   the read model dropped, then time from starting the projector until its checkpoint equals
    the head: events/s; the read model is then checked row by row against the workload.
L   with the projector live and caught up, more commands in a closed loop; for each, the time
    from `execute` returning (committed, position in hand) until the projection's checkpoint
    covers that position, as a query with `min_position` would wait for it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from projectionist.app import App
from projectionist.errors import ProjectionistError
from projectionist.messages import Command
from projectionist.readstore.schema import projections_table
from projectionist.runtime import Runtime
from projectionist.stores import Store

from . import report
from .databases import BenchDatabases
from .raw import one_row_transactions
from .workload import (
    COMMANDS_PER_ORDER,
    ExpectedReadModel,
    command_sequence,
    create_app,
    order_views,
)
from .workload import customer_stats as customer_stats_view
from .workload import order_summary as order_summary_view

Progress = Callable[[str], None]


class BenchmarkFailed(ProjectionistError):
    """A phase could not finish (timeout, refused command); the figures would mean nothing."""


@dataclass(slots=True)
class Timing:
    """Wall-clock and CPU time of a phase; CPU time is this process's, every thread's.

    On a machine shared with other work the wall-clock figures drop while the CPU time per
    command or event stays about the same, so it is the steadier basis for comparing code.
    """

    wall_began: float
    cpu_began: float
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @classmethod
    def start(cls) -> Timing:
        return cls(time.perf_counter(), time.process_time())

    def stop(self) -> Timing:
        self.wall_s = time.perf_counter() - self.wall_began
        self.cpu_s = time.process_time() - self.cpu_began
        return self

    def cpu_us_per(self, count: int) -> float:
        return round(self.cpu_s / count * 1e6, 1)


@dataclass(frozen=True, slots=True)
class OrdersSettings:
    """What one run of the orders benchmark does."""

    backend: str = "sqlite"
    orders: int = 5000
    live_commands: int = 1000
    threads: int = 8
    write8: bool | None = None
    """Run W8; by default on PostgreSQL only (SQLite admits one writer at a time)."""
    batch_size: int = 1000
    raw_transactions: int = 2000
    url: str | None = None
    directory: Path | None = None
    keep: bool = False
    timeout_s: float = 600.0


def run_orders(settings: OrdersSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Runs every phase and returns the figures, the checks and the settings used."""
    say = progress or (lambda _message: None)
    app = create_app()
    n = settings.orders
    events = n * COMMANDS_PER_ORDER
    write8 = settings.write8 if settings.write8 is not None else settings.backend == "postgresql"
    result: dict[str, Any] = {
        "benchmark": "orders",
        "backend": settings.backend,
        "started_at": report.now_iso(),
        "host": report.host(),
        "orders": n,
        "events": events,
    }
    with BenchDatabases(settings.backend, url=settings.url, directory=settings.directory,
                        keep=settings.keep) as databases:
        raw_url, _ = databases.fresh("raw")
        say(f"R: {settings.raw_transactions:,} one-row transactions on the raw database")
        raw = one_row_transactions(raw_url, settings.raw_transactions)
        databases.drop(raw_url)
        result["raw_tx_per_s"] = round(raw, 1)

        write_url, read_url = databases.fresh("w")
        database_settings = databases.settings(write_url)

        say(f"W: {events:,} commands from one thread")
        write = _write(app, write_url, read_url, settings, [list(command_sequence(0, events))])
        result["write_cmds_per_s"] = round(events / write.wall_s, 1)
        result["write_seconds"] = round(write.wall_s, 3)
        result["write_vs_raw"] = round(events / write.wall_s / raw, 3)
        result["write_cpu_us_per_cmd"] = write.cpu_us_per(events)

        result["write8_cmds_per_s"] = None
        if write8:
            say(f"W8: {events:,} commands from {settings.threads} threads on a fresh store")
            w8_write, w8_read = databases.fresh("w8")
            concurrent = _write(app, w8_write, w8_read, settings, _split(n, settings.threads))
            databases.drop(w8_write)
            result["write8_cmds_per_s"] = round(events / concurrent.wall_s, 1)
            result["write8_seconds"] = round(concurrent.wall_s, 3)
            result["write8_cpu_us_per_cmd"] = concurrent.cpu_us_per(events)

        say("P: read model dropped; catching up")
        _drop_read_model(read_url)
        runtime = _runtime(app, write_url, read_url, settings)
        try:
            catchup, head = _catch_up(runtime, settings.timeout_s)
            result["catchup_events_per_s"] = round(head / catchup.wall_s, 1)
            result["catchup_seconds"] = round(catchup.wall_s, 3)
            result["catchup_cpu_us_per_event"] = catchup.cpu_us_per(head)
            expected = _expected(0, events)
            checks = verify(runtime, expected)

            say(f"L: {settings.live_commands:,} commands in a closed loop, projector live")
            live = list(command_sequence(n, settings.live_commands))
            visibility, command_ms = _live(runtime, live)
            result["live_commands"] = len(live)
            result["visibility_p50_ms"] = report.rounded(report.percentile(visibility, 50))
            result["visibility_p99_ms"] = report.rounded(report.percentile(visibility, 99))
            result["visibility_max_ms"] = report.rounded(max(visibility, default=None))
            result["live_command_p50_ms"] = report.rounded(report.percentile(command_ms, 50))
            result["live_command_p99_ms"] = report.rounded(report.percentile(command_ms, 99))
            for command in live:
                expected.apply(command)
            checks += verify(runtime, expected)
        finally:
            runtime.stop()
        failures = [check["detail"] for check in checks if not check["passed"]]
        result["verification"] = {"passed": not failures, "checks": checks,
                                  "failures": failures}
        result["settings"] = {
            **{k: v for k, v in asdict(settings).items() if k not in ("directory", "url")},
            "write8": write8,
            "read_store": "separate SQLite file" if settings.backend == "sqlite"
                          else "same database",
            "database": database_settings,
        }
        result["versions"] = report.versions()
        result["targets"] = {k: {"target": t} for k, t in report.TARGETS[settings.backend].items()}
    return result


def _runtime(app: App, write_url: str, read_url: str, settings: OrdersSettings,
             *, roles: Sequence[str] = ("command", "projector", "query")) -> Runtime:
    return Runtime(app, store=write_url, read_store=read_url, roles=roles,
                   batch_size=settings.batch_size, pool_size=max(5, settings.threads))


def _split(orders: int, threads: int) -> list[list[Command]]:
    """Thread t's commands: every order i with i % threads == t, each order's four in order."""
    parts: list[list[Command]] = [[] for _ in range(threads)]
    for i in range(orders):
        parts[i % threads].extend(command_sequence(i, COMMANDS_PER_ORDER))
    return parts


def _write(app: App, write_url: str, read_url: str, settings: OrdersSettings,
           parts: list[list[Command]]) -> Timing:
    """Runs each part in its own thread (the caller's for one part); the time it took."""
    runtime = _runtime(app, write_url, read_url, settings, roles=("command",))
    expected_head = sum(len(part) for part in parts)
    try:
        runtime.install()
        if len(parts) == 1:
            timing = Timing.start()
            for command in parts[0]:
                runtime.execute(command)
            elapsed = timing.stop()
        else:
            elapsed = _write_concurrently(runtime, parts)
        head = runtime.head()
        if head != expected_head:
            raise BenchmarkFailed(f"the log holds {head} events, not {expected_head}")
        return elapsed
    finally:
        runtime.stop()


def _write_concurrently(runtime: Runtime, parts: list[list[Command]]) -> Timing:
    start = threading.Barrier(len(parts) + 1)
    errors: list[BaseException] = []

    def work(commands: list[Command]) -> None:
        start.wait()
        try:
            for command in commands:
                runtime.execute(command)
        except BaseException as error:  # reported below, with the figure withheld
            errors.append(error)

    threads = [threading.Thread(target=work, args=(part,), name=f"bench-writer-{t}")
               for t, part in enumerate(parts)]
    for thread in threads:
        thread.start()
    start.wait()
    timing = Timing.start()
    for thread in threads:
        thread.join()
    elapsed = timing.stop()
    if errors:
        raise BenchmarkFailed(f"{len(errors)} writer threads failed; first: {errors[0]!r}"
                              ) from errors[0]
    return elapsed


def _drop_read_model(read_url: str) -> None:
    """Drops every version's tables of the projection and forgets its checkpoints."""
    store = Store(read_url)
    try:
        with store.write() as connection:
            for table in order_views.physical_tables(order_views.version):
                table.drop(connection, checkfirst=True)
            if sa.inspect(connection).has_table(projections_table.name):
                connection.execute(sa.delete(projections_table)
                                   .where(projections_table.c.name == order_views.name))
    finally:
        store.dispose()


def _catch_up(runtime: Runtime, timeout_s: float) -> tuple[Timing, int]:
    """The time from starting the projector until its checkpoint equals the head; the head."""
    runtime.install()
    head = runtime.head()
    timing = Timing.start()
    runtime.start()
    if not runtime.board.wait_until([order_views.name], head, timeout_s):
        raise BenchmarkFailed(f"the projection did not reach position {head} within"
                              f" {timeout_s:g} s")
    return timing.stop(), head


def _live(runtime: Runtime, commands: list[Command]) -> tuple[list[float], list[float]]:
    """Per command: ms from commit until the checkpoint covers it, and ms to execute it."""
    visibility: list[float] = []
    command_ms: list[float] = []
    names = [order_views.name]
    for command in commands:
        began = time.perf_counter()
        position = runtime.execute(command).position
        committed = time.perf_counter()
        if not runtime.board.wait_until(names, position, 10.0):
            raise BenchmarkFailed(f"position {position} was not applied within 10 s")
        visibility.append((time.perf_counter() - committed) * 1000.0)
        command_ms.append((committed - began) * 1000.0)
    return visibility, command_ms


def _expected(first_order: int, commands: int) -> ExpectedReadModel:
    expected = ExpectedReadModel()
    for command in command_sequence(first_order, commands):
        expected.apply(command)
    return expected


def verify(runtime: Runtime, expected: ExpectedReadModel) -> list[dict[str, Any]]:
    """Checks the read model against the workload and the log; one entry per check."""
    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"name": name, "passed": passed, "detail": detail})

    assert runtime.log is not None
    head = runtime.head()
    last_recorded: dict[str, float] = {}
    per_stream: dict[str, int] = defaultdict(int)
    position = count = 0
    gaps = 0
    while True:
        batch = runtime.log.read(position, 5000)
        if not batch:
            break
        for record in batch:
            gaps += record.position != position + 1
            position = record.position
            per_stream[record.stream] += 1
            last_recorded[record.stream] = record.recorded_at
        count += len(batch)
    events = sum(per_stream.values())
    check("log gap-free", gaps == 0 and count == head,
          f"the log has {count} events up to head {head} with {gaps} gaps")
    orders = len(expected.orders)
    check("orders in the log", len(per_stream) == orders,
          f"the log has {len(per_stream)} order streams; {orders} orders were placed")

    read_store = runtime.read_store
    summary = order_summary_view.physical(order_views.version)
    stats = customer_stats_view.physical(order_views.version)
    with read_store.read() as connection:
        checkpoint = runtime.checkpoints.load(connection, order_views.name, order_views.version)
        summary_rows = connection.execute(sa.select(
            summary.c.order_id, summary.c.customer_id, summary.c.status,
            summary.c.total_cents, summary.c.item_count, summary.c.updated_at,
        )).all()
        stats_rows = connection.execute(
            sa.select(stats.c.customer_id, stats.c.orders, stats.c.spent_cents)
        ).all()
    at = checkpoint.position if checkpoint is not None else None
    check("checkpoint at head", at == head, f"the checkpoint is at {at}, the head at {head}")

    actual_orders = {row.order_id: (row.customer_id, row.status, int(row.total_cents),
                                    int(row.item_count)) for row in summary_rows}
    check("order_summary rows", len(actual_orders) == len(expected.orders),
          f"order_summary has {len(actual_orders)} rows, expected {len(expected.orders)}")
    wrong = [oid for oid, row in expected.orders.items() if actual_orders.get(oid) != row]
    check("order_summary values", not wrong,
          f"{len(wrong)} orders differ from the workload"
          + (f", e.g. {wrong[0]}: {actual_orders.get(wrong[0])} != {expected.orders[wrong[0]]}"
             if wrong else ""))
    stale = [row.order_id for row in summary_rows
             if row.updated_at != last_recorded.get(f"order-{row.order_id}")]
    check("order_summary updated_at", not stale,
          f"{len(stale)} orders' updated_at is not the time of their latest event")
    total = sum(row[2] for row in expected.orders.values())
    actual_total = sum(row[2] for row in actual_orders.values())
    check("sum(total_cents)", actual_total == total,
          f"sum(total_cents) is {actual_total}, expected {total}")

    actual_stats = {row.customer_id: (int(row.orders), int(row.spent_cents))
                    for row in stats_rows}
    check("customer_stats rows", len(actual_stats) == len(expected.customers),
          f"customer_stats has {len(actual_stats)} rows, expected {len(expected.customers)}")
    wrong_customers = [c for c, row in expected.customers.items() if actual_stats.get(c) != row]
    check("customer_stats values", not wrong_customers,
          f"{len(wrong_customers)} customers differ from the workload")
    spent = sum(row[1] for row in expected.customers.values())
    actual_spent = sum(row[1] for row in actual_stats.values())
    check("sum(spent_cents)", actual_spent == spent,
          f"sum(spent_cents) is {actual_spent}, expected {spent}")
    check("events", events == head, f"{events} events in order streams, head {head}")
    return checks
