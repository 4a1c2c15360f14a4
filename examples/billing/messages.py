"""Billing's queries."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from projectionist import Query

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CustomerBalance(Query):
    """A customer, with the count of their invoices not void and their open and paid sums."""

    customer_id: Id


class RevenueByCountry(Query):
    """Per country with a customer: its customers, and their open and paid sums."""
