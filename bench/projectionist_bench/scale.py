"""The scale benchmark: partitioned projections over projector processes, and query processes.

APPLY  The orders workload's events (one per command) appended straight to the log, once per
       run. Per (partitions, processes) cell, on an empty read store of its own: that many
       `projectionist serve projectionist_bench.scale_app:partitions_<P> --roles projector`
       child processes, timed from the last poll of the read store before the build's first
       checkpoint move (their start-up left out) until its position reaches the head.
       Events/s, and the children's CPU (from /proc) per event over the same window. On
       PostgreSQL, the log rows the children read per event (pg_stat_user_tables): each
       process holding a partition reads the whole log.
QUERY  1, 2, 4 `serve --roles query` processes over the last cell's read store, closed-loop
       clients asking GetOrderSummary of random orders for `duration` seconds: queries/s and
       the servers' CPU per query.

Every read model is checked row by row against the workload before it counts.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from . import report
from .databases import BenchDatabases
from .http import _NETWORK_ERRORS, ChildServer, Connection, Tally
from .orders import BenchmarkFailed
from .scale_app import PREFIX, seed_log, verify_cell
from .workload import order_views

Progress = Callable[[str], None]
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class ScaleSettings:
    """What one invocation of the scale benchmark does."""

    backend: str = "postgresql"
    events: int = 100_000
    duration_s: float = 10.0
    runs: int = 1
    url: str | None = None
    directory: Path | None = None
    partitions: tuple[int, ...] = (1, 2, 4)
    processes: tuple[int, ...] = (1, 2)
    query_processes: tuple[int, ...] = (1, 2, 4)
    query_clients: int = 16
    """Closed-loop clients in total, spread over the query processes."""
    batch_size: int = 1000
    timeout_s: float = 600.0
    startup_timeout_s: float = 60.0


class Serve(ChildServer):
    """`projectionist serve` of the scale app in a child process, with the given roles."""

    def __init__(self, folder: Path, partitions: int, roles: str, write_url: str,
                 read_url: str, batch_size: int, number: int) -> None:
        self.name = f"{roles} process {number}"
        super().__init__(folder)
        self.log_path = folder / f"{roles}-{number}.log"
        self._env["PROJECTIONIST_AUTH"] = "off"
        self._command = [
            sys.executable, "-c", "from projectionist.cli import main; main()", "serve",
            f"projectionist_bench.scale_app:{PREFIX}{partitions}", "--roles", roles,
            "--host", self.host, "--port", str(self.port), "--store", write_url,
            "--read-store", read_url, "--batch-size", str(batch_size), "--quiet",
        ]

    def spawn(self) -> None:
        """Starts the process without waiting for it to answer."""
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self._command, cwd=self._folder, env=self._env,
                                             stdout=log, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise BenchmarkFailed(f"the {self.name} exited with {self._process.returncode}:\n"
                                  f"{self.log_tail()}")


@contextmanager
def _children(servers: Sequence[Serve]) -> Iterator[Sequence[Serve]]:
    """Every child stopped on the way out, whatever went wrong."""
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def _cpu(servers: Sequence[Serve]) -> float:
    return sum(server.cpu_seconds() or 0.0 for server in servers)



# APPLY


_BUILD = sa.text("SELECT position FROM projectionist_projections"
                 " WHERE name = :name AND generation = :generation")
_PARTS = sa.text("SELECT position FROM projectionist_partitions"
                 " WHERE name = :name AND generation = :generation")
_LOG_ROWS = sa.text("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
                    " FROM pg_stat_user_tables WHERE relname = 'projectionist_events'")


def _positions(engine: sa.Engine) -> tuple[int, list[int]]:
    """(the build's position, its partitions'); (0, []) before the children made the build."""
    keys = {"name": order_views.name, "generation": order_views.version}
    try:
        with engine.connect() as connection:
            build = connection.execute(_BUILD, keys).scalar()
            parts = [int(p) for p in connection.execute(_PARTS, keys).scalars()]
    except sa.exc.DBAPIError:
        return 0, []
    if build is None:
        return 0, []
    # An unpartitioned build has no partition rows: it is its own one partition.
    return int(build), parts or [int(build)]


def _log_rows_read(write_url: str) -> int | None:
    """Rows of the log read so far, by PostgreSQL's statistics; None on SQLite."""
    if not write_url.startswith("postgresql"):
        return None
    engine = sa.create_engine(write_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(_LOG_ROWS).scalar() or 0)
    finally:
        engine.dispose()


# long: one cell, from spawning the children to their CPU and the log rows they read
def apply_cell(settings: ScaleSettings, folder: Path, write_url: str, read_url: str,
               head: int, partitions: int, processes: int) -> dict[str, Any]:
    """Starts `processes` projector processes on an empty read store; the cell's figures."""
    servers = [Serve(folder, partitions, "projector", write_url, read_url, settings.batch_size,
                     k) for k in range(processes)]
    engine = sa.create_engine(read_url)
    rows_before = _log_rows_read(write_url)
    try:
        with _children(servers):
            for server in servers:
                server.spawn()
            spawned = time.perf_counter()
            deadline = time.monotonic() + settings.timeout_s
            # The last poll before any partition moved: the window starts there (children
            # started, imports done), so start-up is not counted; it ends within POLL_S.
            idle: tuple[float, float] = (spawned, 0.0)
            moved = False
            while True:
                for server in servers:
                    server.check_alive()
                now, cpu = time.perf_counter(), _cpu(servers)
                build, parts = _positions(engine)
                moved = moved or any(parts)
                if not moved:
                    idle = (now, cpu)
                if parts and build >= head and min(parts) >= head:
                    break
                if time.monotonic() > deadline:
                    raise BenchmarkFailed(f"{partitions} partition(s) over {processes}"
                                          f" process(es) stood at {build} of {head} after"
                                          f" {settings.timeout_s:g} s")
                time.sleep(POLL_S)
            cpu_end = _cpu(servers)
    finally:
        engine.dispose()
    seconds = max(now - idle[0], POLL_S)
    if rows_before is not None:
        time.sleep(0.5)  # the children's connections report their statistics as they close
    rows_after = _log_rows_read(write_url)
    rows_read = (rows_after - rows_before
                 if rows_after is not None and rows_before is not None else None)
    return {
        "partitions": partitions,
        "processes": processes,
        "seconds": round(seconds, 3),
        "seconds_from_spawn": round(now - spawned, 3),
        "events_per_s": round(head / seconds, 1),
        "cpu_s": round(cpu_end - idle[1], 3),
        "cpu_us_per_event": round((cpu_end - idle[1]) / head * 1e6, 1),
        "log_rows_read_per_event": round(rows_read / head, 2) if rows_read else None,
    }


# QUERY


async def _clients(servers: Sequence[Serve], orders: list[str], clients: int,
                   duration_s: float) -> tuple[Tally, float]:
    """Closed-loop clients, spread over the servers, for `duration_s`; (tally, seconds)."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    began = loop.time()
    stop_at = began + duration_s

    async def client(k: int) -> None:
        server = servers[k % len(servers)]
        connection = Connection(server.host, server.port, None)
        rng = random.Random(k)
        try:
            while (sent := loop.time()) < stop_at:
                path = f"/queries/GetOrderSummary?{urlencode({'order_id': rng.choice(orders)})}"
                try:
                    status, _ = await connection.request("GET", path)
                except _NETWORK_ERRORS as error:
                    tally.fail(error)
                    continue
                tally.add(status, loop.time() - sent)
        finally:
            connection.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return tally, loop.time() - began


def query_cell(settings: ScaleSettings, folder: Path, write_url: str, read_url: str,
               partitions: int, processes: int, orders: list[str]) -> dict[str, Any]:
    """`processes` query processes over a complete read store, driven flat out."""
    servers = [Serve(folder, partitions, "query", write_url, read_url, settings.batch_size, k)
               for k in range(processes)]
    with _children(servers):
        for server in servers:
            server.start(settings.startup_timeout_s)
        cpu, client_cpu = _cpu(servers), time.process_time()
        tally, seconds = asyncio.run(_clients(servers, orders, settings.query_clients,
                                              settings.duration_s))
        cpu = _cpu(servers) - cpu
        client_cpu = time.process_time() - client_cpu
    figures = tally.summary(seconds)
    count = figures["count"]
    return {
        "processes": processes,
        "seconds": round(seconds, 3),
        "queries_per_s": figures["per_s"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "errors": figures["errors"],
        "statuses": figures["statuses"],
        "cpu_us_per_query": round(cpu / count * 1e6, 1) if count else None,
        "server_cpu_percent": round(100 * cpu / seconds, 1),
        "client_cpu_percent": round(100 * client_cpu / seconds, 1),
    }


# The whole benchmark


@contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit here, so that the children and databases are cleaned up."""
    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, leave)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_scale(settings: ScaleSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Every run of every cell; medians per cell, the checks, the settings used."""
    with _terminated_as_exit():
        return _run_scale(settings, progress)


# long: the runs, each seeding a log, then every APPLY cell, then every QUERY cell
def _run_scale(settings: ScaleSettings, progress: Progress | None) -> dict[str, Any]:
    say = progress or (lambda _message: None)
    applied: dict[tuple[int, int], list[dict[str, Any]]] = {}
    queried: dict[int, list[dict[str, Any]]] = {}
    checks: list[dict[str, Any]] = []
    store_settings: dict[str, Any] = {}
    result: dict[str, Any] = {"benchmark": "scale", "backend": settings.backend,
                              "events": settings.events, "runs": settings.runs,
                              "started_at": report.now_iso(), "host": report.host()}
    with BenchDatabases(settings.backend, url=settings.url,
                        directory=settings.directory) as databases:
        for run in range(settings.runs):
            write_url, scratch_url = databases.fresh(f"scale_log_{run}")
            say(f"run {run + 1}: seeding {settings.events:,} events")
            expected = seed_log(write_url, scratch_url, settings.events)
            store_settings = store_settings or databases.settings(write_url)
            orders = sorted(expected.orders)
            served: tuple[str, int] | None = None
            for partitions in settings.partitions:
                for processes in settings.processes:
                    label = f"p{partitions}x{processes}"
                    _, read_url = databases.fresh(f"scale_{label}_{run}")
                    say(f"APPLY: {partitions} partition(s), {processes} projector process(es)")
                    figures = apply_cell(settings, databases.directory, write_url, read_url,
                                         settings.events, partitions, processes)
                    applied.setdefault((partitions, processes), []).append(figures)
                    checks += verify_cell(write_url, read_url, partitions, expected, label)
                    if served is not None:
                        databases.drop(served[0])
                    served = (read_url, partitions)
            assert served is not None
            for processes in settings.query_processes:
                say(f"QUERY: {processes} query process(es), {settings.duration_s:g} s")
                queried.setdefault(processes, []).append(query_cell(
                    settings, databases.directory, write_url, served[0], served[1], processes,
                    orders))
            databases.drop(served[0])
            databases.drop(write_url)
    failures = [check["detail"] for check in checks if not check["passed"]]
    result.update({
        "apply": [_median(runs, ("partitions", "processes")) for runs in applied.values()],
        "queries": [_median(runs, ("processes",)) for runs in queried.values()],
        "verification": {"passed": not failures, "checks": checks, "failures": failures},
        "settings": {**{k: v for k, v in asdict(settings).items()
                        if k not in ("directory", "url")},
                     "store": store_settings, "cores": report.host()["cpus"]},
        "versions": report.versions("uvicorn"),
    })
    return result


def _median(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """One cell: its keys, the median of each figure over the runs, and the runs."""
    cell: dict[str, Any] = {key: runs[0][key] for key in keys}
    for name, value in runs[0].items():
        if name in keys or not isinstance(value, int | float | None):
            continue
        values = [run[name] for run in runs if run.get(name) is not None]
        cell[name] = round(statistics.median(values), 3) if values else None
    cell["runs"] = runs
    return cell


def print_scale(console: Console, result: dict[str, Any]) -> None:
    """The APPLY and QUERY tables, then the verification."""
    runs = f"median of {result['runs']} run(s)" if result["runs"] > 1 else "1 run"
    title = f"{result['backend']}, {result['events']:,} events, {runs}"
    apply = Table(title=f"APPLY — {title}")
    for column in ("partitions", "projector processes", "events/s", "CPU µs/event",
                   "log rows read/event", "s"):
        apply.add_column(column, justify="right")
    for cell in result["apply"]:
        figures = ("events_per_s", "cpu_us_per_event", "log_rows_read_per_event", "seconds")
        apply.add_row(str(cell["partitions"]), str(cell["processes"]),
                      *(report.figure(cell[key]) for key in figures))
    console.print(apply)
    queries = Table(title=f"QUERY — {title}, GetOrderSummary")
    for column in ("query processes", "queries/s", "CPU µs/query", "p50 ms", "p99 ms",
                   "errors", "servers CPU %", "client CPU %"):
        queries.add_column(column, justify="right")
    for cell in result["queries"]:
        first = ("queries_per_s", "cpu_us_per_query", "p50_ms", "p99_ms")
        last = ("server_cpu_percent", "client_cpu_percent")
        queries.add_row(str(cell["processes"]), *(report.figure(cell[key]) for key in first),
                        str(cell["errors"]), *(report.figure(cell[key]) for key in last))
    console.print(queries)
    console.print(f"{result['host']['cpus']} cores; CPU is the children's (from /proc), over"
                  " the timed window")
    report.print_verification(console, result["verification"])

