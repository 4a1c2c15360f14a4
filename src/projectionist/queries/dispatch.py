"""Query dispatch: authorize, wait for a position if asked, read the read store, state freshness."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, is_dataclass
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import DataError

from .. import edge
from ..app import App, QueryRegistration
from ..auth import Principal
from ..capture.postgres.pgoutput import parse_lsn
from ..errors import Forbidden, InvalidMessage, NotFresh, StoreUnavailable
from ..messages import Query
from ..metrics import Metrics
from ..readstore.checkpoints import Checkpoints
from ..readstore.context import ReadContext
from ..readstore.documents import Page
from ..readstore.freshness import Freshness, measure
from ..stores import Store, first_line, missing_table
from ..tracing import span
from ..wakeups import HighWater, ProgressBoard

DEFAULT_WAIT_MS = 2000
MAX_WAIT_MS = 30000
_POLL_S = 0.02
# The capture's progress has no wake-up: read it often, a point read each time, while a
# query waits for a writer's LSN.
_LSN_POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class Answer:
    """A query's result and how fresh it is."""

    data: Any
    freshness: Freshness

    def to_json(self) -> dict[str, Any]:
        return {"data": to_jsonable(self.data), "freshness": self.freshness.to_json()}

    def json_bytes(self) -> bytes:
        """The answer as the JSON text of `to_json`, encoded without walking it in Python."""
        body = {"data": self.data, "freshness": self.freshness.to_json()}
        try:
            return orjson.dumps(body, default=_jsonable_default)
        except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, a non-text key
            return json.dumps(self.to_json(), separators=(",", ":")).encode()


class LsnProgress(Protocol):
    """Where a capture stands, for `min_lsn`."""

    def position_through(self, lsn: int) -> int | None:
        """The log position holding every captured change committed before `lsn`, or None
        while the capture has not read the WAL that far."""
        ...

    def wait_moved(self, timeout_s: float) -> None:
        """Waits for the capture to record progress, at most `timeout_s`."""
        ...


class QueryBus:
    """Answers queries from the read store only."""

    def __init__(
        self,
        app: App,
        read_store: Store,
        checkpoints: Checkpoints,
        *,
        high_water: HighWater | None = None,
        board: ProgressBoard | None = None,
        metrics: Metrics | None = None,
        lsn_positions: LsnProgress | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        # The log position holding every captured change committed before an LSN, once the
        # capture has read that far: what `min_lsn` waits for.
        self.lsn_positions = lsn_positions
        self.app = app
        self.read_store = read_store
        self.checkpoints = checkpoints
        self.high_water = high_water
        self.board = board or ProgressBoard()

    def parse(self, type_name: str, params: Mapping[str, Any]) -> Query:
        """Validates query parameters against the query type's schema."""
        return edge.validate(self.app.query_registration(type_name).query_type, dict(params))

    def ask(
        self,
        query: Query,
        principal: Principal,
        *,
        min_position: int | None = None,
        wait_ms: int | None = None,
        min_lsn: str | None = None,
    ) -> Answer:
        """Answers a query; with `min_position`, first waits up to `wait_ms` for it.

        With `min_lsn` (a writer's `pg_current_wal_lsn()` after its commit), it first waits
        for the capture to read the WAL that far, then for the position that holds it.
        """
        with (
            span("projectionist.query", {"projectionist.query": query.type_name}),
            self.metrics.query_outcomes.observe(query.type_name),
        ):
            if min_lsn is not None:
                started = time.monotonic()
                at_least = self._position_of(query.type_name, min_lsn, wait_ms)
                min_position = max(min_position or 0, at_least)
                waited = int((time.monotonic() - started) * 1000)
                wait_ms = max(0, (DEFAULT_WAIT_MS if wait_ms is None else wait_ms) - waited)
            return self._ask(query, principal, min_position, wait_ms)

    def _position_of(self, type_name: str, min_lsn: str, wait_ms: int | None) -> int:
        try:
            lsn = parse_lsn(min_lsn)
        except ValueError as error:
            raise InvalidMessage(f"min_lsn: {error}") from None
        if self.lsn_positions is None:
            raise InvalidMessage(
                "min_lsn needs an app that captures tables of a PostgreSQL write store"
            )
        wait = DEFAULT_WAIT_MS if wait_ms is None else wait_ms
        if not 0 <= wait <= MAX_WAIT_MS:
            raise InvalidMessage(f"wait_ms must be between 0 and {MAX_WAIT_MS}, got {wait}")
        deadline = time.monotonic() + wait / 1000.0
        while (position := self.lsn_positions.position_through(lsn)) is None:
            if time.monotonic() >= deadline:
                names = [p.name for p in self.app.query_registration(type_name).reads]
                raise NotFresh(
                    f"the capture did not read the WAL up to {min_lsn} within {wait} ms",
                    self.freshness(names),
                )
            self.lsn_positions.wait_moved(_LSN_POLL_S)
        return position

    def _ask(
        self, query: Query, principal: Principal, min_position: int | None, wait_ms: int | None
    ) -> Answer:
        registration = self.app.query_registration(query.type_name)
        query = edge.authorize(principal, edge.Kind.QUERY, query, registration.policy)
        names = [p.name for p in registration.reads]
        if min_position is None:
            if wait_ms is not None:
                raise InvalidMessage("wait_ms needs min_position")
            return self._read(registration, query, principal, names)
        if min_position < 0:
            raise InvalidMessage("min_position must be 0 or more")
        wait = DEFAULT_WAIT_MS if wait_ms is None else wait_ms
        if not 0 <= wait <= MAX_WAIT_MS:
            raise InvalidMessage(f"wait_ms must be between 0 and {MAX_WAIT_MS}, got {wait}")
        deadline = time.monotonic() + wait / 1000.0
        while True:
            if self._wait_for(names, min_position, max(0.0, deadline - time.monotonic())):
                answer = self._read(registration, query, principal, names)
                # The build that serves can change between the wait and the read (a swap):
                # the answer counts only if its own snapshot reached the position.
                if answer.freshness.position >= min_position:
                    return answer
                freshness = answer.freshness
                time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
            else:
                freshness = self.freshness(names)
            if time.monotonic() >= deadline:
                raise NotFresh(
                    f"the read models of {query.type_name} reached position"
                    f" {freshness.position}, not {min_position}, within {wait} ms",
                    freshness,
                )

    def freshness(self, names: list[str]) -> Freshness:
        with self.read_store.read() as connection:
            return measure(self.checkpoints.active(connection, names).values(), self.high_water)

    def _read(
        self, registration: QueryRegistration, query: Query, principal: Principal, names: list[str]
    ) -> Answer:
        try:
            return self._read_once(registration, query, principal, names)
        except sa.exc.DBAPIError as error:
            if not missing_table(error):
                raise
            # A swap dropped the build this read chose between its checkpoint read and its
            # table reads (PostgreSQL reads each statement at a new snapshot): read again.
            return self._read_once(registration, query, principal, names)

    def _read_once(
        self, registration: QueryRegistration, query: Query, principal: Principal, names: list[str]
    ) -> Answer:
        with self.read_store.read() as connection:
            active = self.checkpoints.active(connection, names)
            generations = {name: c.generation for name, c in active.items()}
            missing = [p.name for p in registration.reads if p.name not in generations]
            if missing:
                raise StoreUnavailable(
                    f"the read models {', '.join(missing)} are not built yet; start a projector"
                )
            context = ReadContext(connection, generations, principal)
            try:
                data = registration.handler(query, context)
            except Forbidden as refusal:
                # The policy's refusals were audited by authorize; this one is the handler's.
                edge.audit_refusal(principal, edge.Kind.QUERY, query.type_name, refusal)
                raise
            except DataError as error:
                # A parameter the database refuses to compare with (PostgreSQL and NUL).
                raise InvalidMessage(
                    f"{query.type_name} has a value the store cannot"
                    f" search for: {first_line(error.orig)}"
                ) from error
            freshness = measure(active.values(), self.high_water)
        return Answer(data, freshness)

    def _wait_for(self, names: list[str], position: int, timeout_s: float) -> bool:
        board = self.board
        deadline = time.monotonic() + timeout_s
        if all(board.knows(name) for name in names) and board.wait_until(
            names, position, timeout_s
        ):
            return True
        # The projections run in another process (or have since moved to one): watch their
        # checkpoints, woken by the read store's wake-ups where it has them, polling otherwise.
        while True:
            if self.freshness(names).position >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            board.wait_moved(min(_POLL_S, remaining))


def _jsonable_default(data: Any) -> Any:
    """What orjson cannot encode by itself: models and pages (it encodes dataclasses)."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, Page):
        return {"items": data.items, "next": data.next}
    raise TypeError(f"{type(data).__name__} is not JSON")


def to_jsonable(data: Any) -> Any:
    """Plain JSON values from what a query handler returns."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, Page):
        return {"items": data.items, "next": data.next}
    if is_dataclass(data) and not isinstance(data, type):
        from dataclasses import asdict

        return asdict(data)
    if isinstance(data, list | tuple):
        return [to_jsonable(item) for item in data]
    if isinstance(data, dict):
        return {key: to_jsonable(value) for key, value in data.items()}
    return data
