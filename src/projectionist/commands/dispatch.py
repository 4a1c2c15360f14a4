"""Command dispatch: validate, authorize, handle in one transaction, commit, wake the readers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from ..app import App
from ..auth import Principal
from ..errors import Forbidden, InvalidMessage, Refused
from ..eventlog import EventLog
from ..messages import Command
from ..metrics import Metrics, observe
from ..stores import Store
from . import idempotency
from .unit_of_work import RecordedEvent, UnitOfWork

audit = logging.getLogger("projectionist.audit")


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
        on_commit: Callable[[list[RecordedEvent], float], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.app = app
        self.store = store
        self.log = log
        self.on_commit = on_commit

    def parse(self, type_name: str, body: Mapping[str, Any] | bytes | str) -> Command:
        """Validates a command body against its type's schema."""
        command_type = self.app.command_registration(type_name).command_type
        try:
            if isinstance(body, bytes | str):
                # JSON has its own types: "5" and true are not integers.
                return command_type.model_validate_json(body, strict=True)
            return command_type.model_validate(body)
        except ValidationError as error:
            raise InvalidMessage(describe_validation(error), error.errors(include_url=False)
                                 ) from None

    def authorize(self, command: Command, principal: Principal) -> Command:
        """The command as the principal may send it; Forbidden otherwise."""
        registration = self.app.command_registration(command.type_name)
        if not principal.may_command(command.type_name):
            raise Forbidden(
                f"the token lacks the scope commands:{command.type_name} (or commands:*)"
            )
        if registration.policy is not None:
            verdict = registration.policy(principal, command)
            if verdict is False:
                raise Forbidden(f"the policy of {command.type_name} refuses this subject")
            if isinstance(verdict, Command):
                return verdict
        return command

    def execute(
        self,
        command: Command,
        principal: Principal,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> CommandResult:
        """Authorizes and handles a command; its changes and events commit together."""
        with observe(self.metrics.commands, self.metrics.command_seconds, command.type_name):
            return self._execute(command, principal, idempotency_key, correlation_id)

    def _execute(self, command: Command, principal: Principal, idempotency_key: str | None,
                 correlation_id: str | None) -> CommandResult:
        try:
            command = self.authorize(command, principal)
        except Forbidden as refusal:
            audit.warning("command refused: subject=%s command=%s reason=%s",
                          principal.subject, command.type_name, refusal.detail)
            raise
        registration = self.app.command_registration(command.type_name)
        command_id = str(uuid.uuid4())
        key = digest = None
        if idempotency_key is not None:
            key = idempotency.scoped_key(principal.subject, idempotency_key)
            digest = idempotency.request_hash(command)
        with self.store.write() as connection:
            if key is not None and digest is not None:
                answer = idempotency.lookup(connection, key, digest)
                if answer is not None:
                    return CommandResult.from_json(answer)
            unit = UnitOfWork(
                connection, self.log, self.app.registry, command_id=command_id,
                correlation_id=correlation_id or command_id, principal=principal,
            )
            try:
                registration.handler(command, unit)
                recorded = unit.flush()
            except IntegrityError as error:
                raise Refused(
                    f"{command.type_name} conflicts with existing data: "
                    f"{str(error.orig).splitlines()[0]}"
                ) from error
            position = recorded[-1].position if recorded else 0
            result = CommandResult(command_id, position, recorded)
            if key is not None and digest is not None:
                idempotency.remember(connection, key, digest, result.to_json())
        if recorded and self.on_commit is not None:
            self.on_commit(recorded, time.time())
        return result


def describe_validation(error: ValidationError) -> str:
    """One sentence per problem: what was expected, and where (`$.lines[2].quantity`)."""
    parts = []
    for item in error.errors(include_url=False)[:10]:
        location = "$" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        )
        parts.append(f"{item['msg']} - at `{location}`")
    more = len(error.errors()) - 10
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)

