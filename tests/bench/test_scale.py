"""The scale benchmark runs end to end at a tiny size; its figures are checked for shape only,
and every cell's read model against the workload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from projectionist.cli import cli
from projectionist_bench import scale_app
from tests.conftest import PG_ADMIN_URL, require_postgres

APPLY = ("events_per_s", "cpu_us_per_event", "seconds", "seconds_from_spawn", "cpu_s")
QUERIES = ("queries_per_s", "cpu_us_per_query", "p50_ms", "p99_ms", "server_cpu_percent",
           "client_cpu_percent")


def test_every_cell_is_measured_and_every_read_model_is_complete(backend: str,
                                                                 tmp_path: Path) -> None:
    where = ["--url", PG_ADMIN_URL] if backend == "postgresql" else ["--dir", str(tmp_path)]
    if backend == "postgresql":
        require_postgres()
    path = tmp_path / "scale.json"
    outcome = CliRunner().invoke(cli, [
        # Enough events for each cell's CPU to span several of the kernel's 10 ms clock ticks.
        "bench", "scale", "--backend", backend, *where, "--events", "4000", "--duration", "0.5",
        "--json", str(path)])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(path.read_text())
    assert result["benchmark"] == "scale" and result["events"] == 4000
    cells = [(cell["partitions"], cell["processes"]) for cell in result["apply"]]
    assert cells == [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)]
    for cell in result["apply"]:
        for figure in APPLY:
            assert isinstance(cell[figure], float) and cell[figure] > 0, (cell, figure)
        rows = cell["log_rows_read_per_event"]
        assert (rows is None) == (backend == "sqlite"), cell
        assert len(cell["runs"]) == 1
    assert [cell["processes"] for cell in result["queries"]] == [1, 2, 4]
    for cell in result["queries"]:
        for figure in QUERIES:
            assert isinstance(cell[figure], float) and cell[figure] > 0, (cell, figure)
        (run,) = cell["runs"]
        # A 503 is the read store reported busy on a loaded machine; anything else is a fault.
        assert set(run["statuses"]) <= {"200", "503"}, run
        assert run["statuses"].get("503", 0) <= run["statuses"]["200"] // 100, run
    verification = result["verification"]
    assert verification["passed"], verification["failures"]
    names = {check["name"] for check in verification["checks"]}
    for label in ("p1x1", "p1x2", "p2x1", "p2x2", "p4x1", "p4x2"):
        for check in ("checkpoint at head", "order_summary values", "customer_stats values"):
            assert f"{label}: {check}" in names


def test_the_app_path_names_the_partition_count() -> None:
    app = scale_app.partitions_3
    assert app.projections["order_views"].partitions == 3
    assert scale_app.partitions_3 is app
    with pytest.raises(AttributeError, match="partitions_x"):
        scale_app.partitions_x  # noqa: B018
