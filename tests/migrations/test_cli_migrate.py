"""`projectionist migrate`, and `serve --upgrade refuse`, on stores of the previous release."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from projectionist.migrations import CURRENT, EARLIEST
from tests.cli.support import cli_env, one_error_line, run
from tests.migrations.test_upgrade import has_table, versions

APP = "tests.migrations.ledger"


def stores(urls: tuple[str, str]) -> list[str]:
    return ["--store", urls[0], "--read-store", urls[1]]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_migrate_dry_run_reports_from_and_to_per_store_and_changes_nothing(
    old_stores: tuple[str, str], tmp_path: Path
) -> None:
    done = run("migrate", APP, *stores(old_stores), "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"ledger: the framework's tables are at version {CURRENT} in this release"
    assert f"write store {old_stores[0]}: version {EARLIEST} -> {CURRENT}" in lines
    assert f"read store {old_stores[1]}: version {EARLIEST} -> {CURRENT}" in lines
    assert "  would reach 3: Each build's unresolved dead letters counted on its checkpoint." \
        in lines
    assert lines[-1] == "dry run: nothing was changed"
    assert not has_table(old_stores[0], "projectionist_schema")
    assert not has_table(old_stores[1], "projectionist_schema")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_migrate_upgrades_each_store_once(old_stores: tuple[str, str], tmp_path: Path) -> None:
    done = run("migrate", APP, *stores(old_stores), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"read store {old_stores[1]}: version {EARLIEST} -> {CURRENT}" in done.stdout
    assert "  reached 2: The highest generation of each projection recorded, so that none is" \
        " given twice." in done.stdout
    assert versions(old_stores[0]) == {"write": CURRENT}
    assert versions(old_stores[1]) == {"read": CURRENT}
    again = run("migrate", APP, *stores(old_stores), cwd=tmp_path)
    assert f"write store {old_stores[0]}: at version {CURRENT}, up to date" in again.stdout
    assert f"read store {old_stores[1]}: at version {CURRENT}, up to date" in again.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_with_upgrade_refuse_names_migrate_in_one_line(
    old_stores: tuple[str, str], tmp_path: Path
) -> None:
    refused = run("serve", APP, *stores(old_stores), "--quiet", cwd=tmp_path,
                  env=cli_env(PROJECTIONIST_UPGRADE="refuse", PROJECTIONIST_AUTH="off"))
    line = one_error_line(refused)
    assert line == (f"error: the write store {old_stores[0]} is at schema version {EARLIEST}"
                    f" and this release needs {CURRENT}; run `projectionist migrate` to upgrade"
                    " it")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_migrate_refuses_a_store_newer_than_this_release_in_one_line(
    old_stores: tuple[str, str], tmp_path: Path
) -> None:
    assert run("migrate", APP, *stores(old_stores), cwd=tmp_path).returncode == 0
    connection = sqlite3.connect(old_stores[0].removeprefix("sqlite:///"))
    with connection:
        connection.execute("UPDATE projectionist_schema SET version = version + 1")
    connection.close()
    line = one_error_line(run("migrate", APP, *stores(old_stores), cwd=tmp_path))
    assert line == (f"error: the write store {old_stores[0]} is at schema version {CURRENT + 1},"
                    f" newer than this release of projectionist knows ({CURRENT}); run the newer"
                    " release")
