"""Projections: definitions, the runner, checkpoints and document views."""

from .context import ApplyContext, ViewContext
from .definition import DocumentCollection, Projection, ViewTable
from .documents import Documents, Page

__all__ = [
    "ApplyContext",
    "DocumentCollection",
    "Documents",
    "Page",
    "Projection",
    "ViewContext",
    "ViewTable",
]
