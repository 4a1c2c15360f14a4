"""Prometheus metrics: commands and queries by outcome, and every projection's lag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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

    def watch_projections(self, status: Callable[[], Sequence[ProjectionGauges]]) -> None:
        """Reports projection gauges from `status` at every scrape."""
        self.registry.register(_ProjectionCollector(status))

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
        for row in rows:
            key = [row.name, str(row.version)]
            position.add_metric(key, row.position)
            head.add_metric(key, row.head)
            lag_events.add_metric(key, row.lag_events)
            lag_seconds.add_metric(key, row.lag_ms / 1000.0)
            dead.add_metric(key, row.dead_letters)
            for name in State:
                state.add_metric([*key, name.value], 1.0 if row.state is name else 0.0)
        yield from (position, head, lag_events, lag_seconds, dead, state)


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


@contextmanager
def observe(counter: Counter, histogram: Histogram, type_name: str) -> Iterator[None]:
    """Counts one command or query by outcome and times it."""
    start = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except ProjectionistError as error:
        outcome = error.code
        raise
    finally:
        counter.labels(type_name, outcome).inc()
        histogram.labels(type_name).observe(time.perf_counter() - start)
