"""`projectionist status` and `projectionist capacity` on seeded stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.capacity.conftest import EVENTS
from tests.cli.support import one_error_line, run

FORM = {
    "log": {"events", "bytes", "bytes_per_event"},
    "projection": {"name", "storage_bytes", "bytes_per_event", "replay_events_per_s",
                   "rebuild_s", "at"},
    "at": {"events", "storage_bytes", "rebuild_s"},
}


def stores(seeded: tuple[str, str]) -> tuple[str, ...]:
    write, read = seeded
    return ("shop", "--store", write, "--read-store", read)


def test_status_json_and_table_carry_the_capacity_figures(
    seeded: tuple[str, str], tmp_path: Path
) -> None:
    printed = run("status", *stores(seeded), "--json", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    rows = {row["name"]: row for row in json.loads(printed.stdout)}
    orders = rows["order_summary"]
    assert orders["rows"] == EVENTS // 3 and orders["storage_bytes"] > 0
    assert orders["rebuild_eta_s"] == round(EVENTS / orders["replay_events_per_s"], 3)

    table = run("status", *stores(seeded), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if "order_summary" in line)
    assert f"{EVENTS // 3:,}" in line
    assert "events/s" in line and " kB" in line


def test_capacity_json_has_the_planning_form_and_scales_to_n_events(
    seeded: tuple[str, str], tmp_path: Path
) -> None:
    printed = run("capacity", *stores(seeded), "--json", "--at-events", "6_000", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    report = json.loads(printed.stdout)
    log = report["log"]
    assert set(log) >= FORM["log"]
    assert log["events"] == EVENTS and log["bytes"] > 0
    assert log["bytes_per_event"] == round(log["bytes"] / EVENTS, 1)
    # The seed's orders are placed, paid, then shipped (9 in 10) or cancelled.
    shares = {entry["type"]: entry["share"] for entry in log["types"]}
    assert shares["OrderPlaced"] == shares["OrderPaid"] == round(1 / 3, 4)
    assert set(log["growth"]) == {"hour", "day"}
    assert log["growth"]["hour"]["events"] == 0  # the seed dates its orders a month back

    entries = {entry["name"]: entry for entry in report["projections"]}
    orders = entries["order_summary"]
    assert set(orders) >= FORM["projection"] and set(orders["at"]) >= FORM["at"]
    assert orders["bytes_per_event"] == round(orders["storage_bytes"] / EVENTS, 1)
    rate = orders["replay_events_per_s"]
    assert orders["rebuild_s"] == round(EVENTS / rate, 3)
    # Ten times the events: ten times the storage and the rebuild time (the linear model).
    assert orders["at"]["events"] == 6000
    assert orders["at"]["storage_bytes"] == round(orders["storage_bytes"] / EVENTS * 6000)
    assert orders["at"]["rebuild_s"] == round(6000 / rate, 1)

    scaled = run("capacity", *stores(seeded), "--json", "--at-events", "1e9", cwd=tmp_path)
    assert scaled.returncode == 0, scaled.stderr
    far = {e["name"]: e for e in json.loads(scaled.stdout)["projections"]}["order_summary"]
    assert far["at"]["events"] == 10**9
    assert far["at"]["rebuild_s"] == round(10**9 / rate, 1)


def test_capacity_prints_tables_for_people(seeded: tuple[str, str], tmp_path: Path) -> None:
    printed = run("capacity", *stores(seeded), "--at-events", "1e6", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "event log" in printed.stdout
    assert "projections at 1,000,000 events" in printed.stdout
    assert "OrderPlaced" in printed.stdout and "order_summary" in printed.stdout


@pytest.mark.parametrize("given", ["-5", "abc", "1.5", "1e"])
def test_a_bad_number_of_events_is_refused_by_name(given: str, tmp_path: Path) -> None:
    printed = run("capacity", "shop", "--store", f"sqlite:///{tmp_path / 'w.db'}",
                  "--at-events", given, cwd=tmp_path)
    assert printed.returncode == 2
    assert "Traceback" not in printed.stderr
    message = " ".join(printed.stderr.replace("│", " ").split())
    assert f"Invalid value for '--at-events': '{given}' is not a number of events" in message
    assert not (tmp_path / "w.db").exists()


def test_capacity_of_a_store_that_does_not_exist_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    printed = run("capacity", "shop", "--store", f"sqlite:///{missing}", cwd=tmp_path)
    assert one_error_line(printed) == (
        f"error: there is no store at {missing}: pass the --store the app writes to")
    assert not missing.exists()


def test_capacity_of_a_store_without_a_log_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    printed = run("capacity", "shop", "--store", f"sqlite:///{empty}", cwd=tmp_path)
    assert one_error_line(printed) == (
        f"error: the store sqlite:///{empty} has no event log yet: pass the --store the app"
        " writes to")


def test_capacity_of_an_unknown_app_says_so(tmp_path: Path) -> None:
    printed = run("capacity", "nosuchmodule:app", "--store", f"sqlite:///{tmp_path / 'w.db'}",
                  cwd=tmp_path)
    assert "cannot import 'nosuchmodule'" in one_error_line(printed)
