"""The roles a process takes: command, projector, query (all three by default)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from .errors import ConfigurationError


class Role(StrEnum):
    """What a process does; one process may take any of them (all three by default)."""

    COMMAND = "command"
    PROJECTOR = "projector"
    QUERY = "query"


ROLES = tuple(Role)


def parse_roles(roles: str | Iterable[str]) -> tuple[Role, ...]:
    """Validated roles from 'command,query' or a list."""
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    chosen = tuple(dict.fromkeys(r.strip() for r in items if r.strip()))
    unknown = [r for r in chosen if r not in Role.__members__.values()]
    if unknown or not chosen:
        raise ConfigurationError(
            f"unknown role {', '.join(unknown) or '(none)'}; roles are {', '.join(ROLES)}"
        )
    return tuple(Role(r) for r in chosen)
