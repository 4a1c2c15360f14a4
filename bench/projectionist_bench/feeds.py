"""The feeds benchmark: the event log relayed to NATS JetStream and Redis Streams.

Per engine, beside the same done without a feed (the SQL log, or every role in one process):

RELAY    N synthetic shop events seeded into the write store (as `bench rebuild` seeds them),
         then copied into an empty feed by `Relay.relay()`: events/s.
READ     the N events read back through the feed's reader, 1,000 at a time: events/s; beside
         the same read from the write store's log. The two must be equal, event for event.
REBUILD  a blue/green rebuild of the shop's `order_summary` on a fresh read store, timed from the
         request to the swap, its projector fed by the feed (no write store at all) or by the
         log: events/s. The documents it builds must be the same either way.
LIVE     M shop commands one at a time, through a command process that relays to the feed; a
         projector and query process fed by the feed, whose write store points nowhere,
         answers each with `ask(GetOrder, min_position=...)`: ms from the command's return
         (committed) until the answer, p50 and p99; beside all roles in one process, no feed.

Every run uses streams of its own (`BENCH_<random>_...`) and deletes them at the end.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from projectionist.app import App
from projectionist.backends import open_feed
from projectionist.errors import ProjectionistError
from projectionist.eventlog import EventSource
from projectionist.feeds import Feed, Relay
from projectionist.feeds.jetstream import JetStream
from projectionist.feeds.redis import RedisStream
from projectionist.messages import Command, StoredEvent
from projectionist.runtime import Runtime
from projectionist.wakeups import HighWater

from . import report
from .databases import BenchDatabases
from .rebuild import seed_shop_log

Progress = Callable[[str], None]

ENGINES = ("nats", "redis")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# A projector fed by a feed needs no write store: its URL points where nothing answers.
NOWHERE = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
REBUILT = "order_summary"
READ_BATCH = 1000
RELAY_BATCH = 1000
PRODUCTS = 5
WAIT_MS = 10_000


class BenchmarkFailed(ProjectionistError):
    """A phase could not finish or its check failed; the figures would mean nothing."""


@dataclass(frozen=True, slots=True)
class FeedsSettings:
    """What one run of the feeds benchmark does."""

    backend: str = "sqlite"
    events: int = 100_000
    commands: int = 200
    engines: tuple[str, ...] = ENGINES
    nats_url: str = DEFAULT_NATS_URL
    redis_url: str = DEFAULT_REDIS_URL
    batch_size: int = 5000
    """Events per rebuild batch, as in `bench rebuild`."""
    url: str | None = None
    directory: Path | None = None
    timeout_s: float = 600.0


def run_feeds(settings: FeedsSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Runs every phase on every engine and returns the figures, checks and settings."""
    from projectionist_examples.shop import create_app

    say = progress or (lambda _message: None)
    unknown = [engine for engine in settings.engines if engine not in ENGINES]
    if unknown or not settings.engines:
        raise BenchmarkFailed(f"unknown engine {', '.join(unknown) or '(none)'};"
                              f" use {' or '.join(ENGINES)}")
    run = uuid.uuid4().hex[:10].upper()
    app = create_app()
    checks: list[dict[str, Any]] = []
    streams: list[tuple[str, str]] = []  # (engine, URL)
    result: dict[str, Any] = {
        "benchmark": "feeds",
        "backend": settings.backend,
        "started_at": report.now_iso(),
        "host": report.host(),
        "events": settings.events,
        "commands": settings.commands,
    }
    log_figures: dict[str, Any] = {"relay_events_per_s": None, "relay_seconds": None}
    sources: dict[str, dict[str, Any]] = {"log": log_figures}
    try:
        with BenchDatabases(settings.backend, url=settings.url,
                            directory=settings.directory) as databases:
            write_url, _ = databases.fresh("log")
            store_settings = databases.settings(write_url)
            seeder = Runtime(app, store=write_url, roles=["command"])
            try:
                seeder.install()
                assert seeder.log is not None
                log = seeder.log
                say(f"seeding the log with {settings.events:,} shop events")
                began = time.perf_counter()
                seeded = seed_shop_log(seeder, settings.events, None)
                result["seed_events_per_s"] = round(seeded / (time.perf_counter() - began))
                head = log.head()

                say("READ: the log, 1,000 events at a time")
                logged, seconds = _read_all(log)
                log_figures["read_events_per_s"] = round(len(logged) / seconds, 1)
                _check(checks, "log read", len(logged) == seeded == head,
                       f"read {len(logged)} events from the log; {seeded} seeded, head {head}")

                say(f"REBUILD: {REBUILT} fed by the log")
                rebuilt = _rebuild(databases, app, "rebuild_log", write_url, None, settings)
                log_figures.update(rebuilt.figures)
                _check(checks, "log rebuild", rebuilt.position == head,
                       f"the log-fed rebuild reached {rebuilt.position}, the head is {head}")

                for engine in settings.engines:
                    base = settings.nats_url if engine == "nats" else settings.redis_url
                    url = _stream_url(base, f"BENCH_{run}_COPY")
                    streams.append((engine, url))
                    figures: dict[str, Any] = {}
                    sources[engine] = figures
                    feed = open_feed(url)
                    try:
                        feed.ensure()
                        figures["server"] = _server(feed)
                        say(f"RELAY: {seeded:,} events into {engine}")
                        began = time.perf_counter()
                        relayed = Relay(log, feed, HighWater(), batch_size=RELAY_BATCH).relay()
                        seconds = time.perf_counter() - began
                        figures["relay_events_per_s"] = round(relayed / seconds, 1)
                        figures["relay_seconds"] = round(seconds, 3)
                        last = feed.last_position()
                        _check(checks, f"{engine} relay", relayed == seeded and last == head,
                               f"relayed {relayed} of {seeded} events; the feed ends at {last},"
                               f" the log at {head}")

                        say(f"READ: {engine}, 1,000 events at a time")
                        read, seconds = _read_all(feed.reader())
                        figures["read_events_per_s"] = round(len(read) / seconds, 1)
                        _check(checks, f"{engine} read", read == logged,
                               f"the feed gave back {len(read)} events"
                               + ("" if read == logged else
                                  f"; they differ from the log's {len(logged)}"))
                        del read
                    finally:
                        feed.close()

                    say(f"REBUILD: {REBUILT} fed by {engine}")
                    fed = _rebuild(databases, app, f"rebuild_{engine}", NOWHERE, url, settings)
                    figures.update(fed.figures)
                    _check(checks, f"{engine} rebuild",
                           fed.position == head and fed.digest == rebuilt.digest,
                           f"the {engine}-fed rebuild reached {fed.position} (head {head});"
                           f" its {fed.documents} documents"
                           f" {'match' if fed.digest == rebuilt.digest else 'differ from'}"
                           f" the log-fed rebuild's {rebuilt.documents}")
                del logged
            finally:
                seeder.stop()
            databases.drop(write_url)

            say(f"LIVE: {settings.commands:,} commands, all roles in one process, no feed")
            log_figures.update(_live(databases, app, "live_log", None, settings, checks))
            for engine in settings.engines:
                base = settings.nats_url if engine == "nats" else settings.redis_url
                url = _stream_url(base, f"BENCH_{run}_LIVE")
                streams.append((engine, url))
                say(f"LIVE: {settings.commands:,} commands relayed through {engine}")
                sources[engine].update(
                    _live(databases, app, f"live_{engine}", url, settings, checks))
    finally:
        for _engine, url in streams:
            try:
                _delete_stream(url)
            except Exception as error:  # reported, without hiding what went wrong before
                say(f"could not delete the stream of {_without_password(url)}: {error}")
    failures = [check["detail"] for check in checks if not check["passed"]]
    result["sources"] = sources
    result["verification"] = {"passed": not failures, "checks": checks, "failures": failures}
    result["settings"] = {
        "store": store_settings,
        "engines": list(settings.engines),
        "nats_url": _without_password(settings.nats_url),
        "redis_url": _without_password(settings.redis_url),
        "read_batch": READ_BATCH,
        "relay_batch": RELAY_BATCH,
        "rebuild_batch": settings.batch_size,
        "rebuilt": REBUILT,
        "read_store": "separate SQLite file" if settings.backend == "sqlite"
                      else "a database of its own per phase",
        "streams": {engine: [url.rpartition("stream=")[2] for e, url in streams if e == engine]
                    for engine in settings.engines},
    }
    result["versions"] = report.versions("nats-py", "redis")
    return result


def _check(checks: list[dict[str, Any]], name: str, passed: bool, detail: str) -> None:
    checks.append({"name": name, "passed": passed, "detail": detail})


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _stream_url(base: str, stream: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}stream={stream}"


def _server(feed: Feed) -> dict[str, Any]:
    """The engine's version and the settings that bear on the figures (durability above all)."""
    if isinstance(feed, JetStream):
        version = feed.client.connected_server_version
        return {"version": f"nats-server {version.major}.{version.minor}.{version.patch}",
                "storage": "file"}
    if isinstance(feed, RedisStream):
        try:
            config = feed.client.config_get("appendonly") | feed.client.config_get("save")
        except Exception:  # CONFIG is often disabled on managed servers
            config = {}
        return {"version": f"redis {feed.client.info('server')['redis_version']}",
                "appendonly": config.get("appendonly"), "save": config.get("save")}
    return {}


def _delete_stream(url: str) -> None:
    """Deletes a stream of this run (JetStream: the stream; Redis: its key), if it exists."""
    feed = open_feed(url)
    try:
        if isinstance(feed, JetStream):
            jetstream = feed

            async def delete() -> None:
                from nats.js.errors import NotFoundError

                js = await jetstream.connected()
                with suppress(NotFoundError):
                    await js.delete_stream(jetstream.stream)

            jetstream.call(delete)
        elif isinstance(feed, RedisStream):
            feed.client.delete(feed.key)
    finally:
        feed.close()


def _read_all(source: EventSource) -> tuple[list[StoredEvent], float]:
    """Every event of the source, read `READ_BATCH` at a time; the seconds it took."""
    events: list[StoredEvent] = []
    after = 0
    began = time.perf_counter()
    while True:
        batch = source.read(after, READ_BATCH)
        if not batch:
            break
        events.extend(batch)
        after = batch[-1].position
    return events, time.perf_counter() - began


@dataclass(frozen=True, slots=True)
class Rebuilt:
    figures: dict[str, Any]
    position: int
    documents: int
    digest: str


def _rebuild(databases: BenchDatabases, app: App, label: str, store: str, events: str | None,
             settings: FeedsSettings) -> Rebuilt:
    """A blue/green rebuild of `REBUILT` on a fresh read store, timed from the request to the
    swap as `bench rebuild` times it; fed by the feed `events`, or by the log of `store`."""
    _, read_url = databases.fresh(label)
    runtime = Runtime(app, store=store, read_store=read_url, roles=["projector"],
                      events=events, batch_size=settings.batch_size)
    try:
        runtime.install()
        projector = runtime.projector
        assert projector is not None
        head = runtime.head()
        deadline = time.monotonic() + settings.timeout_s
        began = time.perf_counter()
        build = runtime.rebuild(REBUILT)
        try:
            projector.run_until_serving(REBUILT, build.generation,
                                        timeout_s=deadline - time.monotonic())
        except TimeoutError as late:
            raise BenchmarkFailed(f"the rebuild of {REBUILT} (head {head}): {late}") from None
        seconds = time.perf_counter() - began
        with runtime.read_store.read() as connection:
            checkpoint = runtime.checkpoints.load(connection, REBUILT, build.generation)
            table = app.projections[REBUILT].collections["orders"].physical(build.generation)
            digest = hashlib.sha256()
            documents = 0
            for key, doc in connection.execute(
                    sa.select(table.c.key, table.c.doc).order_by(table.c.key)):
                digest.update(f"{key}\0{doc}\0".encode())
                documents += 1
    finally:
        runtime.stop()
    databases.drop(read_url)
    return Rebuilt(
        figures={"rebuild_events_per_s": round(head / seconds, 1),
                 "rebuild_seconds": round(seconds, 3)},
        position=checkpoint.position if checkpoint is not None else -1,
        documents=documents, digest=digest.hexdigest())


@contextmanager
def _processes(app: App, write_url: str, read_url: str,
               events: str | None) -> Iterator[tuple[Runtime, Runtime]]:
    """(commands, queries): one process with every role, or, with a feed, a command process
    relaying to it and a projector and query process reading it without the write store."""
    if events is None:
        embedded = Runtime(app, store=write_url, read_store=read_url)
        try:
            embedded.start()
            yield embedded, embedded
        finally:
            embedded.stop()
        return
    writer = Runtime(app, store=write_url, read_store=read_url, roles=["command"],
                     events=events)
    reader = Runtime(app, store=NOWHERE, read_store=read_url, roles=["projector", "query"],
                     events=events)
    try:
        writer.start()
        reader.start()
        yield writer, reader
    finally:
        reader.stop()
        writer.stop()


def _live(databases: BenchDatabases, app: App, label: str, events: str | None,
          settings: FeedsSettings, checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Commands one at a time; for each, ms from its return until a query with its position
    answers. Products are registered and stocked first, untimed."""
    from projectionist_examples.shop import (
        GetOrder,
        ProductCatalog,
        RegisterProduct,
        RestockProduct,
    )

    write_url, read_url = databases.fresh(label)
    visible: list[float] = []
    wrong: list[str] = []
    try:
        with _processes(app, write_url, read_url, events) as (commands, queries):
            position = 0
            for k in range(PRODUCTS):
                sku = f"SKU-{k}"
                commands.execute(RegisterProduct(sku=sku, name=f"Product {k}",
                                                 price_cents=_price(k)))
                position = commands.execute(RestockProduct(sku=sku, quantity=10**6)).position
            queries.ask(ProductCatalog(), min_position=position, wait_ms=WAIT_MS)
            for order_id, command, status in _orders(settings.commands):
                position = commands.execute(command).position
                committed = time.perf_counter()
                answer = queries.ask(GetOrder(order_id=order_id), min_position=position,
                                     wait_ms=WAIT_MS)
                visible.append((time.perf_counter() - committed) * 1000.0)
                if answer.data["status"] != status or answer.freshness.position < position:
                    wrong.append(f"{order_id}: {answer.data['status']} at"
                                 f" {answer.freshness.position}, not {status} at {position}")
    finally:
        databases.drop(write_url)
    _check(checks, f"{label} answers", not wrong and len(visible) == settings.commands,
           f"{len(visible)} commands answered, {len(wrong)} wrong"
           + (f", e.g. {wrong[0]}" if wrong else ""))
    return {
        "visible_p50_ms": report.rounded(report.percentile(visible, 50)),
        "visible_p99_ms": report.rounded(report.percentile(visible, 99)),
        "visible_max_ms": report.rounded(max(visible, default=None)),
    }


def _price(k: int) -> int:
    return 250 + 100 * k


def _orders(count: int) -> Iterator[tuple[str, Command, str]]:
    """`count` shop commands: orders placed, paid and shipped in turn; (order, command, the
    order's status after it)."""
    from projectionist_examples.shop import OrderLineIn, PayOrder, PlaceOrder, ShipOrder

    made = 0
    i = 0
    while True:
        order_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"/bench/feeds/{i}"))
        lines = [(f"SKU-{(i + k) % PRODUCTS}", 1 + k) for k in range(2)]
        total = sum(quantity * _price(int(sku[4:])) for sku, quantity in lines)
        steps: Sequence[tuple[Command, str]] = (
            (PlaceOrder(order_id=order_id, customer_id=f"cust-{i % 50:02d}",
                        lines=[OrderLineIn(sku=sku, quantity=q) for sku, q in lines]),
             "placed"),
            (PayOrder(order_id=order_id, amount_cents=total), "paid"),
            (ShipOrder(order_id=order_id), "shipped"),
        )
        for command, status in steps:
            if made == count:
                return
            yield order_id, command, status
            made += 1
        i += 1


LABELS = {"log": "no feed"}
ROWS = (
    ("relay_events_per_s", "RELAY", "log → feed, events/s"),
    ("read_events_per_s", "READ", "read back, events/s"),
    ("rebuild_events_per_s", "REBUILD", f"{REBUILT} rebuild, events/s"),
    ("visible_p50_ms", "LIVE", "commit → visible, p50 ms"),
    ("visible_p99_ms", "LIVE", "commit → visible, p99 ms"),
)


def print_feeds(console: Console, result: dict[str, Any]) -> None:
    """The feeds benchmark as a table: one column per source (no feed, then each engine)."""
    sources: dict[str, dict[str, Any]] = result["sources"]
    table = Table(title=f"feeds benchmark — {result['backend']}, {result['events']:,} events,"
                        f" {result['commands']:,} commands")
    table.add_column("phase")
    table.add_column("figure")
    for name in sources:
        table.add_column(LABELS.get(name, name), justify="right")
    for key, phase, label in ROWS:
        table.add_row(phase, label, *(report.figure(figures.get(key))
                                      for figures in sources.values()))
    console.print(table)
    console.print("no feed: READ and REBUILD from the SQL log; LIVE with every role in one"
                  " process")
    report.print_verification(console, result["verification"])

