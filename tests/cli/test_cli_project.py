"""Where the app and the stores come from: the command line, then the environment, then the
project file (`[tool.projectionist]` of pyproject.toml, or projectionist.toml), then defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from projectionist.cli import cli
from tests.cli.apps import words_app
from tests.cli.support import cli_env, one_error_line, run, said

APP_COMMANDS = {
    "serve": ["serve", "--port", "1"],
    "status": ["status"],
    "rebuild": ["rebuild", "words"],
    "swap": ["swap", "words"],
    "dead-letters list": ["dead-letters", "list"],
    "dead-letters retry": ["dead-letters", "retry", "words"],
}


def project_file(directory: Path, kind: str, **settings: str) -> None:
    """Writes `settings` as a pyproject.toml's [tool.projectionist] or a projectionist.toml."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    if kind == "pyproject":
        text = "\n".join(["[project]", 'name = "someone-else"', "", "[tool.projectionist]",
                          *lines])
        (directory / "pyproject.toml").write_text(text + "\n")
    else:
        (directory / "projectionist.toml").write_text("\n".join(lines) + "\n")


def chosen_app(result_stderr: str) -> str:
    """The module named by `cannot import 'X'`: the tests name apps that do not exist."""
    assert "cannot import '" in result_stderr, result_stderr
    return result_stderr.split("cannot import '", 1)[1].split("'", 1)[0]


@pytest.mark.parametrize("kind", ["pyproject", "projectionist.toml"])
@pytest.mark.parametrize(("cli_app", "env_app", "expected"), [
    (None, None, "from_project"),
    (None, "from_env", "from_env"),
    ("from_cli", "from_env", "from_cli"),
    ("from_cli", None, "from_cli"),
])
def test_the_app_comes_from_the_command_line_then_the_environment_then_the_project_file(
    tmp_path: Path, kind: str, cli_app: str | None, env_app: str | None, expected: str,
) -> None:
    project_file(tmp_path, kind, app="from_project:app")
    env = cli_env(PROJECTIONIST_APP=f"{env_app}:app") if env_app else cli_env()
    args = ["status", f"{cli_app}:app"] if cli_app else ["status"]
    line = one_error_line(run(*args, cwd=tmp_path, env=env))
    assert chosen_app(line) == expected


@pytest.mark.parametrize("command", list(APP_COMMANDS))
def test_every_app_command_takes_the_app_from_the_environment(
    tmp_path: Path, command: str,
) -> None:
    line = one_error_line(run(*APP_COMMANDS[command], cwd=tmp_path,
                              env=cli_env(PROJECTIONIST_APP="from_env:app")))
    assert chosen_app(line) == "from_env"


@pytest.mark.parametrize("command", list(APP_COMMANDS))
def test_every_app_command_takes_the_app_from_the_project_file(
    tmp_path: Path, command: str,
) -> None:
    project_file(tmp_path, "pyproject", app="from_project:app")
    line = one_error_line(run(*APP_COMMANDS[command], cwd=tmp_path))
    assert chosen_app(line) == "from_project"


def test_without_any_setting_the_app_is_the_demo(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "no-settings"\n')
    result = run("status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert (tmp_path / "projectionist.db").exists()


@pytest.fixture
def three_stores(tmp_path: Path) -> dict[str, str]:
    """Three write stores of the words app, each with a read store beside it, told apart by
    how many events each holds (1, 2, 3)."""
    stores = {}
    for count, layer in enumerate(("cli", "env", "project"), start=1):
        url = f"sqlite:///{tmp_path / f'{layer}.db'}"
        said(words_app(), url, ["tea"] * count)
        stores[layer] = url
    return stores


def words_position(stdout: str) -> int:
    [row] = [row for row in json.loads(stdout) if row["name"] == "words"]
    return int(row["position"])


@pytest.mark.parametrize(("layers", "expected"), [
    (("project",), 3),
    (("env", "project"), 2),
    (("cli", "env", "project"), 1),
])
def test_the_store_comes_from_the_command_line_then_the_environment_then_the_project_file(
    tmp_path: Path, three_stores: dict[str, str], layers: tuple[str, ...], expected: int,
) -> None:
    project_file(tmp_path, "pyproject", app="tests.cli.apps:words_v1",
                 store=three_stores["project"])
    env = cli_env(PROJECTIONIST_STORE=three_stores["env"]) if "env" in layers else cli_env()
    args = ["--store", three_stores["cli"]] if "cli" in layers else []
    result = run("status", "--json", *args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert words_position(result.stdout) == expected


def test_the_read_store_and_the_store_come_from_projectionist_toml(
    tmp_path: Path, three_stores: dict[str, str],
) -> None:
    read_store = three_stores["env"].replace("env.db", "env-read.db")
    project_file(tmp_path, "projectionist.toml", app="tests.cli.apps:words_v1",
                 store=three_stores["project"], read_store=read_store)
    result = run("status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert words_position(result.stdout) == 2


def test_each_command_gets_the_project_settings_it_has_options_for() -> None:
    from projectionist.cli.project import default_map

    settings = {"app": "a:app", "store": "sqlite:///w.db", "read_store": "sqlite:///r.db",
                "events": "nats://localhost:4222?stream=S"}
    defaults = default_map(typer.main.get_command(cli), settings)
    every = {"app_path": "a:app", "store": "sqlite:///w.db", "read_store": "sqlite:///r.db",
             "events": "nats://localhost:4222?stream=S"}
    without_events = {k: v for k, v in every.items() if k != "events"}
    assert defaults["serve"] == every
    assert defaults["status"] == every
    assert defaults["rebuild"] == every
    assert defaults["swap"] == without_events
    assert defaults["token"] == {"store": "sqlite:///w.db"}
    assert defaults["dead-letters"] == {"list": without_events, "retry": without_events}
    assert defaults["bench"] == {}


@pytest.mark.parametrize(("files", "expected"), [
    ({"pyproject.toml": "[tool.projectionist]\nstore = 'sqlite:///x.db'\nread-store = 'y'\n"},
     ["pyproject.toml", "'read-store'", "read_store"]),
    ({"projectionist.toml": "app = 5\n"}, ["projectionist.toml", "app", "string", "5"]),
    ({"projectionist.toml": "app = \n"}, ["projectionist.toml", "not valid TOML"]),
    ({"pyproject.toml": "[tool]\nprojectionist = 'shop'\n"}, ["pyproject.toml", "table"]),
    ({"pyproject.toml": "[tool.projectionist]\napp = 'a:app'\n",
      "projectionist.toml": "app = 'b:app'\n"}, ["pyproject.toml", "projectionist.toml", "one"]),
])
def test_a_bad_project_file_is_one_line_naming_the_file_and_what_is_wrong(
    tmp_path: Path, files: dict[str, str], expected: list[str],
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    line = one_error_line(run("status", cwd=tmp_path))
    for part in expected:
        assert part in line, line
