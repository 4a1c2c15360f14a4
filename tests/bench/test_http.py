"""The HTTP benchmark serves the shop, drives it briefly, and reports every phase."""

from __future__ import annotations

import json
from pathlib import Path

from projectionist_bench.http import HttpSettings, run_http
from tests.conftest import PG_ADMIN_URL, require_postgres


def test_every_phase_answers_without_errors(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql":
        require_postgres()
    settings = HttpSettings(
        backend=backend, duration_s=0.5, query_clients=2, command_clients=1, query_rate=40,
        seed_orders=8, products=5, customers=4,
        url=PG_ADMIN_URL if backend == "postgresql" else None,
        directory=tmp_path if backend == "sqlite" else None,
    )
    result = run_http(settings)
    assert [phase["writes"] for phase in result["phases"]] == [False, True, False, True]
    for phase in result["phases"]:
        assert phase["queries"]["count"] > 0, phase
        assert phase["queries"]["errors"] == 0, phase
        assert phase["commands"]["errors"] == 0, phase
        assert (phase["commands"]["count"] > 0) == phase["writes"], phase
    summary = result["summary"]
    assert summary["errors"] == 0
    for figure in ("query_p99_ms_at_rate", "query_p99_ms_at_rate_under_writes", "reads_per_s",
                   "reads_per_s_under_writes", "read_ratio_under_writes"):
        assert isinstance(summary[figure], float), figure
    json.dumps(result)
