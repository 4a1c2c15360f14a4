"""Projections: definitions, the runner of one build, the projector of them all, and status."""

from .context import ApplyContext
from .definition import Projection
from .status import ProjectionStatus, State

__all__ = ["ApplyContext", "Projection", "ProjectionStatus", "State"]
