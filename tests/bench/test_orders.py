"""The orders benchmark runs end to end at a tiny size; its figures are checked for shape only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from projectionist.cli import cli
from projectionist_bench import OrdersSettings, run_orders
from tests.conftest import PG_ADMIN_URL, require_postgres

FIGURES = ("raw_tx_per_s", "write_cmds_per_s", "write8_cmds_per_s", "catchup_events_per_s",
           "visibility_p50_ms", "visibility_p99_ms")


def test_every_phase_runs_and_the_read_model_checks_out(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql":
        require_postgres()
    settings = OrdersSettings(
        backend=backend, orders=12, live_commands=6, threads=4, write8=True,
        raw_transactions=20, url=PG_ADMIN_URL if backend == "postgresql" else None,
        directory=tmp_path if backend == "sqlite" else None,
    )
    result = run_orders(settings)
    for figure in FIGURES:
        assert isinstance(result[figure], float) and result[figure] > 0, figure
    assert result["events"] == 48
    assert result["live_commands"] == 6
    assert result["verification"]["passed"], result["verification"]["failures"]
    assert {c["name"] for c in result["verification"]["checks"]} >= {
        "checkpoint at head", "order_summary values", "customer_stats values", "log gap-free",
    }
    assert result["versions"]["projectionist"]
    assert result["settings"]["database"]
    json.dumps(result)


def test_the_command_writes_the_json_it_prints(tmp_path: Path) -> None:
    path = tmp_path / "results" / "orders.json"
    outcome = CliRunner().invoke(cli, [
        "bench", "orders", "--orders", "10", "--live", "4", "--json", str(path),
        "--dir", str(tmp_path / "db"),
    ])
    assert outcome.exit_code == 0, outcome.output
    assert "catch-up events/s" in outcome.output
    result = json.loads(path.read_text())
    assert result["backend"] == "sqlite"
    assert result["write8_cmds_per_s"] is None  # W8 is a PostgreSQL phase unless asked for
    assert result["verification"]["passed"]
    assert not any((tmp_path / "db").iterdir())  # the databases are removed afterwards


@pytest.mark.parametrize("arguments", [["--url", "sqlite:///x.db"], ["--orders", "0"]])
def test_the_command_refuses_bad_settings(arguments: list[str]) -> None:
    outcome = CliRunner().invoke(cli, ["bench", "orders", *arguments])
    assert outcome.exit_code != 0
