"""Swapping a build in by hand: `projectionist swap` and POST /projections/{name}/swap.

A build of a new version that parked events is `blocked`: it never replaces the serving build
by itself, and an operator swaps it in only with force.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from projectionist import Runtime, State
from tests.cli.apps import Say, words_app
from tests.cli.support import one_error_line, run, said
from tests.lifecycle.support import AUTHORITY, InProcessServer, bearer


def words_builds(runtime: Runtime) -> list[tuple[int, bool, State, int]]:
    return [(row.version, row.active, row.state, row.dead_letters)
            for row in runtime.status() if row.name == "words"]


@pytest.fixture
def blocked(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """Version 1 of `words` serves; version 2, whose handler raises on "milk", is blocked."""
    write, read = store_urls
    said(words_app(1), write, ["tea", "milk", "tea"], read_store=read)
    runtime = Runtime(words_app(2, poison={"milk"}), store=write, read_store=read)
    try:
        runtime.catch_up()
        assert words_builds(runtime) == [(1, True, State.LIVE, 0), (2, False, State.BLOCKED, 1)]
        yield runtime
    finally:
        runtime.stop()


def stores_of(runtime: Runtime) -> list[str]:
    assert runtime.store is not None
    return ["--store", runtime.store.url, "--read-store", runtime.read_store.url]


# The command line

def test_swap_refuses_a_blocked_build_then_swaps_it_in_with_force(
    blocked: Runtime, tmp_path: Path,
) -> None:
    app = "tests.cli.apps:words_v2"
    line = one_error_line(run("swap", "words", app, *stores_of(blocked), cwd=tmp_path))
    assert "1 dead letter" in line and "force" in line
    assert words_builds(blocked) == [(1, True, State.LIVE, 0), (2, False, State.BLOCKED, 1)]

    swapped = run("swap", "words", app, "--force", *stores_of(blocked), cwd=tmp_path)
    assert swapped.returncode == 0, swapped.stderr
    generation = next(row.generation for row in blocked.status() if row.name == "words")
    assert (f"words build {generation} (version 2) serves now, without its 1 dead letter(s)"
            in swapped.stdout)
    assert words_builds(blocked) == [(2, True, State.LIVE, 1)]

    again = one_error_line(run("swap", "words", app, *stores_of(blocked), cwd=tmp_path))
    assert "words has no build in progress to swap in" in again


@pytest.fixture
def words(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    """Version 1 of `words`, serving, over the words of the test (none until it says some)."""
    write, read = store_urls
    runtime = Runtime(words_app(1), store=write, read_store=read)
    try:
        runtime.catch_up()
        yield runtime
    finally:
        runtime.stop()


def test_swap_refuses_a_build_behind_the_serving_one(words: Runtime, tmp_path: Path) -> None:
    words.execute(Say(word="tea"))
    words.catch_up()
    build = words.rebuild("words")  # at position 0: behind the serving build, at 1
    line = one_error_line(run("swap", "words", "tests.cli.apps:words_v1", "--force",
                              *stores_of(words), cwd=tmp_path))
    assert f"build {build.generation} of words is behind the serving build" in line
    assert [(row.generation, row.active) for row in words.status()] == [
        (1, True), (build.generation, False)]


def test_swap_of_a_build_not_behind_and_without_dead_letters_needs_no_force(
    words: Runtime, tmp_path: Path,
) -> None:
    build = words.rebuild("words")  # the log is empty: the new build is as far as the old one
    swapped = run("swap", "words", "tests.cli.apps:words_v1", *stores_of(words), cwd=tmp_path)
    assert swapped.returncode == 0, swapped.stderr
    assert f"words build {build.generation} (version 1) serves now\n" in swapped.stdout
    assert [(row.generation, row.active) for row in words.status()] == [(build.generation, True)]


def test_status_shows_a_blocked_build(blocked: Runtime, tmp_path: Path) -> None:
    result = run("status", "tests.cli.apps:words_v2", *stores_of(blocked), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "blocked (next)" in result.stdout


# Over HTTP

def test_post_swap_refuses_a_blocked_build_with_409_then_swaps_it_in_with_force(
    blocked: Runtime,
) -> None:
    with InProcessServer(blocked) as server:
        refused = server.http.post("/projections/words/swap")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "refused"
        assert "1 dead letter" in refused.json()["detail"]
        refused = server.http.post("/projections/words/swap", params={"force": "false"})
        assert refused.status_code == 409, refused.text
        assert words_builds(blocked) == [(1, True, State.LIVE, 0),
                                         (2, False, State.BLOCKED, 1)]

        swapped = server.http.post("/projections/words/swap", params={"force": "true"})
        assert swapped.status_code == 200, swapped.text
        generation = next(row.generation for row in blocked.status() if row.name == "words")
        assert swapped.json() == {"name": "words", "version": 2, "generation": generation,
                                  "state": "live"}
        listed = server.http.get("/projections").json()
        assert [(row["generation"], row["active"]) for row in listed
                if row["name"] == "words"] == [(generation, True)]

        again = server.http.post("/projections/words/swap", params={"force": "true"})
        assert again.status_code == 409, again.text
        assert "no build in progress" in again.json()["detail"]


def test_post_swap_of_an_unknown_projection_is_404(blocked: Runtime) -> None:
    with InProcessServer(blocked) as server:
        answer = server.http.post("/projections/daily/swap")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "not_registered"


def test_post_swap_needs_the_admin_scope(blocked: Runtime) -> None:
    reader = AUTHORITY.issue(["queries:*", "commands:*"], subject="reader")
    with InProcessServer(blocked) as server:
        answer = server.http.post("/projections/words/swap", params={"force": "true"},
                                  headers=bearer(reader))
        assert answer.status_code == 403, answer.text
        anonymous = server.http.post("/projections/words/swap", headers={"Authorization": ""})
        assert anonymous.status_code == 401, anonymous.text
    assert words_builds(blocked)[1] == (2, False, State.BLOCKED, 1)


def test_post_swap_is_in_the_openapi_document(blocked: Runtime) -> None:
    with InProcessServer(blocked) as server:
        document = server.http.get("/openapi.json").json()
    operation = document["paths"]["/projections/{name}/swap"]["post"]
    assert operation["tags"] == ["operations"]
    assert {"401", "403", "404", "409", "503"} <= set(operation["responses"])
    assert "dead letters" in operation["responses"]["409"]["description"]
    [force] = [p for p in operation["parameters"] if p["name"] == "force"]
    assert (force["in"], force["required"]) == ("query", False)


def test_rebuild_stops_at_a_blocked_build_and_says_what_to_do(
    store_urls: tuple[str, str], tmp_path: Path,
) -> None:
    write, read = store_urls
    said(words_app(1), write, ["tea", "milk", "tea"], read_store=read)
    app = "tests.cli.apps:words_v2_poisoned"
    result = run("rebuild", "words", app, "--store", write, "--read-store", read, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "blocked" in result.stdout and "1 dead letter" in result.stdout
    assert "dead-letters retry words" in result.stdout and "swap words --force" in result.stdout
    assert "ValueError: cannot count 'milk'" in result.stderr  # the parking, logged at ERROR
    runtime = Runtime(words_app(1), store=write, read_store=read, roles=["query"])
    try:
        assert words_builds(runtime) == [(1, True, State.LIVE, 0), (2, False, State.BLOCKED, 1)]
    finally:
        runtime.stop()
