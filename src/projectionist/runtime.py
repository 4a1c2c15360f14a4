"""The Runtime: an App bound to its stores, running the roles this process takes.

Composition only: each role has one builder that wires its parts (stores, the event log or a
feed, buses, the projector, wake-ups); the rules live in the rooms of their concepts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from types import TracebackType

from . import capture, migrations
from .app import App
from .auth import SYSTEM, Principal
from .backends import open_event_log, open_feed
from .commands import idempotency
from .commands.dispatch import CommandBus, CommandResult
from .errors import (
    RoleNotServed,
    StoreUnavailable,
)
from .eventlog import EventLog, EventSource
from .eventlog.recent import RecentEvents
from .feeds import Feed, Relay
from .messages import Command, Query, StoredEvent
from .metrics import Metrics
from .migrations import UpgradeMode
from .projections.definition import Projection
from .projections.operations import ProjectionOperations
from .projections.partitions import PartitionedRunner, StepReads
from .projections.projector import Projector
from .projections.runner import ProjectionRunner
from .projections.status import ProjectionStatus, StatusReader
from .queries.dispatch import Answer, QueryBus
from .readstore.checkpoints import Checkpoint, Checkpoints
from .readstore.dead_letters import DeadLetters
from .readstore.leases import Leases
from .readstore.partitions import Partition
from .roles import Role, default_roles, parse_roles
from .stores import MISSING_TABLE_ERRORS, Store, default_read_store
from .wakeups import HighWater, ProgressBoard, WakeupSource

DEFAULT_STORE = "sqlite:///projectionist.db"


class Runtime(ProjectionOperations):
    """An App bound to a write store and a read store, running some or all roles."""

    def __init__(
        self,
        app: App,
        *,
        store: str | None = None,
        read_store: str | None = None,
        roles: str | Sequence[str] | None = None,
        batch_size: int = 1000,
        poll_interval_s: float = 0.5,
        pool_size: int = 5,
        lease_ttl_s: float = 5.0,
        stall_after_s: float = 30.0,
        events: str | None = None,
        idempotency_ttl_s: float | None = idempotency.DEFAULT_TTL_S,
        upgrade: str = UpgradeMode.AUTO,
    ) -> None:
        self.app = app
        self.upgrade = UpgradeMode.parse(upgrade)
        store_url = store or DEFAULT_STORE
        captures = bool(app.captures)
        self.roles = parse_roles(roles or default_roles(captures=captures, store_url=store_url))
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        read_url = read_store or default_read_store(store_url)
        # Projectors fed by a feed (`events`) never touch the write store.
        needs_write_store = (
            Role.COMMAND in self.roles
            or (Role.PROJECTOR in self.roles and events is None)
            or Role.CAPTURE in self.roles
        )
        self.store: Store | None = (
            Store(store_url, pool_size=pool_size) if needs_write_store else None
        )
        # A read model can always be rebuilt from the log, and its rows commit with their
        # checkpoint: losing the last transactions to a power cut only means replaying them.
        # So the read store's connections commit without waiting for the disk (SQLite
        # synchronous=NORMAL, PostgreSQL synchronous_commit=off), even in the write store's
        # database, whose own connections keep full durability for commands and the log.
        self.read_store = Store(read_url, pool_size=pool_size, durable=False)
        self.log: EventLog | None = open_event_log(self.store) if self.store else None
        self.feed = self._open_feed(events, lease_ttl_s)
        # Where this process learns the log's head: the log, or the feed its projectors read.
        self.source: EventSource | None = self.log
        self.metrics = Metrics()
        self.high_water = HighWater()
        self.recent: RecentEvents | None = None
        self.board = ProgressBoard()
        self.checkpoints = Checkpoints(self.read_store)
        self.dead_letters = DeadLetters(self.read_store)
        # Errands in threads of their own (measuring storage, pruning keys) end before the
        # stores close: a connection checked in after its pool was disposed is never closed.
        self._on_stop: list[Callable[[], None]] = []
        self.statuses = StatusReader(
            self.read_store,
            self.checkpoints,
            self.dead_letters,
            self.high_water,
            stall_after_s=stall_after_s,
        )
        self.on_stop(self.statuses.close)
        self.wakeups: list[WakeupSource] = []
        self.relay: Relay | None = None
        self.commands: CommandBus | None = None
        self.leases: Leases | None = None
        self.projector: Projector | None = None
        self.queries: QueryBus | None = None
        self.capturer: capture.Capturer | None = None
        self.capture_progress = capture.progress(app, store_url, self.store, self.metrics)
        if Role.COMMAND in self.roles:
            self._build_command_role(idempotency_ttl_s)
        if Role.PROJECTOR in self.roles:
            self._build_projector_role(lease_ttl_s)
        if Role.QUERY in self.roles:
            self._build_query_role()
        if Role.CAPTURE in self.roles:
            self._build_capture_role(lease_ttl_s)
        self.metrics.watch_projections(self.status)
        self._installed = False

    # One builder per role

    def _build_command_role(self, idempotency_ttl_s: float | None) -> None:
        assert self.store is not None and self.log is not None
        self.commands = CommandBus(
            self.app,
            self.store,
            self.log,
            on_commit=self._committed,
            metrics=self.metrics,
            idempotency_ttl_s=idempotency_ttl_s,
        )
        self.on_stop(self.commands.close)
        if self.feed is not None:
            relay = self.relay = Relay(
                self.log,
                self.feed,
                self.high_water,
                batch_size=self.batch_size,
                poll_interval_s=self.poll_interval_s,
            )
            self.metrics.watch_feed(lambda: relay.position, self.log.head)

    def _open_feed(self, events: str | None, lease_ttl_s: float) -> Feed | None:
        # A projector's feed reads give up well within its lease TTL (see Coordinator).
        timeout_s = lease_ttl_s / 2 if Role.PROJECTOR in self.roles else None
        return None if events is None else open_feed(events, read_timeout_s=timeout_s)

    def _build_projector_role(self, lease_ttl_s: float) -> None:
        self.leases = Leases(self.read_store, ttl_s=lease_ttl_s)
        commits = Role.COMMAND in self.roles or Role.CAPTURE in self.roles
        if self.feed is None and self.log is not None and commits:
            # The projector reads the events its process just committed from memory.
            recheck_s = min(0.25, self.poll_interval_s)  # no later than a poll would
            self.recent = RecentEvents(self.log, self.high_water, recheck_s=recheck_s)
        self.projector = Projector(
            list(self.app.projections.values()),
            make_runner=self._make_runner,
            checkpoints=self.checkpoints,
            high_water=self.high_water,
            board=self.board,
            leases=self.leases,
            poll_interval_s=self.poll_interval_s,
            loop_context=self.recent.trusting_wakeups if self.recent else nullcontext,
        )
        if self.feed is not None:
            self.source = self.feed.reader()
        # The log's head comes from the feed or from the log; appends of other processes
        # wake the projector through the backend that carries them.
        source = (
            self.feed.wakeups(self.high_water)
            if self.feed is not None
            else (self.log.wakeups(self.high_water) if self.log is not None else None)
        )
        if source is not None:
            self.wakeups.append(source)

    def _build_query_role(self) -> None:
        self.queries = QueryBus(
            self.app,
            self.read_store,
            self.checkpoints,
            high_water=self.high_water,
            board=self.board,
            metrics=self.metrics,
            lsn_positions=self.capture_progress,
        )
        if self.projector is not None:
            return  # queries wait on this process's own projector
        if self.feed is not None:
            # The feed tells a query-only process the head, so answers state the lag of
            # events relayed but not applied, even with every projector down.
            self.wakeups.append(self.feed.wakeups(self.high_water))
        source = self.checkpoints.wakeups(self.board)
        if source is not None:
            self.wakeups.append(source)

    def _build_capture_role(self, lease_ttl_s: float) -> None:
        assert self.store is not None and self.log is not None
        leases = Leases(self.read_store, ttl_s=lease_ttl_s)
        self.capturer = capture.role(self.app, self.store, self.log, leases, self.metrics)
        if self.capturer is not None:
            self.capturer.on_committed = self._committed
        if self.capturer is not None and self.capture_progress is not None:
            self.capturer.on_recorded = self.capture_progress.recorded

    def _make_runner(self, projection: Projection, build: Checkpoint) -> ProjectionRunner:
        count = projection.partitions
        if count == 1:
            return self._make_part(projection, build, None, self._source())
        # The partitions of a build read the log once per step; each follows a feed with a
        # reader of its own, which follows its position.
        shared = StepReads(self.log) if self.feed is None and self.log is not None else None
        parts = [
            self._make_part(projection, build, Partition(i, count), shared or self._source())
            for i in range(count)
        ]
        return PartitionedRunner(parts, build, shared)

    def _source(self) -> EventSource:
        # Each build reads a feed through a reader of its own, which follows its position.
        if self.feed is not None:
            return self.feed.reader()
        if self.recent is not None:
            return self.recent
        assert self.log is not None
        return self.log

    def _make_part(
        self,
        projection: Projection,
        build: Checkpoint,
        partition: Partition | None,
        source: EventSource,
    ) -> ProjectionRunner:
        return ProjectionRunner(
            projection,
            build,
            log=source,
            read_store=self.read_store,
            registry=self.app.registry,
            checkpoints=self.checkpoints,
            dead_letters=self.dead_letters,
            batch_size=self.batch_size,
            metrics=self.metrics,
            partition=partition,
        )

    # Lifetime

    def install(self) -> None:
        """Creates the framework's and the app's missing tables; starts the app's captures."""
        if self._installed:
            return
        # Older framework tables first: what follows creates only the missing ones.
        reads = self.projector is not None or self.queries is not None
        migrations.upgrade_stores(self.store, self.read_store if reads else None, self.upgrade)
        if self.store is not None and self.log is not None:
            self.log.install()
            if self.commands is not None:
                with self.store.schema() as connection:
                    idempotency.install(connection)
                    self.app.write_model.create_all(connection)
            capture.install(self.store, self.app.captures.values(), self.app.write_model)
            if self.capturer is not None:
                self.capturer.install()
        if self.projector is not None or self.queries is not None:
            self.checkpoints.install()
            self.dead_letters.install()
        if self.projector is not None:
            assert self.leases is not None
            self.leases.install()
            self.projector.reconcile()
        elif self.queries is not None:
            # A query process may start before any projector created the read models.
            for projection in self.app.projections.values():
                self.checkpoints.install_serving(
                    projection.name, projection.version, projection.physical_tables
                )
        self._installed = True

    def start(self) -> Runtime:
        """Installs, then starts this process's background work: relay, wake-ups, projector."""
        self.install()
        if self.relay is not None:
            self.relay.start()
        for source in self.wakeups:
            source.start()
        if self.projector is not None:
            self.projector.start()
        if self.capturer is not None:
            self.capturer.start()
        elif self.queries is not None and self.feed is not None:
            with contextlib.suppress(StoreUnavailable):
                self.head()
        return self

    def stop(self) -> None:
        if self.capturer is not None:
            self.capturer.stop()
        if self.capture_progress is not None:
            self.capture_progress.close()
        for source in self.wakeups:
            source.stop()
        if self.projector is not None:
            self.projector.stop()
        if self.relay is not None:
            self.relay.stop()
        if self.feed is not None:
            self.feed.close()
        for close in self._on_stop:
            close()
        for store in (self.store, self.read_store):
            if store is not None:
                store.dispose()

    def on_stop(self, close: Callable[[], None]) -> None:
        """Calls `close` when the runtime stops, before its stores are disposed."""
        self._on_stop.append(close)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # Commands and queries

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
        return self.commands.execute(
            command, principal, idempotency_key=idempotency_key, correlation_id=correlation_id
        )

    def ask(
        self,
        query: Query,
        *,
        principal: Principal = SYSTEM,
        min_position: int | None = None,
        wait_ms: int | None = None,
        min_lsn: str | None = None,
    ) -> Answer:
        """Answers a query from the read models, with its freshness."""
        if self.queries is None:
            raise RoleNotServed("this process does not run the query role")
        self.install()
        return self.queries.ask(
            query, principal, min_position=min_position, wait_ms=wait_ms, min_lsn=min_lsn
        )

    # Where things stand

    def head(self) -> int:
        """The log's head, from the log (or the feed) where this process reads it."""
        if self.source is not None:
            head = self.source.head()
        elif self.feed is not None:
            head = self.feed.last_position()
        else:
            return self.high_water.head
        self.high_water.seen(head)
        return head

    def status(self) -> list[ProjectionStatus]:
        """Every build of every projection: state, position, head, lag, dead letters.

        Only reads: before any projector created the read store's tables, the list is empty.
        """
        try:
            head = self.head() if self.source is not None or self.feed is not None else 0
        except (StoreUnavailable, *MISSING_TABLE_ERRORS):  # report what the read side knows
            head = 0
        return self.statuses.read(head)

    def _committed(self, events: list[StoredEvent], recorded_at: float) -> None:
        if self.recent is not None:
            self.recent.committed(events)  # before the wake-up: the projector reads them next
        self.high_water.advance(events[0].position, events[-1].position, recorded_at)
