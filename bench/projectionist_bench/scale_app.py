"""The orders workload's app with its projection split into partitions, for `bench scale`.

`projectionist serve projectionist_bench.scale_app:partitions_4` serves it with `order_views`
in 4 partitions; every `partitions_<N>` attribute (N from 1 to 256) is such an app, made on
first use, so that a child process can load the count it is told by its app path.

`seed_log` writes the workload's events straight to the log, as its command handlers would
record them, much faster than running the commands; `verify_cell` checks a read model
made from them row by row.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from projectionist.app import App
from projectionist.errors import NotFound
from projectionist.eventlog import NewEvent
from projectionist.messages import Command, Event, EventMetadata, Query, encode_event
from projectionist.projections.definition import Projection
from projectionist.readstore.context import ReadContext
from projectionist.runtime import Runtime

from .orders import verify
from .workload import (
    AddOrderNote,
    DeliverOrder,
    ExpectedReadModel,
    Id,
    OrderDelivered,
    OrderNoteAdded,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    PayOrder,
    PlaceOrder,
    ShipOrder,
    command_sequence,
    order_stream,
    order_summary,
    order_views,
    register_commands,
    write_model,
)

PREFIX = "partitions_"
SEED_BATCH = 10_000


class GetOrderSummary(Query):
    """One order's row of `order_summary`."""

    order_id: Id


def create_app(partitions: int) -> App:
    """The orders workload's app, its projection in `partitions` partitions."""
    views = Projection(order_views.name, order_views.version, partitions=partitions)
    # The same tables and handlers as the workload's projection: the tables resolve by the
    # projection's name, so the read model is the same whatever the partition count.
    views.tables.update(order_views.tables)
    views.handlers.update(order_views.handlers)
    app = App(f"orders-bench-p{partitions}", write_model=write_model)
    register_commands(app)

    @app.query(GetOrderSummary, reads=[views])
    def get_order(query: GetOrderSummary, ctx: ReadContext) -> dict[str, Any]:
        table = ctx[order_summary]
        row = ctx.connection.execute(
            sa.select(table).where(table.c.order_id == query.order_id)).mappings().first()
        if row is None:
            raise NotFound(f"there is no order {query.order_id!r}")
        return dict(row)

    return app


def seed_log(write_url: str, read_url: str, count: int) -> ExpectedReadModel:
    """Appends the events of the workload's first `count` commands straight to the log (no
    write model), in transactions of SEED_BATCH events; what the read model must then hold."""
    expected = ExpectedReadModel()
    runtime = Runtime(create_app(1), store=write_url, read_store=read_url, roles=["command"])
    metadata = EventMetadata(event_id="", command_id="seed", correlation_id="seed").to_json()
    customers: dict[str, str] = {}
    versions: dict[str, int] = {}
    start = time.time() - 86_400
    try:
        runtime.install()
        assert runtime.store is not None and runtime.log is not None
        batch: list[NewEvent] = []
        for n, command in enumerate(command_sequence(0, count)):
            expected.apply(command)
            event = _event_of(command, customers)
            stream = order_stream(command.order_id)
            versions[stream] = versions.get(stream, 0) + 1
            batch.append(NewEvent(stream=stream, version=versions[stream], type=event.type_name,
                                  schema_version=event.schema_version, data=encode_event(event),
                                  metadata=metadata, recorded_at=start + n * 0.001))
            if len(batch) == SEED_BATCH or n == count - 1:
                with runtime.store.write() as connection:
                    runtime.log.append(connection, batch)
                batch = []
    finally:
        runtime.stop()
    return expected


def _event_of(command: Command, customers: dict[str, str]) -> Event:
    """The one event the workload's handler of `command` records."""
    if isinstance(command, PlaceOrder):
        customers[command.order_id] = command.customer_id
        total = sum(line.quantity * line.unit_price_cents for line in command.lines)
        return OrderPlaced(order_id=command.order_id, customer_id=command.customer_id,
                           lines=command.lines, total_cents=total)
    if isinstance(command, PayOrder):
        return OrderPaid(order_id=command.order_id, customer_id=customers[command.order_id],
                         amount_cents=command.amount_cents)
    if isinstance(command, ShipOrder):
        return OrderShipped(order_id=command.order_id)
    if isinstance(command, DeliverOrder):
        return OrderDelivered(order_id=command.order_id)
    assert isinstance(command, AddOrderNote)
    return OrderNoteAdded(order_id=command.order_id, note=command.note)

def verify_cell(write_url: str, read_url: str, partitions: int, expected: ExpectedReadModel,
            label: str) -> list[dict[str, Any]]:
    """The read model of one cell checked row by row; each check's name says which cell."""
    runtime = Runtime(create_app(partitions), store=write_url, read_store=read_url,
                      roles=["command"])
    try:
        checks = verify(runtime, expected)
    finally:
        runtime.stop()
    return [{**check, "name": f"{label}: {check['name']}"} for check in checks]


def __getattr__(name: str) -> App:
    count = name.removeprefix(PREFIX)
    if not name.startswith(PREFIX) or not count.isdigit():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()[name] = create_app(int(count))
    return app
