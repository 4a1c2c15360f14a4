"""The one exception tree of projectionist.

ProjectionistError
├── ConfigurationError          a wrong setting, URL or definition (start-up)
│   └── RoleNotServed           this process does not run the role a call needs (409)
├── StoreUnavailable            a store cannot be reached right now (503)
├── NotRegistered               an unknown command, query, event or projection name (404)
├── InvalidMessage              a message does not match its schema (422)
├── IdempotencyKeyReused        same key, different request (422)
├── AuthError
│   ├── Unauthenticated         missing, malformed or expired token (401)
│   └── Forbidden               the token lacks a scope or a policy refuses (403)
├── Refused                     a valid command refused by the current state (409)
│   ├── ConcurrencyError        a stream's version is not the expected one (409)
│   └── RebuildInProgress       a projection already has a build in progress (409)
├── NotFound                    a query asked for an item that does not exist (404)
├── NotFresh                    min_position not reached within the wait (503)
└── HandlerFailed               a projection handler raised; retried, then parked
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ProjectionistError(Exception):
    """Root of every error raised by projectionist."""

    code = "error"
    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(ProjectionistError):
    """A setting, URL or definition is wrong."""

    code = "configuration_error"


class RoleNotServed(ConfigurationError):
    """This process does not run the role (command, projector, query) that a call needs."""

    code = "role_not_served"
    status = 409


class StoreUnavailable(ProjectionistError):
    """A store cannot be reached right now; the request may be retried."""

    code = "store_unavailable"
    status = 503


class Overloaded(ProjectionistError):
    """This process holds as many pending commands as it may; the request may be retried."""

    code = "overloaded"
    status = 503


class NotRegistered(ProjectionistError):
    """No command, query, event or projection is registered under this name."""

    code = "not_registered"
    status = 404


class InvalidMessage(ProjectionistError):
    """A message does not match its schema."""

    code = "invalid_message"
    status = 422

    def __init__(self, detail: str, errors: Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.errors = list(errors or [])


class IdempotencyKeyReused(ProjectionistError):
    """An idempotency key was used again with a different request."""

    code = "idempotency_key_reused"
    status = 422


class AuthError(ProjectionistError):
    """Authentication or authorization failed."""


class Unauthenticated(AuthError):
    """The token is missing, malformed, badly signed or expired."""

    code = "unauthenticated"
    status = 401


class Forbidden(AuthError):
    """The token is valid but does not allow this request."""

    code = "forbidden"
    status = 403


class Refused(ProjectionistError):
    """A valid command refused by the current state; nothing was written."""

    code = "refused"
    status = 409


class ConcurrencyError(Refused):
    """A stream is not at the version the command expected."""

    code = "concurrency_conflict"

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected version {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual
        self.retryable = False


class NotFound(ProjectionistError):
    """A query asked for an item that does not exist."""

    code = "not_found"
    status = 404


class NotFresh(ProjectionistError):
    """The read models did not reach the requested position within the wait."""

    code = "not_fresh"
    status = 503

    def __init__(self, detail: str, freshness: Any) -> None:
        super().__init__(detail)
        self.freshness = freshness


class RebuildInProgress(Refused):
    """A projection already has a build in progress."""

    code = "rebuild_in_progress"


class HandlerFailed(ProjectionistError):
    """A projection handler raised; the batch was rolled back and will be retried."""

    code = "handler_failed"

    def __init__(
        self,
        projection: str,
        position: int,
        event_type: str,
        stream: str,
        error: BaseException,
        attempts: int,
    ) -> None:
        super().__init__(
            f"{projection} failed on event {position} ({event_type} on {stream!r}),"
            f" attempt {attempts}: {type(error).__name__}: {error}"
        )
        self.position = position
        self.attempts = attempts
