"""The HTTP benchmark: the shop served by uvicorn in its own process, driven over loopback.

Query clients ask GetOrder, CustomerDashboard and ListOrders about seeded data; command
clients place, pay and ship new orders back to back (saturating the write side). Four phases
of the same length: queries paced at a fixed rate without and with writes (latency at a load
the target names), then queries as fast as the clients go without and with writes (how much
write pressure takes from reads).

Then the anchor, three more phases of the same length: the same query clients flat out asking
GetOrder only, of projectionist (auth as in the other phases), then of the bare stack
(`bare.py`: a minimal FastAPI route on the same uvicorn stack, reading the same document from
the same read store with the driver directly, no auth), first as a plain route (FastAPI runs
it in a worker thread), then as an async route reading on the event loop (as projectionist
answers a query proven quick on a SQLite read store). Their ratios are what the framework
costs on its simplest read.

The clients speak HTTP/1.1 over keep-alive connections with a minimal asyncio client, so that
on a small machine the load generator takes as little of the CPU the server needs as it can.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from projectionist.auth import TokenAuthority

from . import report
from .databases import BenchDatabases
from .orders import BenchmarkFailed

Progress = Callable[[str], None]

_REQUEST_TIMEOUT_S = 10.0
# What a request may fail with: counted as errors of the phase, never raised.
_NETWORK_ERRORS = (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError)
_QUERY_MIX = (("GetOrder", 0.5), ("CustomerDashboard", 0.3), ("ListOrders", 0.2))


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What one run of the HTTP benchmark does."""

    backend: str = "sqlite"
    duration_s: float = 10.0
    query_clients: int = 8
    command_clients: int = 4
    query_rate: float = 500.0
    """Queries/s, over all query clients, in the paced phases."""
    seed_orders: int = 500
    products: int = 100
    customers: int = 100
    app: str = "shop"
    auth: bool = True
    url: str | None = None
    directory: Path | None = None
    keep: bool = False
    startup_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Phase:
    """One timed phase: queries paced or flat out, with or without command clients."""

    name: str
    paced: bool
    writes: bool
    query: str | None = None
    """Only this query (the anchor's phases); None: the mix of _QUERY_MIX."""
    bare: bool = False
    """Against the bare stack rather than projectionist."""
    on_loop: bool = False
    """The bare stack's route that reads on the event loop (`/loop/queries/GetOrder`)."""


@dataclass
class Tally:
    """Latencies and outcomes of one kind of request in one phase."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.statuses[str(status)] += 1
        if 200 <= status < 300:
            self.latencies.append(seconds * 1000.0)
        else:
            self.errors += 1

    def fail(self, error: BaseException) -> None:
        self.statuses[type(error).__name__] += 1
        self.errors += 1

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        count = len(self.latencies)
        return {
            "count": count,
            "per_s": round(count / elapsed_s, 1) if elapsed_s > 0 else None,
            "p50_ms": report.rounded(report.percentile(self.latencies, 50)),
            "p99_ms": report.rounded(report.percentile(self.latencies, 99)),
            "max_ms": report.rounded(max(self.latencies, default=None)),
            "errors": self.errors,
            "statuses": dict(self.statuses),
        }


class Connection:
    """One keep-alive HTTP/1.1 connection; reopens after an error or `Connection: close`."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host = host
        self.port = port
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._headers = f"Host: {host}:{port}\r\n{auth}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None
                      ) -> tuple[int, bytes]:
        """Sends one request and reads the whole answer: (status, body)."""
        try:
            return await asyncio.wait_for(self._exchange(method, path, body), _REQUEST_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode("latin-1") + b"\r\n" + (body or b""))
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._read_chunked(self._reader)
        else:
            data = b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class ChildServer:
    """An HTTP server in a child process, on a free loopback port, logging to a file."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port(self.host)
        self.log_path = folder / f"{self.name}.log"
        self._command: list[str] = []
        self._env: dict[str, str] = {k: v for k, v in os.environ.items()
                                     if k not in ("PROJECTIONIST_STORE",
                                                  "PROJECTIONIST_READ_STORE")}
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> None:
        """Starts the server and waits until /healthz answers 200."""
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self._command, cwd=self._folder, env=self._env,
                                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchmarkFailed(f"the {self.name} exited with"
                                      f" {self._process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n"
                                 b"Connection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchmarkFailed(f"the {self.name} did not answer within {timeout_s:g} s:\n"
                              f"{self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        """User and system CPU time the server has used, from /proc (Linux)."""
        if self._process is None:
            return None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        """Stops the server as Ctrl-C would, killing it if it does not exit."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {self.name} log)"


class Server(ChildServer):
    """`projectionist serve` in a child process, on a free loopback port."""

    def __init__(self, settings: HttpSettings, write_url: str, read_url: str, folder: Path,
                 secret: str | None) -> None:
        super().__init__(folder)
        if secret is None:
            self._env["PROJECTIONIST_AUTH"] = "off"
        else:
            self._env["PROJECTIONIST_AUTH"] = "on"
            self._env["PROJECTIONIST_SECRET"] = secret
        self._command = [
            sys.executable, "-c", "from projectionist.cli import main; main()", "serve",
            settings.app, "--host", self.host, "--port", str(self.port), "--store", write_url,
            "--read-store", read_url, "--quiet",
        ]


class BareServer(ChildServer):
    """The bare stack (`projectionist_bench.bare`): GetOrder as a minimal FastAPI route on
    uvicorn, one process, reading the read store with the driver directly; no auth."""

    name = "bare server"

    def __init__(self, read_url: str, folder: Path) -> None:
        super().__init__(folder)
        self.log_path = folder / "bare.log"
        self._command = [sys.executable, "-m", "projectionist_bench.bare",
                         "--read-store", read_url, "--host", self.host, "--port", str(self.port)]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Seed:
    """What the seeding wrote: products and their prices, orders and customers."""

    prices: dict[str, int]
    orders: list[str]
    customers: list[str]


class Driver:
    """Seeds the shop, then runs the phases against it."""

    def __init__(self, settings: HttpSettings, server: Server, tokens: dict[str, str | None],
                 say: Progress, bare: BareServer | None = None) -> None:
        self.settings = settings
        self.server = server
        self.tokens = tokens
        self.say = say
        self.bare = bare

    def connection(self, role: str, *, bare: bool = False) -> Connection:
        if bare:
            # The bare stack checks no token, so none is sent.
            assert self.bare is not None
            return Connection(self.bare.host, self.bare.port, None)
        return Connection(self.server.host, self.server.port, self.tokens[role])

    async def same_document(self, seed: Seed) -> str:
        """Checks that both routes of the bare stack answer GetOrder with projectionist's
        document; the order asked about."""
        order_id = seed.orders[0]
        path = f"/queries/GetOrder?{urlencode({'order_id': order_id})}"
        answers = []
        for bare, prefix in ((False, ""), (True, ""), (True, "/loop")):
            connection = self.connection("queries", bare=bare)
            try:
                status, data = await connection.request("GET", prefix + path)
            finally:
                connection.close()
            if status != 200:
                side = f"the bare stack ({prefix + path})" if bare else "projectionist"
                raise BenchmarkFailed(f"GetOrder of {side} answered {status}: {data[:300]!r}")
            answers.append(json.loads(data)["data"])
        if not answers[0] == answers[1] == answers[2]:
            raise BenchmarkFailed(f"the bare stack answers {order_id} with {answers[1]} and"
                                  f" {answers[2]}, projectionist with {answers[0]}")
        return order_id

    async def seed(self) -> Seed:
        """Registers and restocks the products, and places (some paid, shipped) orders."""
        s = self.settings
        prices = {f"SKU-{j:03d}": 100 + (37 * j) % 5000 for j in range(s.products)}
        customers = [f"cust-{c:03d}" for c in range(s.customers)]
        orders = [f"seed-{i}" for i in range(s.seed_orders)]
        connection = self.connection("commands")
        for sku, price in prices.items():
            await self._command(connection, "RegisterProduct",
                                {"sku": sku, "name": f"Product {sku}", "price_cents": price})
            await self._command(connection, "RestockProduct",
                                {"sku": sku, "quantity": 1_000_000})

        async def seed_orders(part: list[int]) -> None:
            own = self.connection("commands")
            for i in part:
                rng = random.Random(i)
                lines = _lines(rng, prices)
                await self._command(own, "PlaceOrder", {
                    "order_id": orders[i], "customer_id": customers[i % len(customers)],
                    "lines": [{"sku": sku, "quantity": q} for sku, q in lines]})
                if i % 2 == 0:
                    await self._command(own, "PayOrder", {
                        "order_id": orders[i], "amount_cents": _total(lines, prices)})
                if i % 4 == 0:
                    await self._command(own, "ShipOrder", {"order_id": orders[i]})
            own.close()

        await asyncio.gather(*(seed_orders(list(range(t, s.seed_orders, 4))) for t in range(4)))
        connection.close()
        return Seed(prices, orders, customers)

    async def _command(self, connection: Connection, name: str, body: dict[str, Any]) -> None:
        status, data = await connection.request("POST", f"/commands/{name}",
                                                json.dumps(body).encode())
        if status != 200:
            raise BenchmarkFailed(f"seeding: {name} answered {status}: {data[:300]!r}")

    async def lag(self) -> int:
        """Events the projections have yet to apply (the largest lag among them)."""
        connection = self.connection("queries")
        try:
            status, data = await connection.request("GET", "/projections")
        finally:
            connection.close()
        if status != 200:
            raise BenchmarkFailed(f"GET /projections answered {status}: {data[:300]!r}")
        return max((int(row["lag_events"]) for row in json.loads(data)), default=0)

    async def caught_up(self, timeout_s: float = 120.0) -> None:
        """Waits until every projection has applied the whole log."""
        deadline = time.monotonic() + timeout_s
        while await self.lag() > 0:
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"the projections did not catch up within {timeout_s:g} s")
            await asyncio.sleep(0.05)

    async def run_phase(self, phase: Phase, seed: Seed, number: int) -> dict[str, Any]:
        """Runs the clients of one phase until its time is up; its figures."""
        s = self.settings
        loop = asyncio.get_running_loop()
        queries, commands = Tally(), Tally()
        began = loop.time()
        stop_at = began + s.duration_s
        target: ChildServer = self.server
        if phase.bare:
            assert self.bare is not None
            target = self.bare
        cpu_server, cpu_client = target.cpu_seconds(), time.process_time()
        clients = [self._query_client(phase, seed, k, stop_at, queries)
                   for k in range(s.query_clients)]
        if phase.writes:
            clients += [self._command_client(seed, f"p{number}c{k}", stop_at, commands)
                        for k in range(s.command_clients)]
        await asyncio.gather(*clients)
        elapsed = loop.time() - began
        cpu_server_after = target.cpu_seconds()
        lag = await self.lag()
        return {
            "name": phase.name,
            "paced": phase.paced,
            "writes": phase.writes,
            "query": phase.query,
            "server": "bare" if phase.bare else "projectionist",
            "seconds": round(elapsed, 3),
            "queries": queries.summary(elapsed),
            "commands": commands.summary(elapsed),
            "lag_events_at_end": lag,
            "server_cpu_percent": (
                round(100 * (cpu_server_after - cpu_server) / elapsed, 1)
                if cpu_server is not None and cpu_server_after is not None else None),
            "client_cpu_percent": round(100 * (time.process_time() - cpu_client) / elapsed, 1),
        }

    async def _query_client(self, phase: Phase, seed: Seed, k: int, stop_at: float,
                            tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(k)
        connection = self.connection("queries", bare=phase.bare)
        interval = self.settings.query_clients / self.settings.query_rate
        next_at = loop.time() + rng.random() * interval
        names = [name for name, _ in _QUERY_MIX]
        weights = [weight for _, weight in _QUERY_MIX]
        try:
            while True:
                if phase.paced:
                    # Latency counts from the scheduled time, so a slow answer that delays
                    # the next request is not hidden (no coordinated omission).
                    scheduled = next_at
                    next_at += interval
                    delay = scheduled - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    scheduled = loop.time()
                if scheduled >= stop_at:
                    return
                # A fixed query draws nothing here, so that both anchor phases ask for the
                # same orders in the same order.
                name = phase.query or rng.choices(names, weights)[0]
                path = f"/queries/{name}?{urlencode(_query_params(name, rng, seed))}"
                if phase.on_loop:
                    path = f"/loop{path}"
                try:
                    status, _ = await connection.request("GET", path)
                except _NETWORK_ERRORS as error:
                    tally.fail(error)
                    continue
                tally.add(status, loop.time() - scheduled)
        finally:
            connection.close()

    async def _command_client(self, seed: Seed, prefix: str, stop_at: float,
                              tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(prefix)
        connection = self.connection("commands")
        customers = seed.customers
        n = 0
        try:
            while loop.time() < stop_at:
                order_id = f"{prefix}-{n}"
                n += 1
                lines = _lines(rng, seed.prices)
                steps = [
                    ("PlaceOrder", {"order_id": order_id, "customer_id": rng.choice(customers),
                                    "lines": [{"sku": sku, "quantity": q} for sku, q in lines]}),
                    ("PayOrder", {"order_id": order_id,
                                  "amount_cents": _total(lines, seed.prices)}),
                    ("ShipOrder", {"order_id": order_id}),
                ]
                for name, body in steps:
                    began = loop.time()
                    try:
                        status, _ = await connection.request(
                            "POST", f"/commands/{name}", json.dumps(body).encode())
                    except _NETWORK_ERRORS as error:
                        tally.fail(error)
                        break
                    tally.add(status, loop.time() - began)
                    if status != 200 or loop.time() >= stop_at:
                        break
        finally:
            connection.close()


def _lines(rng: random.Random, prices: dict[str, int]) -> list[tuple[str, int]]:
    skus = rng.sample(sorted(prices), rng.randint(1, 3))
    return [(sku, rng.randint(1, 3)) for sku in skus]


def _total(lines: list[tuple[str, int]], prices: dict[str, int]) -> int:
    return sum(prices[sku] * quantity for sku, quantity in lines)


def _query_params(name: str, rng: random.Random, seed: Seed) -> dict[str, str]:
    if name == "GetOrder":
        return {"order_id": rng.choice(seed.orders)}
    if name == "CustomerDashboard":
        return {"customer_id": seed.customers[rng.randrange(min(len(seed.customers),
                                                                 len(seed.orders)))]}
    return {"customer_id": rng.choice(seed.customers), "limit": "20"}


def phases(settings: HttpSettings) -> list[Phase]:
    """The four phases, then the anchor's three, in the order they run."""
    rate = f"{settings.query_rate:g}/s"
    return [
        Phase(f"reads {rate}", paced=True, writes=False),
        Phase(f"reads {rate} + writes", paced=True, writes=True),
        Phase("reads max", paced=False, writes=False),
        Phase("reads max + writes", paced=False, writes=True),
        Phase("reads max GetOrder", paced=False, writes=False, query="GetOrder"),
        Phase("bare reads max", paced=False, writes=False, query="GetOrder", bare=True),
        Phase("bare reads max, on the loop", paced=False, writes=False, query="GetOrder",
              bare=True, on_loop=True),
    ]


def run_http(settings: HttpSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Serves the app, seeds it, runs the phases; returns the figures and the settings used."""
    say = progress or (lambda _message: None)
    secret = secrets.token_urlsafe(48) if settings.auth else None
    tokens: dict[str, str | None] = {"commands": None, "queries": None}
    if secret is not None:
        authority = TokenAuthority([secret])
        tokens = {"commands": authority.issue(["commands:*"], subject="bench-writer",
                                              ttl_s=24 * 3600),
                  "queries": authority.issue(["queries:*"], subject="bench-reader",
                                             ttl_s=24 * 3600)}
    result: dict[str, Any] = {"benchmark": "http", "backend": settings.backend,
                              "started_at": report.now_iso(), "host": report.host()}
    with BenchDatabases(settings.backend, url=settings.url, directory=settings.directory,
                        keep=settings.keep) as databases:
        write_url, read_url = databases.fresh("http")
        database_settings = databases.settings(write_url)
        server = Server(settings, write_url, read_url, databases.directory, secret)
        bare = BareServer(read_url, databases.directory)
        say(f"starting {settings.app} on {server.host}:{server.port}")
        server.start(settings.startup_timeout_s)
        try:
            driver = Driver(settings, server, tokens, say, bare)
            results, checked_order = asyncio.run(_drive(driver, settings, say))
        finally:
            bare.stop()
            server.stop()
    summary = {
        "query_p99_ms_at_rate": results[0]["queries"]["p99_ms"],
        "query_p99_ms_at_rate_under_writes": results[1]["queries"]["p99_ms"],
        "reads_per_s": results[2]["queries"]["per_s"],
        "reads_per_s_under_writes": results[3]["queries"]["per_s"],
        "read_ratio_under_writes": (
            round(results[3]["queries"]["per_s"] / results[2]["queries"]["per_s"], 3)
            if results[2]["queries"]["per_s"] else None),
        "commands_per_s_under_reads": results[3]["commands"]["per_s"],
        "errors": sum(r["queries"]["errors"] + r["commands"]["errors"] for r in results),
    }
    getorder, bare_reads, bare_loop = (r["queries"] for r in results[4:7])
    result.update({
        # The anchor: GetOrder alone, flat out, of projectionist and of the bare stack.
        "getorder_reads_per_s": getorder["per_s"],
        "getorder_p50_ms": getorder["p50_ms"],
        "getorder_p99_ms": getorder["p99_ms"],
        "bare_reads_per_s": bare_reads["per_s"],
        "bare_p50_ms": bare_reads["p50_ms"],
        "bare_p99_ms": bare_reads["p99_ms"],
        "getorder_vs_bare": (round(getorder["per_s"] / bare_reads["per_s"], 3)
                             if getorder["per_s"] and bare_reads["per_s"] else None),
        # The bare stack again, its read on the event loop, as projectionist runs a quick query
        # on a SQLite read store (docs/performance.md): the like-for-like anchor there.
        "bare_loop_reads_per_s": bare_loop["per_s"],
        "bare_loop_p50_ms": bare_loop["p50_ms"],
        "bare_loop_p99_ms": bare_loop["p99_ms"],
        "getorder_vs_bare_loop": (round(getorder["per_s"] / bare_loop["per_s"], 3)
                                  if getorder["per_s"] and bare_loop["per_s"] else None),
        "anchor": {
            "getorder_auth": settings.auth,
            "bare_auth": False,
            "bare": "GET /queries/GetOrder as one FastAPI route on uvicorn, one process;"
                    " SELECT doc by key with the driver directly, no auth",
            "bare_loop": "the same as an async route, its SELECT on the event loop",
            "same_document_checked": checked_order,
        },
        "summary": summary,
        "phases": results,
        "settings": {**{k: v for k, v in asdict(settings).items()
                        if k not in ("directory", "url")},
                     "database": database_settings},
        "versions": report.versions("uvicorn", "fastapi", "starlette", "httptools", "uvloop"),
        "targets": {"query_p99_ms_at_rate": "<= 10 at 500 queries/s",
                    "read_ratio_under_writes": ">= 0.8"},
    })
    return result


async def _drive(driver: Driver, settings: HttpSettings, say: Progress
                 ) -> tuple[list[dict[str, Any]], str]:
    """The phases' figures, and the order whose document both stacks answered alike."""
    say(f"seeding {settings.products} products and {settings.seed_orders} orders")
    seed = await driver.seed()
    await driver.caught_up()
    assert driver.bare is not None
    # Started once the read store holds the seeded orders: it finds the serving table at start.
    say(f"starting the bare stack on {driver.bare.host}:{driver.bare.port}")
    await asyncio.to_thread(driver.bare.start, settings.startup_timeout_s)
    checked_order = await driver.same_document(seed)
    results = []
    for number, phase in enumerate(phases(settings)):
        say(f"{phase.name}: {settings.duration_s:g} s")
        results.append(await driver.run_phase(phase, seed, number))
        await driver.caught_up()
    return results, checked_order
