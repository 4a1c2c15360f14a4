"""The edge: what every request passes before it reaches a handler, for commands and queries alike.

One place for the checks both buses and the HTTP routes make: messages validated against their
schema (with messages that say what is wrong and where), scopes, the app's policies, and the
audit line of every refusal. A query scope never allows a command and the reverse; `admin`
covers the operations routes only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError

from .auth import Principal
from .errors import Forbidden, InvalidMessage, ProjectionistError
from .messages import Message

audit = logging.getLogger("projectionist.audit")

M = TypeVar("M", bound=Message)

Policy = Callable[[Principal, Any], Any]
"""Sees the principal and the message; raises Forbidden or returns False to refuse. It may
return a narrowed message (for example a query limited to the caller's own data)."""


class Kind(StrEnum):
    """What a request asks for, as scopes and audit lines name it."""

    COMMAND = "command"
    QUERY = "query"
    OPERATION = "operation"


_SCOPE_PREFIX = {Kind.COMMAND: "commands", Kind.QUERY: "queries"}


def validate(message_type: type[M], body: Mapping[str, Any] | bytes | str) -> M:
    """The message `body` describes, or InvalidMessage naming each problem and where.

    A JSON text is read strictly (JSON has its own types: "5" and true are not integers); a
    mapping, such as query parameters, is read with Pydantic's usual conversions.
    """
    try:
        if isinstance(body, bytes | str):
            return message_type.model_validate_json(body, strict=True)
        return message_type.model_validate(body)
    except ValidationError as error:
        raise InvalidMessage(describe_validation(error), error.errors(include_url=False)) from None


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


def check_scope(principal: Principal, kind: Kind, type_name: str) -> None:
    """Forbidden (and audited) unless the principal's scopes allow this command or query."""
    prefix = _SCOPE_PREFIX[kind]
    if f"{prefix}:*" in principal.scopes or f"{prefix}:{type_name}" in principal.scopes:
        return
    refuse(
        principal,
        kind,
        type_name,
        Forbidden(f"the token lacks the scope {prefix}:{type_name} (or {prefix}:*)"),
    )


def authorize(principal: Principal, kind: Kind, message: M, policy: Policy | None) -> M:
    """The message as the principal may send it: scopes, then the app's policy, if any.

    Every refusal is audited. A policy may narrow the message by returning another one.
    """
    check_scope(principal, kind, message.type_name)
    if policy is None:
        return message
    try:
        verdict = policy(principal, message)
    except Forbidden as refusal:
        refuse(principal, kind, message.type_name, refusal)
    if verdict is False:
        refuse(
            principal,
            kind,
            message.type_name,
            Forbidden(f"the policy of {message.type_name} refuses this subject"),
        )
    if isinstance(verdict, type(message)):
        return verdict
    return message


def require(principal: Principal, *scopes: str, operation: str) -> None:
    """Forbidden (and audited) unless the principal holds one of `scopes` (operations)."""
    if any(scope in principal.scopes for scope in scopes):
        return
    refuse(
        principal,
        Kind.OPERATION,
        operation,
        Forbidden(f"this needs the scope {' or '.join(scopes)}"),
    )


def refuse(principal: Principal, kind: Kind, type_name: str, error: ProjectionistError) -> NoReturn:
    """Audits a refusal, then raises it."""
    audit_refusal(principal, kind, type_name, error)
    raise error


def audit_refusal(
    principal: Principal, kind: Kind, type_name: str, error: ProjectionistError
) -> None:
    """Logs a refusal on `projectionist.audit`: subject, kind, type and reason, never the token.

    Business refusals of commands are routine (INFO); authorization refusals deserve attention
    (WARNING).
    """
    level = logging.WARNING if isinstance(error, Forbidden) else logging.INFO
    audit.log(
        level,
        "%s refused: subject=%s %s=%s reason=%s",
        kind.value,
        principal.subject,
        kind.value,
        type_name,
        error.detail,
    )
