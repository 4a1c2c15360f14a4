"""The CDC benchmark runs end to end at a tiny size; its figures are checked for shape only."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from projectionist.cli import cli
from tests.conftest import PG_ADMIN_URL, require_postgres

FIGURES = (
    "changes_per_s", "writes_per_s", "capture_changes_per_s", "backlog_capture_changes_per_s",
    "backlog_visible_s", "decoder_messages_per_s", "decoder_group_messages_per_s",
    "idle_p50_ms", "idle_p99_ms", "idle_mean_ms", "load_p50_ms", "load_p99_ms", "load_mean_ms",
    "load_changes_per_s",
)
CHECKS = ["LIVE answers", "LIVE events", "BACKLOG answers", "BACKLOG events", "idle answers",
          "load answers"]


def test_every_figure_is_measured_verified_and_the_database_and_slots_are_dropped(
    tmp_path: Path,
) -> None:
    require_postgres()
    path = tmp_path / "results" / "cdc.json"
    outcome = CliRunner().invoke(cli, [
        "bench", "cdc", "--url", PG_ADMIN_URL, "--changes", "300", "--samples", "5",
        "--runs", "2", "--writers", "2", "--load-rate", "200", "--json", str(path),
    ])
    assert outcome.exit_code == 0, outcome.output
    assert "commit → min_lsn answer" in outcome.output and "Sequin" in outcome.output
    result = json.loads(path.read_text())
    assert result["benchmark"] == "cdc" and result["backend"] == "postgresql"
    assert result["changes"] == 300 and result["runs"] == 2
    assert len(result["per_run"]) == 2
    for figure in FIGURES:
        value = result["figures"][figure]
        assert isinstance(value, int | float) and value > 0, (figure, value)
        runs = sorted(run[figure] for run in result["per_run"])
        assert runs[0] <= value <= runs[1], (figure, value, runs)  # the median of the two
    assert result["figures"]["decoder_messages"] >= 600  # a Begin, a change, a Commit at least
    assert result["anchors"]["sequin"] == {"changes_per_s": 10_000, "mean_ms": 22, "p99_ms": 34}
    assert result["targets"]["idle_p99_ms"] == "<= 60"
    verification = result["verification"]
    assert verification["passed"], verification["failures"]
    assert [check["name"] for check in verification["checks"]] == CHECKS * 2
    database = sa.engine.make_url(result["settings"]["store"]["url"]).database
    admin = sa.create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as connection:
            left = connection.execute(sa.text(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = :db)"
                " + (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE :slots)"),
                {"db": database, "slots": f"%{database}%"}).scalar_one()
    finally:
        admin.dispose()
    assert database.startswith("pjbench_cdc_") and left == 0
