"""A projection the app does not have: the error names the app, and the read store's
projections of another app, and says to pass that app."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.apps import words_app
from tests.cli.support import one_error_line, run, said
from tests.lifecycle.support import builds

COMMANDS = {
    "rebuild": (["rebuild", "words"], "projectionist rebuild words module:app"),
    "swap": (["swap", "words"], "projectionist swap words module:app"),
    "dead-letters list": (["dead-letters", "list", "--projection", "words"],
                          "projectionist dead-letters list --projection words module:app"),
    "dead-letters retry": (["dead-letters", "retry", "words"],
                           "projectionist dead-letters retry words module:app"),
}


@pytest.fixture
def stores(tmp_path: Path) -> tuple[str, str]:
    """A write store and its read store, where the words app built its projection."""
    write = f"sqlite:///{tmp_path / 'app.db'}"
    said(words_app(), write, ["tea", "milk"])
    return write, f"sqlite:///{tmp_path / 'app-read.db'}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_projection_of_another_app_is_named_with_the_app_to_pass(
    tmp_path: Path, stores: tuple[str, str], command: str,
) -> None:
    args, usage = COMMANDS[command]
    write, read = stores
    result = run(*args, "tests.cli.apps:letters", "--store", write, cwd=tmp_path)
    line = one_error_line(result)
    assert "the app tests.cli.apps:letters (letters) has no projection named 'words'" in line
    assert "its projections are letters" in line
    assert f"the read store {read} holds words, which belong to another app" in line
    assert f"`{usage}`" in line
    # The wrong app left the read store as it was: no build of its own projections.
    assert builds(read, "letters") == []
    assert [row["generation"] for row in builds(read, "words")] == [1]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_projection_of_a_fresh_read_store_names_the_app_only(
    tmp_path: Path, command: str,
) -> None:
    args, _ = COMMANDS[command]
    line = one_error_line(run(*args, "tests.cli.apps:letters", cwd=tmp_path))
    assert "the app tests.cli.apps:letters (letters) has no projection named 'words'" in line
    assert "another app" not in line


def test_a_misspelt_projection_of_the_right_app_lists_the_apps_projections(
    tmp_path: Path, stores: tuple[str, str],
) -> None:
    write, _ = stores
    line = one_error_line(run("rebuild", "word", "tests.cli.apps:words_v1", "--store", write,
                              cwd=tmp_path))
    assert "the app tests.cli.apps:words_v1 (words) has no projection named 'word'" in line
    assert "its projections are words" in line
    assert "another app" not in line
