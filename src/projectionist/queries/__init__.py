"""The query side: dispatch, freshness, read contexts."""

from .context import ReadContext
from .dispatch import Answer, QueryBus
from .freshness import Freshness

__all__ = ["Answer", "Freshness", "QueryBus", "ReadContext"]
