"""`projectionist capacity`: what the log and each projection occupy now, and at N events.

The model is linear (see docs/capacity.md): a projection's bytes per event and its replay rate,
both measured, times the number of events.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table
from sqlalchemy.engine import Connection

from ..engines import redact
from ..errors import ConfigurationError
from ..eventlog.schema import events_table
from ..projections.status import ProjectionStatus
from ..readstore.storage import measure_tables
from ..runtime import DEFAULT_STORE, Runtime
from ..stores import MISSING_TABLE_ERRORS
from .common import (
    DEFAULT_APP,
    AppOption,
    ReadStoreOption,
    StoreOption,
    console,
    friendly_errors,
    load_app,
)

DEFAULT_AT_EVENTS = 1_000_000_000
TYPES_COUNTED = 1_000_000
"""The share of each event type is counted over the log's newest this many events."""
WINDOWS = {"hour": 3600.0, "day": 86_400.0}
_COUNT = re.compile(r"\d[\d_]*(?:[eE]\d+)?")


def parse_events(text: str) -> int:
    """A number of events, as `1000000`, `1_000_000` or `1e9`."""
    text = str(text)  # the default arrives as an int
    if not _COUNT.fullmatch(text.strip()):
        raise typer.BadParameter(
            f"{text!r} is not a number of events; give a whole number of 0 or more,"
            " as 1000000, 1_000_000 or 1e9"
        )
    digits, _, exponent = text.strip().replace("_", "").lower().partition("e")
    return int(digits + "0" * int(exponent or 0))


def human_bytes(size: float | None) -> str:
    """Bytes in kB, MB, GB or TB (powers of 1000)."""
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_rate(events_per_s: float | None) -> str:
    return "-" if events_per_s is None else f"{events_per_s:,.0f} events/s"


def human_duration(seconds: float | None) -> str:
    """Seconds as `45 s`, `12.5 min`, `3.2 h` or `4.1 d`."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def capacity(
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    at_events: Annotated[
        int,
        typer.Option(
            "--at-events",
            parser=parse_events,
            metavar="N",
            help="Plan for a log of N events (1000000, 1_000_000 or 1e9).",
        ),
    ] = DEFAULT_AT_EVENTS,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The log and each projection: size, growth, replay rate; storage and rebuild time at N
    events."""
    with friendly_errors():
        app = load_app(app_path)
        _require_store(store)
        runtime = Runtime(app, store=store, read_store=read_store, roles=["projector"])
        try:
            report = plan(runtime, at_events)
        finally:
            runtime.stop()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print(report)


def plan(runtime: Runtime, at_events: int) -> dict[str, Any]:
    """The capacity report of a runtime's stores, with the projections scaled to `at_events`."""
    assert runtime.store is not None
    try:
        with runtime.store.read() as connection:
            log = _log(connection)
    except MISSING_TABLE_ERRORS:
        raise ConfigurationError(
            f"the store {redact(runtime.store.url)} has no event log yet: pass the --store"
            " the app writes to"
        ) from None
    serving = [row for row in runtime.status() if row.active]
    return {
        "log": log,
        "projections": [_projection(row, at_events) for row in serving],
        "at_events": at_events,
    }


def _log(connection: Connection) -> dict[str, Any]:
    footprint = measure_tables(connection, [events_table.name])
    t = events_table
    head = int(connection.execute(sa.select(sa.func.max(t.c.position))).scalar() or 0)
    per_event = footprint.storage_bytes / footprint.rows if footprint.rows else 0.0
    now = time.time()
    growth = {}
    for window, seconds in WINDOWS.items():
        events = _events_since(connection, now - seconds, head)
        rate = events / seconds
        growth[window] = {
            "events": events,
            "events_per_s": round(rate, 3),
            "bytes_per_day": round(rate * 86_400 * per_event),
        }
    counted = sa.select(t.c.type, sa.func.count()).where(t.c.position > head - TYPES_COUNTED)
    counts: dict[str, int] = {
        name: int(n) for name, n in connection.execute(counted.group_by(t.c.type))
    }
    total = sum(counts.values())
    return {
        "events": footprint.rows,
        "events_estimated": footprint.rows_estimated,
        "bytes": footprint.storage_bytes,
        "bytes_per_event": round(per_event, 1),
        "head": head,
        "growth": growth,
        "types": [
            {"type": name, "events": n, "share": round(n / total, 4)}
            for name, n in sorted(counts.items(), key=lambda item: -item[1])
        ],
        "types_counted": total,
    }


def _events_since(connection: Connection, cutoff: float, head: int) -> int:
    """Events recorded since `cutoff`, by positions: a binary search on `recorded_at`, which
    grows with the position, so a long log costs a few dozen point reads."""
    if not head:
        return 0
    t = events_table
    first_after = (
        sa.select(t.c.position, t.c.recorded_at)
        .where(t.c.position >= sa.bindparam("b_at"))
        .order_by(t.c.position)
        .limit(1)
    )
    low, high = 0, head + 1  # the first position recorded at or after the cutoff is in here
    while low < high:
        middle = (low + high) // 2
        found = connection.execute(first_after, {"b_at": middle}).first()
        if found is None or found.recorded_at >= cutoff:
            high = middle
        else:
            low = found.position + 1
    return max(0, head - low + 1)


def _projection(row: ProjectionStatus, at_events: int) -> dict[str, Any]:
    storage = row.storage_bytes
    per_event = storage / row.position if storage is not None and row.position else None
    rate = row.replay_events_per_s
    return {
        "name": row.name,
        "version": row.version,
        "position": row.position,
        "storage_bytes": storage,
        "rows": row.rows,
        "rows_estimated": row.rows_estimated,
        "bytes_per_event": None if per_event is None else round(per_event, 1),
        "replay_events_per_s": rate,
        "rebuild_s": row.rebuild_eta_s,
        "at": {
            "events": at_events,
            "storage_bytes": None if per_event is None else round(per_event * at_events),
            "rebuild_s": round(at_events / rate, 1) if rate else None,
        },
    }


def _require_store(store: str) -> None:
    """Refuses a SQLite store that does not exist, rather than create an empty one."""
    if store.startswith("sqlite:///") and not store.endswith(":memory:"):
        path = Path(store.removeprefix("sqlite:///"))
        if not path.exists():
            raise ConfigurationError(
                f"there is no store at {path}: pass the --store the app writes to"
            )


def _print(report: dict[str, Any]) -> None:
    log = report["log"]
    at = report["at_events"]
    about = "~" if log["events_estimated"] else ""
    table = Table(title="event log")
    for column in ("events", "size", "per event", "last hour", "last day"):
        table.add_column(column, justify="right")
    growth = log["growth"]
    table.add_row(
        f"{about}{log['events']:,}",
        human_bytes(log["bytes"]),
        human_bytes(log["bytes_per_event"]),
        f"{growth['hour']['events_per_s']:,.2f} events/s",
        f"{growth['day']['events_per_s']:,.2f} events/s,"
        f" {human_bytes(growth['day']['bytes_per_day'])}/day",
    )
    console.print(table)
    types = Table(title=f"event types (the newest {log['types_counted']:,} events)")
    types.add_column("type")
    types.add_column("events", justify="right")
    types.add_column("share", justify="right")
    for entry in log["types"]:
        types.add_row(entry["type"], f"{entry['events']:,}", f"{entry['share']:.1%}")
    console.print(types)
    names = [p["name"] for p in report["projections"]]
    width = max(map(len, names), default=4)
    now = Table(title="projections now")
    later = Table(title=f"projections at {at:,} events")
    for table in (now, later):
        table.add_column("name", no_wrap=True, min_width=width)
    for column in ("rows", "size", "per event", "replay (events/s)", "rebuild"):
        now.add_column(column, justify="right")
    for column in ("size", "rebuild"):
        later.add_column(column, justify="right")
    for p in report["projections"]:
        rate = p["replay_events_per_s"]
        now.add_row(
            p["name"],
            "-" if p["rows"] is None else f"{'~' if p['rows_estimated'] else ''}{p['rows']:,}",
            human_bytes(p["storage_bytes"]),
            human_bytes(p["bytes_per_event"]),
            "-" if rate is None else f"{rate:,.0f}",
            human_duration(p["rebuild_s"]),
        )
        later.add_row(
            p["name"], human_bytes(p["at"]["storage_bytes"]), human_duration(p["at"]["rebuild_s"])
        )
    console.print(now)
    console.print(later)
