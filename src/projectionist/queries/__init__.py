"""The query side: dispatch, freshness, waiting for a position."""

from ..readstore.context import ReadContext
from ..readstore.freshness import Freshness
from .dispatch import Answer, QueryBus

__all__ = ["Answer", "Freshness", "QueryBus", "ReadContext"]
