"""projectionist: a CQRS framework and runtime for Python."""

import logging

from .app import App
from .auth import SYSTEM, Principal, TokenAuthority
from .capture import CapturedTable, RowChanged
from .commands import ANY_VERSION, CommandResult, RecordedEvent, UnitOfWork
from .commands.aggregates import Aggregate, applies
from .correlation import CorrelationFilter
from .driver import Sql
from .errors import (
    AuthError,
    ConcurrencyError,
    ConfigurationError,
    Forbidden,
    HandlerFailed,
    IdempotencyKeyReused,
    InvalidMessage,
    NotFound,
    NotFresh,
    NotRegistered,
    Overloaded,
    ProjectionistError,
    RebuildInProgress,
    Refused,
    RoleNotServed,
    StoreUnavailable,
    Unauthenticated,
)
from .messages import Command, Event, EventMetadata, Query, Registry, StoredEvent
from .projections import ApplyContext, Projection, ProjectionStatus, State
from .queries import Answer, Freshness
from .readstore import DocumentCollection, Documents, Page, ReadContext, ViewTable
from .roles import Role
from .runtime import Runtime

__version__ = "0.1.0"

# A library leaves logging to its application: without a handler, nothing is printed.
logging.getLogger("projectionist").addHandler(logging.NullHandler())

__all__ = [
    "ANY_VERSION",
    "SYSTEM",
    "Aggregate",
    "Answer",
    "App",
    "ApplyContext",
    "AuthError",
    "CapturedTable",
    "Command",
    "CommandResult",
    "ConcurrencyError",
    "ConfigurationError",
    "CorrelationFilter",
    "DocumentCollection",
    "Documents",
    "Event",
    "EventMetadata",
    "Forbidden",
    "Freshness",
    "HandlerFailed",
    "IdempotencyKeyReused",
    "InvalidMessage",
    "NotFound",
    "NotFresh",
    "NotRegistered",
    "Overloaded",
    "Page",
    "Principal",
    "Projection",
    "ProjectionStatus",
    "ProjectionistError",
    "Query",
    "ReadContext",
    "RebuildInProgress",
    "RecordedEvent",
    "Refused",
    "Registry",
    "Role",
    "RoleNotServed",
    "RowChanged",
    "Runtime",
    "Sql",
    "State",
    "StoreUnavailable",
    "StoredEvent",
    "TokenAuthority",
    "Unauthenticated",
    "UnitOfWork",
    "ViewTable",
    "applies",
]
