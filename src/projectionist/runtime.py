"""The Runtime: an App bound to its stores, running the roles this process takes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import exc as sa_exc

from .app import App
from .auth import SYSTEM, Principal
from .commands import idempotency
from .commands.dispatch import CommandBus, CommandResult
from .commands.unit_of_work import RecordedEvent
from .errors import (
    ConfigurationError,
    HandlerFailed,
    NotRegistered,
    RoleNotServed,
    StoreUnavailable,
)
from .eventlog import EventLog, EventSource, open_event_log
from .eventlog.postgres import CHANNEL as EVENTS_CHANNEL
from .messages import Command, Query
from .metrics import Metrics
from .notifications import PostgresListener
from .projections.checkpoints import Checkpoint, Checkpoints
from .projections.dead_letters import DeadLetter, DeadLetters
from .projections.definition import Projection
from .projections.leases import Leases
from .projections.projector import Projector
from .projections.runner import CHECKPOINT_CHANNEL, ProjectionRunner
from .queries.dispatch import Answer, QueryBus
from .queries.freshness import measure
from .signals import LogWatch, ProgressBoard
from .stores import Store
from .streams import Feed, Relay, open_feed

log = logging.getLogger("projectionist")

# A table the framework has not created yet (no projector has run against this store).
_MISSING_TABLE = (sa_exc.ProgrammingError, sa_exc.OperationalError)

ROLES = ("command", "projector", "query")
DEFAULT_STORE = "sqlite:///projectionist.db"


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """One projection version as `projectionist status` and `/projections` show it."""

    name: str
    version: int
    state: str
    position: int
    head: int
    lag_events: int
    lag_ms: float
    dead_letters: int
    active: bool
    generation: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state,
            "position": self.position,
            "head": self.head,
            "lag_events": self.lag_events,
            "lag_ms": self.lag_ms,
            "dead_letters": self.dead_letters,
        }


def default_read_store(store_url: str) -> str:
    """A separate SQLite file beside a SQLite write store; the same database otherwise."""
    if store_url.startswith("sqlite:///") and not store_url.endswith(":memory:"):
        path = Path(store_url.removeprefix("sqlite:///"))
        return "sqlite:///" + str(path.with_name(f"{path.stem}-read{path.suffix or '.db'}"))
    return store_url


def parse_roles(roles: str | Iterable[str]) -> tuple[str, ...]:
    """Validated roles from 'command,query' or a list."""
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    chosen = tuple(dict.fromkeys(r.strip() for r in items if r.strip()))
    unknown = [r for r in chosen if r not in ROLES]
    if unknown or not chosen:
        raise ConfigurationError(
            f"unknown role {', '.join(unknown) or '(none)'}; roles are {', '.join(ROLES)}"
        )
    return chosen


class Runtime:
    """An App bound to a write store and a read store, running some or all roles."""

    def __init__(
        self,
        app: App,
        *,
        store: str | None = None,
        read_store: str | None = None,
        roles: str | Sequence[str] = ROLES,
        batch_size: int = 1000,
        poll_interval_s: float = 0.5,
        pool_size: int = 5,
        lease_ttl_s: float = 5.0,
        stall_after_s: float = 30.0,
        events: str | None = None,
        idempotency_ttl_s: float | None = idempotency.DEFAULT_TTL_S,
    ) -> None:
        self.app = app
        self.roles = parse_roles(roles)
        store_url = store or DEFAULT_STORE
        read_url = read_store or default_read_store(store_url)
        # Projectors fed by a relayed stream (`events`) never touch the write store.
        needs_write_store = "command" in self.roles or (
            "projector" in self.roles and events is None)
        self.store: Store | None = (
            Store(store_url, pool_size=pool_size) if needs_write_store else None
        )
        # A read model can always be rebuilt from the log, and its rows commit with their
        # checkpoint: losing the last transactions to a power cut only means replaying them.
        # So a SQLite read store skips the fsync per commit (WAL, synchronous=NORMAL).
        self.read_store = Store(read_url, pool_size=pool_size,
                                durable=read_url == store_url)
        self.log: EventLog | None = open_event_log(self.store) if self.store else None
        self.metrics = Metrics()
        self.watch = LogWatch()
        self.feed: Feed | None = None
        self.relay: Relay | None = None
        self.source: EventSource | None = self.log
        if events is not None:
            self.feed = open_feed(events)
            if self.log is not None and "command" in self.roles:
                relay = self.relay = Relay(self.log, self.feed, self.watch,
                                           batch_size=batch_size,
                                           poll_interval_s=poll_interval_s)
                self.metrics.watch_feed(lambda: relay.position, self.log.head)
            if "projector" in self.roles:
                self.source = self.feed.reader()
        self.board = ProgressBoard()
        self.checkpoints = Checkpoints(self.read_store)
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.commands: CommandBus | None = None
        if "command" in self.roles:
            assert self.store is not None and self.log is not None
            self.commands = CommandBus(app, self.store, self.log, on_commit=self._committed,
                                       metrics=self.metrics,
                                       idempotency_ttl_s=idempotency_ttl_s)
        self.dead_letters = DeadLetters(self.read_store)
        self.leases: Leases | None = None
        self.projector: Projector | None = None
        if "projector" in self.roles:
            self.leases = Leases(self.read_store, ttl_s=lease_ttl_s)
            self.projector = Projector(
                list(app.projections.values()), make_runner=self._make_runner,
                checkpoints=self.checkpoints, watch=self.watch, board=self.board,
                leases=self.leases, poll_interval_s=poll_interval_s,
            )
        self.stall_after_s = stall_after_s
        self.queries: QueryBus | None = None
        if "query" in self.roles:
            embedded = "projector" in self.roles
            self.queries = QueryBus(
                app, self.read_store, self.checkpoints,
                watch=(self.watch if embedded or "command" in self.roles or events is not None
                       else None),
                board=self.board if embedded else None, metrics=self.metrics,
            )
        self.metrics.watch_projections(self.status)
        self._installed = False
        self._listeners: list[PostgresListener] = []

    def install(self) -> None:
        """Creates the framework's tables and the app's tables, if they do not exist."""
        if self._installed:
            return
        if self.store is not None and self.log is not None:
            self.log.install()
            if "command" in self.roles:
                with self.store.schema() as connection:
                    idempotency.install(connection)
                    self.app.write_model.create_all(connection)
        if self.projector is not None or "query" in self.roles:
            self.checkpoints.install()
            self.dead_letters.install()
        if self.projector is not None:
            assert self.leases is not None
            self.leases.install()
            self.projector.reconcile()
        elif "query" in self.roles:
            self._install_views()
        self._installed = True

    def _install_views(self) -> None:
        # A query process may start before any projector created the read models.
        for projection in self.app.projections.values():
            build = self.checkpoints.serving(
                projection.name, projection.version,
                [t.name for t in projection.physical_tables(1)],
            )
            with self.read_store.schema() as connection:
                for table in projection.physical_tables(build.generation):
                    table.create(connection, checkfirst=True)

    def _make_runner(self, projection: Projection, build: Checkpoint) -> ProjectionRunner:
        assert self.source is not None
        # Each build reads a feed through a reader of its own, which follows its position.
        source = self.feed.reader() if self.feed is not None else self.source
        return ProjectionRunner(
            projection, build, log=source, read_store=self.read_store,
            registry=self.app.registry, checkpoints=self.checkpoints,
            dead_letters=self.dead_letters, batch_size=self.batch_size, metrics=self.metrics,
        )

    def start(self) -> Runtime:
        """Installs, then starts the projector thread if this process runs that role."""
        self.install()
        if self.relay is not None:
            self.relay.start()
        if self.projector is not None:
            if self.feed is not None:
                self.feed.wake_on_append(self.watch)
            elif self.store is not None and not self.store.is_sqlite:
                self._listen(self.store, EVENTS_CHANNEL, self._notified_event)
            self.projector.start()
        elif self.queries is not None:
            if self.feed is not None:
                # The feed tells a query-only process the head, so answers state the lag of
                # events relayed but not applied, even with every projector down.
                self.feed.wake_on_append(self.watch)
                with contextlib.suppress(StoreUnavailable):
                    self.head()
            if not self.read_store.is_sqlite:
                queries = self.queries
                self._listen(self.read_store, CHECKPOINT_CHANNEL,
                             lambda _payload: queries.checkpoint_moved())
        return self

    def stop(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        if self.projector is not None:
            self.projector.stop()
        if self.relay is not None:
            self.relay.stop()
        if self.feed is not None:
            self.feed.close()
        for store in (self.store, self.read_store):
            if store is not None:
                store.dispose()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def execute(
        self,
        command: Command,
        *,
        principal: Principal = SYSTEM,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> CommandResult:
        """Handles a command; its write-model changes and events commit together."""
        if self.commands is None:
            raise RoleNotServed("this process does not run the command role")
        self.install()
        return self.commands.execute(command, principal, idempotency_key=idempotency_key,
                                     correlation_id=correlation_id)

    def ask(
        self,
        query: Query,
        *,
        principal: Principal = SYSTEM,
        min_position: int | None = None,
        wait_ms: int | None = None,
    ) -> Answer:
        """Answers a query from the read models, with its freshness."""
        if self.queries is None:
            raise RoleNotServed("this process does not run the query role")
        self.install()
        return self.queries.ask(query, principal, min_position=min_position, wait_ms=wait_ms)

    def catch_up(self) -> int:
        """Applies every pending event to every build, in this thread; returns the count.

        Swaps in rebuilds that catch up. Handler failures are retried and parked as the
        projection's `on_error` says, without waiting for the backoff.
        """
        projector = self._projector()
        self.install()
        total = 0
        while True:
            projector.reconcile()
            progressed = 0
            for key, runner in list(projector.runners.items()):
                for _ in range(runner.max_attempts + 1):
                    try:
                        total_before = total
                        total += runner.run_until_caught_up()
                        progressed += total - total_before
                        break
                    except HandlerFailed as failure:
                        if runner.projection.on_error == "stop":
                            self.checkpoints.mark(runner.name, runner.generation,
                                                  state="failed", error=failure.detail)
                            raise
                if runner.serving:
                    self.board.advance(runner.name, runner.position)
                elif not projector._swap(key, runner):
                    # The serving build (run by another process) moved on meanwhile: catch
                    # up again, after a moment.
                    progressed += 1
                    time.sleep(0.01)
            if not progressed:
                return total

    @property
    def runners(self) -> list[ProjectionRunner]:
        """The builds this process runs, serving ones first, in the App's order."""
        if self.projector is None:
            return []
        self.install()
        order = {name: index for index, name in enumerate(self.app.projections)}
        return sorted(self.projector.runners.values(),
                      key=lambda r: (not r.serving, order.get(r.name, 0), r.generation))

    def pause_projector(self) -> None:
        """Stops applying events until `resume_projector` (lag builds up meanwhile)."""
        self._projector().paused.set()

    def resume_projector(self) -> None:
        self._projector().paused.clear()
        self.watch.advance(0, 0, 0.0)

    def rebuild(self, name: str) -> Checkpoint:
        """Starts a blue/green rebuild; the serving build answers queries until the swap.

        In a process without the projector role, this records the request; the projector
        processes pick it up within seconds.
        """
        self.install()
        projection = self._projection(name)
        if self.projector is not None:
            return self.projector.rebuild(name)
        return self.checkpoints.start_build(
            name, projection.version,
            lambda generation: [t.name for t in projection.physical_tables(generation)],
        )

    def list_dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        """Unresolved dead letters, of one projection or all."""
        if name is not None:
            self._projection(name)
        try:
            with self.read_store.read() as connection:
                return self.dead_letters.open(connection, name)
        except _MISSING_TABLE:
            return []

    def retry_dead_letters(self, name: str) -> tuple[int, int]:
        """Applies a projection's parked events again, in order; (applied, still parked)."""
        self._projection(name)
        projector = self._projector()
        self.install()
        projector.reconcile()
        applied = failed = 0
        for runner in [r for r in projector.runners.values() if r.name == name]:
            done, left = runner.retry_parked()
            applied += done
            failed += left
        self.watch.advance(0, 0, 0.0)
        return applied, failed

    def _projection(self, name: str) -> Projection:
        try:
            return self.app.projections[name]
        except KeyError:
            raise NotRegistered(f"there is no projection named {name!r}") from None

    def _projector(self) -> Projector:
        if self.projector is None:
            raise RoleNotServed("this process does not run the projector role")
        return self.projector

    def head(self) -> int:
        """The log's head, from the log (or the relayed stream) where this process reads it."""
        if self.source is not None:
            head = self.source.head()
        elif self.feed is not None:
            head = self.feed.last_position()
        else:
            return self.watch.head
        self.watch.seen(head)
        return head

    def status(self) -> list[ProjectionStatus]:
        """Every build of every projection: state, position, head, lag, dead letters.

        Only reads: before any projector created the read store's tables, the list is empty.
        """
        try:
            head = self.head() if self.source is not None or self.feed is not None else 0
        except (StoreUnavailable, *_MISSING_TABLE):  # report what the read side knows
            head = 0
        now = time.time()
        try:
            with self.read_store.read() as connection:
                rows = self.checkpoints.all(connection)
                dead = self.dead_letters.counts(connection)
        except _MISSING_TABLE:
            return []
        result = []
        for row in rows:
            freshness = measure([row], self.watch, now)
            row_head = max(freshness.head, head)
            lag_events = max(0, row_head - row.position)
            state = row.state
            if state in ("live", "catching_up"):
                state = "live" if lag_events == 0 else "catching_up"
                # Stalled: behind, with neither a recent move nor a recent event to excuse it.
                if (lag_events and now - row.updated_at > self.stall_after_s
                        and freshness.lag_ms > self.stall_after_s * 1000):
                    state = "stalled"
            result.append(
                ProjectionStatus(
                    name=row.name, version=row.version, state=state, position=row.position,
                    head=row_head, lag_events=lag_events, lag_ms=freshness.lag_ms,
                    dead_letters=dead.get((row.name, row.generation), 0), active=row.active,
                    generation=row.generation,
                )
            )
        return result

    def _listen(self, store: Store, channel: str, callback: Callable[[str], None]) -> None:
        listener = PostgresListener(store.url, channel, callback)
        listener.start()
        self._listeners.append(listener)

    def _notified_event(self, payload: str) -> None:
        if payload.isdigit():
            position = int(payload)
            self.watch.advance(position, position, time.time())

    def _committed(self, events: list[RecordedEvent], recorded_at: float) -> None:
        self.watch.advance(events[0].position, events[-1].position, recorded_at)
