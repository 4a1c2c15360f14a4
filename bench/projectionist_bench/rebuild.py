"""The rebuild benchmark: seed a large log of shop events, then rebuild projections blue/green.

Seeding writes synthetic but valid shop events straight into the log in large transactions
(the write model plays no part in a rebuild). Each projection is then rebuilt with
`Runtime.rebuild` while nothing else runs, and timed from the request to the swap.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from projectionist.cli.capacity import plan
from projectionist.eventlog import NewEvent
from projectionist.messages import EventMetadata, encode_event
from projectionist.runtime import Runtime

from .databases import BenchDatabases
from .report import host, now_iso, versions

SEED_BATCH = 10_000
REBUILT = ("order_summary", "daily_sales")
PLANNED_EVENTS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RebuildSettings:
    backend: str
    events: int = 1_000_000
    url: str | None = None
    batch_size: int = 5000
    projections: tuple[str, ...] = REBUILT


def run_rebuild(settings: RebuildSettings,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Seeds `settings.events` events, rebuilds each projection, returns the figures."""
    from projectionist_examples.shop import create_app

    app = create_app()
    with BenchDatabases(settings.backend, url=settings.url) as databases:
        write_url, read_url = databases.fresh("rebuild")
        runtime = Runtime(app, store=write_url, read_store=read_url, roles=["projector"],
                          batch_size=settings.batch_size)
        try:
            runtime.install()
            began = time.perf_counter()
            seeded = seed_shop_log(runtime, settings.events, progress)
            seed_s = time.perf_counter() - began
            results = {}
            for name in settings.projections:
                results[name] = _rebuild(runtime, name, progress)
            # What the capacity report says of the rebuilt stores (docs/capacity.md).
            report = plan(runtime, PLANNED_EVENTS)
            for entry in report["projections"]:
                if entry["name"] in results:
                    results[entry["name"]]["capacity"] = entry
            store_settings = databases.settings(write_url)
        finally:
            runtime.stop()
    return {
        "benchmark": "rebuild",
        "backend": settings.backend,
        "events": seeded,
        "seed_events_per_s": round(seeded / seed_s),
        "rebuilds": results,
        "log": report["log"],
        "settings": {"batch_size": settings.batch_size, "store": store_settings},
        "versions": versions(),
        "host": host(),
        "at": now_iso(),
    }


def seed_shop_log(runtime: Runtime, total: int,
                  progress: Callable[[str, int, int], None] | None, *, first_order: int = 0) -> int:
    """Appends `total` shop events straight to the log (no commands, no write model), in
    transactions of SEED_BATCH events, for orders numbered from `first_order`; returns how many
    it appended."""
    from projectionist_examples.shop.messages import (
        Line,
        OrderCancelled,
        OrderPaid,
        OrderPlaced,
        OrderShipped,
    )

    assert runtime.store is not None and runtime.log is not None
    metadata = EventMetadata(event_id="", command_id="seed", correlation_id="seed").to_json()
    start = time.time() - 86_400 * 30
    written = 0
    order = first_order
    while written < total:
        batch: list[NewEvent] = []
        while len(batch) < SEED_BATCH and written + len(batch) < total:
            order_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"/orders/{order}"))
            lines = [Line(sku=f"SKU-{(7 * order + 3 * k) % 1000:04d}", quantity=1 + k,
                          unit_price_cents=250 + k) for k in range(3)]
            total_cents = sum(line.quantity * line.unit_price_cents for line in lines)
            customer = f"cust-{order % 500:03d}"
            at = start + order * 0.5
            events = [
                OrderPlaced(order_id=order_id, customer_id=customer, lines=lines,
                            total_cents=total_cents),
                OrderPaid(order_id=order_id, customer_id=customer, amount_cents=total_cents,
                          lines=lines),
                OrderShipped(order_id=order_id, customer_id=customer, lines=lines)
                if order % 10 else
                OrderCancelled(order_id=order_id, customer_id=customer, reason="seed",
                               previous_status="paid", refunded_cents=total_cents,
                               lines=lines),
            ]
            for version, event in enumerate(events, start=1):
                batch.append(NewEvent(
                    stream=f"order-{order_id}", version=version, type=event.type_name,
                    schema_version=event.schema_version, data=encode_event(event),
                    metadata=metadata, recorded_at=at + version,
                ))
            order += 1
        batch = batch[: total - written]
        with runtime.store.write() as connection:
            runtime.log.append(connection, batch)
        written += len(batch)
        if progress is not None:
            progress("seed", written, total)
    return written


def _rebuild(runtime: Runtime, name: str,
             progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    projector = runtime.projector
    assert projector is not None
    began = time.perf_counter()
    build = runtime.rebuild(name)
    head = runtime.head()
    projector.run_until_serving(
        name, build.generation,
        progress=None if progress is None else lambda row: progress(name, row.position, head))
    elapsed = time.perf_counter() - began
    return {"generation": build.generation, "seconds": round(elapsed, 2),
            "events_per_s": round(head / elapsed)}
