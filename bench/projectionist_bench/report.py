"""Figures of a benchmark run: percentiles, versions, targets, the Rich table and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# (target, what the Python eventsourcing library did) per backend and figure, measured on
# this workload with 5,000 orders on a 2-core machine: see docs/performance.md.
TARGETS: dict[str, dict[str, tuple[str, float | None]]] = {
    "sqlite": {
        "write_cmds_per_s": (">= 80% of R", 1174),
        "write8_cmds_per_s": ("-", None),
        "catchup_events_per_s": (">= 50,000", 1636),
        "visibility_p50_ms": ("<= 2", 1.1),
        "visibility_p99_ms": ("<= 6", 3.7),
    },
    "postgresql": {
        "write_cmds_per_s": (">= 80% of R", 327),
        "write8_cmds_per_s": (">= 1,876 (4x peer)", 469),
        "catchup_events_per_s": (">= 30,000", 635),
        "visibility_p50_ms": ("<= 2", 2.3),
        "visibility_p99_ms": ("<= 6", 6.8),
    },
}


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0..100) by linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 3) -> float | None:
    """The value rounded for the JSON, None kept."""
    return None if value is None else round(value, digits)


def versions(*extra: str) -> dict[str, str]:
    """The versions of what the figures depend on."""
    found = {
        "projectionist": _version("projectionist"),
        "python": platform.python_version(),
        "sqlalchemy": _version("sqlalchemy"),
        "pydantic": _version("pydantic"),
        "pydantic_core": _version("pydantic-core"),
        "sqlite": sqlite3.sqlite_version,
        "psycopg": _version("psycopg"),
    }
    for name in extra:
        found[name] = _version(name)
    return found


def host() -> dict[str, Any]:
    """The machine: figures only compare on the same kind."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "implementation": platform.python_implementation(),
        # Other work on the machine skews the figures; a load near the core count is a warning.
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def now_iso() -> str:
    """The current UTC time, to the second, as ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Writes the result, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")


def print_orders(console: Console, result: dict[str, Any]) -> None:
    """The orders benchmark as a table: each phase's figure beside the target and the peer."""
    backend = result["backend"]
    table = Table(title=f"orders benchmark — {backend}, {result['orders']:,} orders,"
                        f" {result['events']:,} events")
    for column in ("phase", "figure", "value", "CPU µs each", "target", "peer"):
        table.add_column(column, justify="left" if column in ("phase", "figure", "target")
                         else "right")
    table.add_row("R", "raw 1-row transactions/s", _format(result.get("raw_tx_per_s")), "-",
                  "-", "-")
    rows = [
        ("W", "write_cmds_per_s", "commands/s", "write_cpu_us_per_cmd"),
        ("W8", "write8_cmds_per_s", f"commands/s, {result['settings']['threads']} threads",
         "write8_cpu_us_per_cmd"),
        ("P", "catchup_events_per_s", "catch-up events/s", "catchup_cpu_us_per_event"),
        ("L", "visibility_p50_ms", "visible after, p50 ms", None),
        ("L", "visibility_p99_ms", "visible after, p99 ms", None),
    ]
    for phase, key, label, cpu in rows:
        value = result.get(key)
        target, peer = TARGETS[backend][key]
        table.add_row(phase, label, _format(value), _format(result.get(cpu) if cpu else None),
                      target, _format(peer))
        if key == "write_cmds_per_s" and result.get("write_vs_raw") is not None:
            table.add_row("W", "W / R", f"{result['write_vs_raw']:.0%}", "-", ">= 80%", "-")
    console.print(table)
    console.print("peer: the Python eventsourcing library on this workload (docs/performance.md)")
    verification = result["verification"]
    status = "[green]passed" if verification["passed"] else "[bold red]FAILED"
    console.print(f"verification: {status}[/] ({len(verification['checks'])} checks)")
    for failure in verification["failures"]:
        console.print(f"  [red]✗[/] {failure}")


def print_http(console: Console, result: dict[str, Any]) -> None:
    """The HTTP benchmark: one row per phase."""
    table = Table(title=f"http benchmark — {result['backend']}, {result['settings']['app']},"
                        f" {result['settings']['duration_s']:g} s per phase (latencies in ms)")
    table.add_column("phase", no_wrap=True)
    for column in ("queries/s", "p50", "p99", "cmds/s", "p50", "p99", "errors", "lag"):
        table.add_column(column, justify="right")
    for phase in result["phases"]:
        q, c = phase["queries"], phase["commands"]
        table.add_row(
            phase["name"], _format(q["per_s"]), _format(q["p50_ms"]), _format(q["p99_ms"]),
            _format(c["per_s"]) if c["count"] else "-",
            _format(c["p50_ms"]) if c["count"] else "-",
            _format(c["p99_ms"]) if c["count"] else "-",
            str(q["errors"] + c["errors"]), str(phase["lag_events_at_end"]),
        )
    console.print(table)
    summary = result["summary"]
    console.print(
        f"query p99 at {result['settings']['query_rate']:g}/s: "
        f"{_format(summary['query_p99_ms_at_rate'])} ms without writes,"
        f" {_format(summary['query_p99_ms_at_rate_under_writes'])} ms with;"
        f" reads/s under saturating writes: {_format(summary['read_ratio_under_writes'], 2)}"
        " of reads/s without"
    )


def _format(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if digits is not None:
            return f"{value:.{digits}f}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
