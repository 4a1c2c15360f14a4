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

# The target of each figure. The peer's figures are never written here: they are measured in the
# same run as projectionist's (bench/run.sh --peer, bench/compare.py), since absolute figures
# move with the machine and only same-run ratios compare.
TARGETS: dict[str, dict[str, str]] = {
    "sqlite": {
        "write_cmds_per_s": ">= 1.5x the peer",
        "write8_cmds_per_s": "-",
        "catchup_events_per_s": ">= 20x the peer",
        "visibility_p50_ms": "<= the peer",
        "visibility_p99_ms": "<= the peer",
    },
    "postgresql": {
        "write_cmds_per_s": ">= 1.5x the peer",
        "write8_cmds_per_s": ">= 4x the peer's W8",
        "catchup_events_per_s": ">= 20x the peer",
        "visibility_p50_ms": "<= the peer",
        "visibility_p99_ms": "<= the peer",
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
    """The orders benchmark as a table: each phase's figure beside its target."""
    backend = result["backend"]
    table = Table(title=f"orders benchmark — {backend}, {result['orders']:,} orders,"
                        f" {result['events']:,} events")
    for column in ("phase", "figure", "value", "CPU µs each", "target"):
        table.add_column(column, justify="left" if column in ("phase", "figure", "target")
                         else "right")
    table.add_row("R", "raw 1-row transactions/s", _format(result.get("raw_tx_per_s")), "-", "-")
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
        table.add_row(phase, label, _format(value), _format(result.get(cpu) if cpu else None),
                      TARGETS[backend][key])
        if key == "write_cmds_per_s" and result.get("write_vs_raw") is not None:
            table.add_row("W", "W / R", f"{result['write_vs_raw']:.0%}", "-", ">= 60%")
    console.print(table)
    console.print("beside the peer, measured in the same run: bench/run.sh --peer")
    print_verification(console, result["verification"])


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
    if result.get("getorder_vs_bare") is not None:
        auth = "bearer token checked" if result["anchor"]["getorder_auth"] else "no auth"
        console.print(
            f"GetOrder alone, flat out: projectionist {_format(result['getorder_reads_per_s'])}"
            f" queries/s (p50 {_format(result['getorder_p50_ms'])},"
            f" p99 {_format(result['getorder_p99_ms'])} ms; {auth});"
            f" the bare stack {_format(result['bare_reads_per_s'])} queries/s"
            f" (p50 {_format(result['bare_p50_ms'])}, p99 {_format(result['bare_p99_ms'])} ms;"
            " no auth)"
        )
        console.print(f"getorder_vs_bare (projectionist / bare, queries/s):"
                      f" {_format(result['getorder_vs_bare'], 2)}")
    if result.get("getorder_vs_bare_loop") is not None:
        console.print(
            f"the bare stack reading on the event loop: {_format(result['bare_loop_reads_per_s'])}"
            f" queries/s (p50 {_format(result['bare_loop_p50_ms'])},"
            f" p99 {_format(result['bare_loop_p99_ms'])} ms); getorder_vs_bare_loop:"
            f" {_format(result['getorder_vs_bare_loop'], 2)}")


def print_verification(console: Any, verification: dict[str, Any]) -> None:
    """The line that says whether the benchmark's read-model checks passed, and each failure."""
    status = "[green]passed" if verification["passed"] else "[bold red]FAILED"
    console.print(f"verification: {status}[/] ({len(verification['checks'])} checks)")
    for failure in verification["failures"]:
        console.print(f"  [red]✗[/] {failure}")


def figure(value: Any, digits: int | None = None) -> str:
    """A figure as the tables print it: thousands separated, two decimals below 100."""
    return _format(value, digits)


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
