"""Medians of the figures in several result files of one benchmark: python bench/median.py FILE...

Prints one line per figure: its median and every run's value, so that outliers show.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ORDERS = ("raw_tx_per_s", "write_cmds_per_s", "write_vs_raw", "write_cpu_us_per_cmd",
          "write8_cmds_per_s", "write8_cpu_us_per_cmd", "catchup_events_per_s",
          "catchup_cpu_us_per_event", "visibility_p50_ms", "visibility_p99_ms")
HTTP = ("query_p99_ms_at_rate", "query_p99_ms_at_rate_under_writes", "reads_per_s",
        "reads_per_s_under_writes", "read_ratio_under_writes", "commands_per_s_under_reads",
        "errors")
# The bare-stack anchor of the HTTP benchmark: top-level keys of its JSON, not in "summary".
HTTP_ANCHOR = ("getorder_reads_per_s", "getorder_p50_ms", "getorder_p99_ms", "bare_reads_per_s",
               "bare_p50_ms", "bare_p99_ms", "getorder_vs_bare", "bare_loop_reads_per_s",
               "bare_loop_p50_ms", "bare_loop_p99_ms", "getorder_vs_bare_loop")
FEEDS = ("relay_events_per_s", "read_events_per_s", "rebuild_events_per_s", "visible_p50_ms",
         "visible_p99_ms")


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[0])
        return 2
    results = [json.loads(Path(path).read_text()) for path in paths]
    kinds = {(r["benchmark"], r["backend"]) for r in results}
    if len(kinds) != 1:
        print(f"the files mix benchmarks or backends: {sorted(kinds)}")
        return 2
    benchmark, backend = kinds.pop()
    print(f"{benchmark} on {backend}: medians of {len(results)} runs")
    if benchmark == "orders":
        rows = [(key, [r.get(key) for r in results]) for key in ORDERS]
        rows.append(("load_average_1m", [r["host"].get("load_average_1m") for r in results]))
    elif benchmark == "feeds":
        rows = [(f"{source}.{key}", [r["sources"].get(source, {}).get(key) for r in results])
                for source in ("log", "nats", "redis") for key in FEEDS]
    else:
        rows = [(key, [r["summary"].get(key) for r in results]) for key in HTTP]
        rows += [(key, [r.get(key) for r in results]) for key in HTTP_ANCHOR]
    for key, values in rows:
        known = [v for v in values if v is not None]
        median = statistics.median(known) if known else None
        print(f"  {key:36} {_show(median):>10}   runs: {', '.join(_show(v) for v in values)}")
    failed = [p for p, r in zip(paths, results, strict=True)
              if not r.get("verification", {"passed": True})["passed"]]
    if failed:
        print(f"verification FAILED in {', '.join(failed)}")
        return 1
    return 0


def _show(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
