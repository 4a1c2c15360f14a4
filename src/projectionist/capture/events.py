"""The event of a captured row change: one type for every captured table."""

from __future__ import annotations

from typing import Any, Literal

from ..messages import Event

Operation = Literal["insert", "update", "delete"]


class RowChanged(Event):
    """A row of a captured table was inserted, updated or deleted.

    `key` holds the primary key's values, `row` the kept columns of the row after the change
    (None for a delete) and `old` those before it (None for an insert). The stream is
    `<table>:<key values joined by ':'>`. Binary values are hexadecimal text.
    """

    table: str
    op: Operation
    key: dict[str, Any]
    row: dict[str, Any] | None = None
    old: dict[str, Any] | None = None
