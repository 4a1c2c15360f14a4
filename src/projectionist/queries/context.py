"""What a query handler sees: the read store, at the serving version of what it reads."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.engine import Connection

from ..auth import Principal
from ..projections.context import ViewContext


class ReadContext(ViewContext):
    """One query's read transaction; `ctx[view]` gives the serving version of a view."""

    def __init__(self, connection: Connection, generations: Mapping[str, int],
                 principal: Principal) -> None:
        super().__init__(connection, generations)
        self.principal = principal
