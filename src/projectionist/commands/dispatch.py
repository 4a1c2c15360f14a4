"""Command dispatch: validate, authorize, handle in one transaction, commit, wake the readers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from .. import edge
from ..app import App
from ..auth import Principal
from ..correlation import current as current_correlation
from ..driver import Sql, drop_held
from ..errors import (
    ConcurrencyError,
    Forbidden,
    InvalidMessage,
    ProjectionistError,
    Refused,
    StoreUnavailable,
)
from ..eventlog import EventLog
from ..ids import uuid4_text
from ..messages import Command, StoredEvent
from ..metrics import Metrics
from ..stores import Store, first_line, is_lock_conflict
from ..tracing import span
from . import idempotency
from .group_commit import GroupCommit, Ticket
from .stream_versions import StreamVersions
from .unit_of_work import RecordedEvent, UnitOfWork

_LOCK_CONFLICT_ATTEMPTS = 3
# A group commit runs its commands without savepoints while they succeed. After a failure, the
# batch runs again with each command inside a savepoint, sent on the driver's cursor:
# SQLAlchemy's nested transactions cost twice the CPU. A failed command rolls back to it; one
# that succeeded releases it, so the batch's append runs in the transaction itself (a
# savepoint left open would give each command's later writes a transaction id of their own).
_SAVEPOINT = Sql("SAVEPOINT projectionist_command")
_RELEASE_SAVEPOINT = Sql("RELEASE SAVEPOINT projectionist_command")
_ROLLBACK_TO_SAVEPOINT = Sql("ROLLBACK TO SAVEPOINT projectionist_command")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a handled command did: its id, its events, and the position of its last event."""

    command_id: str
    position: int
    events: list[RecordedEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "position": self.position,
            "events": [
                {"type": e.type, "stream": e.stream, "version": e.version, "position": e.position}
                for e in self.events
            ],
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CommandResult:
        return cls(
            command_id=body["command_id"],
            position=body["position"],
            events=[RecordedEvent(**e) for e in body["events"]],
        )


class CommandBus:
    """Runs commands against the write store."""

    def __init__(
        self,
        app: App,
        store: Store,
        log: EventLog,
        *,
        on_commit: Callable[[list[StoredEvent], float], None] | None = None,
        metrics: Metrics | None = None,
        max_batch: int = 64,
        idempotency_ttl_s: float | None = idempotency.DEFAULT_TTL_S,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.pruner = idempotency.Pruner(store.write, idempotency_ttl_s)
        self._optimistic = True
        self._group: GroupCommit[_Request, CommandResult] = GroupCommit(
            self._run_batch, max_batch=max_batch, fits=_fits
        )
        self.app = app
        self.store = store
        self.log = log
        self.on_commit = on_commit
        self.versions = StreamVersions()

    def parse(self, type_name: str, body: Mapping[str, Any] | bytes | str) -> Command:
        """Validates a command body against its type's schema."""
        return edge.validate(self.app.command_registration(type_name).command_type, body)

    def execute(
        self,
        command: Command,
        principal: Principal,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> CommandResult:
        """Authorizes and handles a command; its changes and events commit together.

        `correlation_id` is stored in its events' metadata (by default, the command's id).
        """
        token = current_correlation.set(correlation_id) if correlation_id is not None else None
        try:
            with (
                span("projectionist.command", {"projectionist.command": command.type_name}),
                self.metrics.command_outcomes.observe(command.type_name),
            ):
                return self._execute(command, principal, idempotency_key, correlation_id)
        finally:
            if token is not None:
                current_correlation.reset(token)

    def _execute(
        self,
        command: Command,
        principal: Principal,
        idempotency_key: str | None,
        correlation_id: str | None,
    ) -> CommandResult:
        registration = self.app.command_registration(command.type_name)
        command = edge.authorize(principal, edge.Kind.COMMAND, command, registration.policy)
        key = digest = None
        if idempotency_key is not None:
            key = idempotency.scoped_key(principal.subject, idempotency_key)
            digest = idempotency.request_hash(command)
        request = _Request(
            command=command,
            principal=principal,
            handler=registration.handler,
            key=key,
            digest=digest,
            correlation_id=correlation_id,
        )
        try:
            return self._group.submit(request)
        except (Refused, Forbidden) as refusal:
            # The policy's refusals were audited by authorize; these are the handler's.
            edge.audit_refusal(principal, edge.Kind.COMMAND, command.type_name, refusal)
            raise

    def _run_batch(self, tickets: Sequence[Ticket[_Request, CommandResult]]) -> None:
        self.pruner.now_and_then()
        if len(tickets) == 1:
            self._run_alone(tickets[0])
            return
        try:
            try:
                appended = self._run_together(tickets, isolated=not self._optimistic)
            except _Spoilt:
                # A command failed in a batch run without savepoints: the batch rolled back,
                # and runs again with them.
                self._optimistic = False
                for ticket in tickets:
                    ticket.result = ticket.error = None
                appended = self._run_together(tickets, isolated=True)
        except (ConcurrencyError, IntegrityError, InvalidMessage, StoreUnavailable) as error:
            # (A constraint or a value the store refuses, here, is a held write's, sent with
            # the append or the COMMIT: running each command alone tells whose.)
            if isinstance(error, StoreUnavailable) and not is_lock_conflict(error):
                raise
            if isinstance(error, ConcurrencyError):
                self.versions.refused(error.stream)
            # Another process took a stream version one of these commands wanted, or locked
            # rows in another order (a deadlock): the batch rolled back as a whole, so run each
            # command again by itself.
            # A refusal inside the batch may rest on a command that rolled back with it, so
            # every command runs again.
            for ticket in tickets:
                ticket.result = ticket.error = None
                self._run_alone(ticket)
            return
        # After a batch in which every command succeeded, the next runs without savepoints.
        self._optimistic = all(ticket.error is None for ticket in tickets)
        self.versions.committed(appended)
        if appended and self.on_commit is not None:
            self.on_commit(appended, time.time())

    def _run_together(
        self, tickets: Sequence[Ticket[_Request, CommandResult]], *, isolated: bool
    ) -> list[StoredEvent]:
        """Runs commands in one transaction and appends all their events at once.

        `isolated` runs each command in a savepoint, so a failed one rolls back alone; without
        it, the first failure rolls the batch back and raises _Spoilt.
        """
        staged: list[tuple[Ticket[_Request, CommandResult], UnitOfWork]] = []
        with self.store.write(kept=True) as connection:
            versions: dict[str, int] = {}
            for ticket in tickets:
                request = ticket.item
                if isolated:
                    _SAVEPOINT.run(connection)
                try:
                    answer = self._replay(connection, request)
                    if answer is None:
                        unit = self._unit(connection, request, versions)
                        self._handle(request, unit)
                    if isolated:
                        with _as_the_commands(request.command.type_name):
                            _RELEASE_SAVEPOINT.run(connection)  # sends its held writes
                except (OperationalError, StoreUnavailable):
                    raise
                except Exception as error:
                    if not isolated:
                        raise _Spoilt from error
                    drop_held(connection)  # the command's held writes: undone unsent
                    _ROLLBACK_TO_SAVEPOINT.run(connection)
                    _RELEASE_SAVEPOINT.run(connection)
                    ticket.error = error
                    continue
                if answer is not None:
                    ticket.result = answer
                    continue
                versions.update(unit.versions)
                staged.append((ticket, unit))
            pending = [event for _, unit in staged for event in unit.pending]
            positions = []
            if pending:
                with span("projectionist.append", {"projectionist.events": len(pending)}):
                    positions = self.log.append(
                        connection, pending, last=all(t.item.key is None for t, _ in staged)
                    )
            appended: list[StoredEvent] = []
            results: list[tuple[Ticket[_Request, CommandResult], CommandResult]] = []
            offset = 0
            for ticket, unit in staged:
                mine = positions[offset : offset + len(unit.pending)]
                offset += len(unit.pending)
                events = unit.recorded(mine)
                appended.extend(unit.stored(mine))
                results.append((ticket, self._result(connection, ticket.item, unit, events)))
        # Only a batch that committed has results: a failed commit leaves its callers an error.
        for ticket, result in results:
            ticket.result = result
        return appended

    def _run_alone(self, ticket: Ticket[_Request, CommandResult]) -> None:
        # A deadlock victim, or a command that lost a race for a stream version it did not
        # care about, wrote nothing: run it again, a few times at most.
        for attempt in range(_LOCK_CONFLICT_ATTEMPTS):
            if attempt:
                ticket.result = ticket.error = None
            self._run_alone_once(ticket)
            error = ticket.error
            if error is None or not (
                is_lock_conflict(error) or (isinstance(error, ConcurrencyError) and error.retryable)
            ):
                return

    def _run_alone_once(self, ticket: Ticket[_Request, CommandResult]) -> None:
        request = ticket.item
        try:
            with self.store.write(kept=True) as connection:
                answer = self._replay(connection, request)
                if answer is not None:
                    ticket.result = answer
                    return
                unit = self._unit(connection, request, {})
                self._handle(request, unit)
                # Without an answer to remember, the append ends the transaction.
                with _as_the_commands(request.command.type_name):
                    events = unit.flush(last=request.key is None)
                ticket.result = self._result(connection, request, unit, events)
        except ProjectionistError as error:
            ticket.error = error
            return
        self.versions.committed(unit.appended)
        if events and self.on_commit is not None:
            self.on_commit(unit.appended, time.time())

    def _replay(self, connection: Connection, request: _Request) -> CommandResult | None:
        if request.key is None or request.digest is None:
            return None
        answer = idempotency.lookup(
            connection, request.key, request.digest, expired_before=self.pruner.expired_before()
        )
        return CommandResult.from_json(answer) if answer is not None else None

    def prune_idempotency_keys(self) -> int:
        """Deletes stored answers older than the TTL, a batch per transaction; how many."""
        return self.pruner.prune()

    def close(self, timeout_s: float = 10.0) -> None:
        """Waits for a pruning under way and starts no other."""
        self.pruner.close(timeout_s)

    def _unit(
        self, connection: Connection, request: _Request, versions: dict[str, int]
    ) -> UnitOfWork:
        command_id = uuid4_text()
        return UnitOfWork(
            connection,
            self.log,
            self.app.registry,
            command_id=command_id,
            correlation_id=request.correlation_id or command_id,
            principal=request.principal,
            known_versions=versions,
            remembered=self.versions,
        )

    def _handle(self, request: _Request, unit: UnitOfWork) -> None:
        """Runs the handler, then saves the aggregates it changed and did not save."""
        # The handler's log lines carry its command's correlation id, in whichever thread
        # runs it (one thread runs a whole group commit).
        token = current_correlation.set(unit.correlation_id)
        try:
            with _as_the_commands(request.command.type_name):
                request.handler(request.command, unit)
                unit.save_loaded()
        finally:
            current_correlation.reset(token)

    def _result(
        self,
        connection: Connection,
        request: _Request,
        unit: UnitOfWork,
        events: list[RecordedEvent],
    ) -> CommandResult:
        position = events[-1].position if events else 0
        result = CommandResult(unit.command_id, position, events)
        if request.key is not None and request.digest is not None:
            idempotency.remember(connection, request.key, request.digest, result.to_json())
        return result


@contextmanager
def _as_the_commands(name: str) -> Iterator[None]:
    """Constraint and data errors of the store, raised as the command's 409 and 422: in its
    handler, or later where the handler's held writes (`UnitOfWork.write`) were sent."""
    try:
        yield
    except IntegrityError as error:
        raise Refused(f"{name} conflicts with existing data: {first_line(error.orig)}") from error
    except (DataError, OverflowError) as error:
        cause = error.orig if isinstance(error, DataError) else error
        raise InvalidMessage(
            f"{name} has a value the store cannot hold: {first_line(cause)}"
        ) from error


class _Spoilt(Exception):
    """A command of a batch run without savepoints failed; the batch rolled back."""


@dataclass(frozen=True, slots=True)
class _Request:
    command: Command
    principal: Principal
    handler: Callable[[Any, UnitOfWork], Any]
    key: str | None
    digest: str | None
    correlation_id: str | None


def _fits(
    batch: Sequence[Ticket[_Request, CommandResult]], ticket: Ticket[_Request, CommandResult]
) -> bool:
    # One idempotency key at most once per batch: the second must see the first's answer.
    key = ticket.item.key
    return key is None or all(other.item.key != key for other in batch)
