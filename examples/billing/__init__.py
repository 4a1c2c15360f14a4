"""A reference app of captured tables: customers and invoices written by plain SQL, no commands.

Each row change is an event in the log, written in the writer's own transaction; two queries
answer from a read model built of them.
"""

from __future__ import annotations

from projectionist import App

from . import queries, write_model
from .messages import CustomerBalance, RevenueByCountry


def create_app() -> App:
    """A new billing App."""
    app = App("billing", write_model=write_model.write_model)
    write_model.register(app)
    queries.register(app)
    return app


app = create_app()

__all__ = ["CustomerBalance", "RevenueByCountry", "app", "create_app"]
