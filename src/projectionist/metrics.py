"""Prometheus metrics: commands and queries by outcome, and every projection's lag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import ProjectionistError
from .readstore.checkpoints import State


class ProjectionGauges(Protocol):
    """What the metrics read of one projection build (a `ProjectionStatus`)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def state(self) -> State: ...
    @property
    def position(self) -> int: ...
    @property
    def head(self) -> int: ...
    @property
    def lag_events(self) -> int: ...
    @property
    def lag_ms(self) -> float: ...
    @property
    def dead_letters(self) -> int: ...
    @property
    def active(self) -> bool: ...
    @property
    def storage_bytes(self) -> int | None: ...
    @property
    def rebuild_eta_s(self) -> float | None: ...
    @property
    def partitions(self) -> Sequence[PartitionGauges]: ...


class PartitionGauges(Protocol):
    """What the metrics read of one partition of a partitioned build."""

    @property
    def partition(self) -> int: ...
    @property
    def position(self) -> int: ...


class LogFigures(Protocol):
    """What the metrics read of the event log (a `Footprint` of its table)."""

    @property
    def rows(self) -> int: ...
    @property
    def storage_bytes(self) -> int: ...


_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Metrics:
    """The metrics of one runtime, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.commands = Counter(
            "projectionist_commands",
            "Commands handled, by type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "projectionist_command_seconds",
            "Time to handle a command, by type.",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queries = Counter(
            "projectionist_queries",
            "Queries answered, by type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "projectionist_query_seconds",
            "Time to answer a query, by type.",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.command_outcomes = Outcomes(self.commands, self.command_seconds)
        self.query_outcomes = Outcomes(self.queries, self.query_seconds)
        self.http_responses = Counter(
            "projectionist_http_responses",
            "HTTP responses, by method, route and status, refusals before any handler included.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.events_applied = Counter(
            "projectionist_projection_events_applied",
            "Events read and applied, by projection.",
            ["projection"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "projectionist_projection_batch_seconds",
            "Time to apply one batch, by projection.",
            ["projection"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.capture_changes = Counter(
            "projectionist_capture_changes",
            "Row changes captured from the WAL and appended to the log.",
            registry=self.registry,
        )
        self._log_watched = False

    def watch_projections(self, status: Callable[[], Sequence[ProjectionGauges]]) -> None:
        """Reports projection gauges from `status` at every scrape."""
        self.registry.register(_ProjectionCollector(status))

    def watch_log(self, figures: Callable[[], LogFigures]) -> None:
        """Reports the event log's size at every scrape (once, however often it is asked)."""
        if not self._log_watched:
            self._log_watched = True
            self.registry.register(_LogCollector(figures))

    def watch_capture(self, status: Callable[[], CaptureGauges | None]) -> None:
        """Reports where the capture of the write store stands at every scrape."""
        self.registry.register(_CaptureCollector(status))

    def watch_feed(self, relayed: Callable[[], int], head: Callable[[], int]) -> None:
        """Reports how far this process's relay copied the log into the event feed."""
        self.registry.register(_FeedCollector(relayed, head))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ProjectionCollector(Collector):
    def __init__(self, status: Callable[[], Sequence[ProjectionGauges]]) -> None:
        self._status = status

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            rows = [row for row in self._status() if row.active]
        except Exception:  # a store is down: report no projection rather than fail the scrape
            rows = []
        labels = ["projection", "version"]
        position = GaugeMetricFamily(
            "projectionist_projection_position", "The projection's checkpoint.", labels=labels
        )
        head = GaugeMetricFamily(
            "projectionist_projection_head",
            "The newest log position the projection knows.",
            labels=labels,
        )
        lag_events = GaugeMetricFamily(
            "projectionist_projection_lag_events", "Events not yet applied.", labels=labels
        )
        lag_seconds = GaugeMetricFamily(
            "projectionist_projection_lag_seconds",
            "Age of the oldest event not yet applied.",
            labels=labels,
        )
        dead = GaugeMetricFamily(
            "projectionist_projection_dead_letters", "Events parked after failing.", labels=labels
        )
        state = GaugeMetricFamily(
            "projectionist_projection_state",
            "1 for the projection's current state.",
            labels=[*labels, "state"],
        )
        storage = GaugeMetricFamily(
            "projectionist_projection_storage_bytes",
            "Bytes on disk of the projection's tables and indexes.",
            labels=labels,
        )
        eta = GaugeMetricFamily(
            "projectionist_projection_rebuild_eta_seconds",
            "Seconds a rebuild from scratch would take at the current head and replay rate.",
            labels=labels,
        )
        partition_position = GaugeMetricFamily(
            "projectionist_projection_partition_position",
            "The checkpoint of one partition of a partitioned projection.",
            labels=[*labels, "partition"],
        )
        partition_lag = GaugeMetricFamily(
            "projectionist_projection_partition_lag_events",
            "Events one partition of a partitioned projection has not read yet.",
            labels=[*labels, "partition"],
        )
        for row in rows:
            key = [row.name, str(row.version)]
            for part in row.partitions:
                partition_position.add_metric([*key, str(part.partition)], part.position)
                partition_lag.add_metric(
                    [*key, str(part.partition)], max(0, row.head - part.position)
                )
            position.add_metric(key, row.position)
            head.add_metric(key, row.head)
            lag_events.add_metric(key, row.lag_events)
            lag_seconds.add_metric(key, row.lag_ms / 1000.0)
            dead.add_metric(key, row.dead_letters)
            for name in State:
                state.add_metric([*key, name.value], 1.0 if row.state is name else 0.0)
            if row.storage_bytes is not None:
                storage.add_metric(key, row.storage_bytes)
            if row.rebuild_eta_s is not None:
                eta.add_metric(key, row.rebuild_eta_s)
        yield from (position, head, lag_events, lag_seconds, dead, state, storage, eta)
        yield from (partition_position, partition_lag)


class _LogCollector(Collector):
    def __init__(self, figures: Callable[[], LogFigures]) -> None:
        self._figures = figures

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            figures = self._figures()
        except Exception:  # the write store is down: report nothing rather than fail
            return
        events = GaugeMetricFamily(
            "projectionist_log_events",
            "Events in the log (estimated past a bound: see docs/capacity.md).",
        )
        events.add_metric([], figures.rows)
        size = GaugeMetricFamily(
            "projectionist_log_bytes", "Bytes on disk of the log's table and indexes."
        )
        size.add_metric([], figures.storage_bytes)
        yield from (events, size)


class _FeedCollector(Collector):
    def __init__(self, relayed: Callable[[], int], head: Callable[[], int]) -> None:
        self._relayed = relayed
        self._head = head

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        relayed = self._relayed()
        position = GaugeMetricFamily(
            "projectionist_feed_position",
            "The last log position this process's relay copied into the event feed.",
        )
        position.add_metric([], relayed)
        yield position
        try:
            head = self._head()
        except Exception:  # the write store is down: report what is known
            return
        lag = GaugeMetricFamily(
            "projectionist_feed_lag_events", "Events in the log not yet in the event feed."
        )
        lag.add_metric([], max(0, head - relayed))
        yield lag


class CaptureGauges(Protocol):
    """What the metrics read of a capture (a `CaptureStatus`)."""

    @property
    def slot(self) -> str: ...
    @property
    def commit_lsn(self) -> int: ...
    @property
    def lag_bytes(self) -> int: ...
    @property
    def lag_seconds(self) -> float: ...
    @property
    def retained_bytes(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...


class _CaptureCollector(Collector):
    def __init__(self, status: Callable[[], CaptureGauges | None]) -> None:
        self._status = status

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            found = self._status()
        except Exception:  # the write store is down: report no capture rather than fail
            found = None
        if found is None:
            return
        figures = {
            "lag_bytes": (
                "WAL bytes written since the capture last read through.",
                found.lag_bytes,
            ),
            "lag_seconds": (
                "Age of the oldest change not yet captured, at most.",
                found.lag_seconds,
            ),
            "retained_wal_bytes": ("WAL bytes the capture's slot keeps.", found.retained_bytes),
            "last_commit_lsn": ("Commit LSN of the last transaction captured.", found.commit_lsn),
            "failed": (
                "1 when capture stopped with an error (a lost slot).",
                float(bool(found.error)),
            ),
        }
        for name, (text, value) in figures.items():
            if value is None:
                continue
            gauge = GaugeMetricFamily(f"projectionist_capture_{name}", text, labels=["slot"])
            gauge.add_metric([found.slot], float(value))
            yield gauge


class Outcomes:
    """Counts commands (or queries) by type and outcome, and times them.

    Each label set's child metric is found once: `labels()` takes a lock and builds a key,
    microseconds that every command would pay. Type names are those of registered types, and
    outcomes the error codes, so the cache stays small.
    """

    __slots__ = ("_counter", "_counts", "_histogram", "_times")

    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self._counter = counter
        self._histogram = histogram
        self._counts: dict[tuple[str, str], Counter] = {}
        self._times: dict[str, Histogram] = {}

    def observe(self, type_name: str) -> _Observed:
        """A context that counts and times what runs in it: `ok`, an error's code, or `error`."""
        return _Observed(self, type_name)

    def record(self, type_name: str, outcome: str, seconds: float) -> None:
        count = self._counts.get((type_name, outcome))
        if count is None:
            count = self._counts[(type_name, outcome)] = self._counter.labels(type_name, outcome)
        count.inc()
        timing = self._times.get(type_name)
        if timing is None:
            timing = self._times[type_name] = self._histogram.labels(type_name)
        timing.observe(seconds)


class _Observed:
    __slots__ = ("_outcomes", "_start", "_type_name")

    def __init__(self, outcomes: Outcomes, type_name: str) -> None:
        self._outcomes = outcomes
        self._type_name = type_name
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, kind: object, error: BaseException | None, _traceback: object) -> None:
        if error is None:
            outcome = "ok"
        elif isinstance(error, ProjectionistError):
            outcome = error.code
        else:
            outcome = "error"
        self._outcomes.record(self._type_name, outcome, time.perf_counter() - self._start)
