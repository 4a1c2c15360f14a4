"""The roles a process takes: command, projector, query, and capture for apps that capture
tables on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from .errors import ConfigurationError


class Role(StrEnum):
    """What a process does; one process may take any of them."""

    COMMAND = "command"
    PROJECTOR = "projector"
    QUERY = "query"
    CAPTURE = "capture"


ROLES = (Role.COMMAND, Role.PROJECTOR, Role.QUERY)
"""The default roles; `capture` joins them when the app captures tables on PostgreSQL."""


def default_roles(*, captures: bool, store_url: str) -> tuple[Role, ...]:
    """The roles of a process that names none: capture too when it has a process to run."""
    if captures and store_url.startswith("postgresql"):
        return (*ROLES, Role.CAPTURE)
    return ROLES


def parse_roles(roles: str | Iterable[str]) -> tuple[Role, ...]:
    """Validated roles from 'command,query' or a list."""
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    chosen = tuple(dict.fromkeys(r.strip() for r in items if r.strip()))
    unknown = [r for r in chosen if r not in Role.__members__.values()]
    if unknown or not chosen:
        raise ConfigurationError(
            f"unknown role {', '.join(unknown) or '(none)'}; roles are {', '.join(Role)}"
        )
    return tuple(Role(r) for r in chosen)
