"""The read store: read-model tables and documents, and the framework's own tables beside them
(checkpoints, leases, dead letters). Below the projections and the queries, which both use it."""

from .context import ReadContext, ViewContext
from .documents import Documents, Page
from .tables import DocumentCollection, ViewTable

__all__ = ["DocumentCollection", "Documents", "Page", "ReadContext", "ViewContext", "ViewTable"]
