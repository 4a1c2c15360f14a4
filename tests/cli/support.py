"""Running `projectionist` for the command-line tests, with the test apps importable."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from projectionist import App, Runtime
from tests.cli.apps import Say
from tests.helpers import projectionist_command

REPO = Path(__file__).resolve().parents[2]
SECRET = "cli-tests-secret-" + "s" * 40


def cli_env(**settings: str) -> dict[str, str]:
    """An environment without PROJECTIONIST_ settings but `settings`; the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"  # rich must not wrap the lines the tests read
    env.update(settings)
    return env


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Runs `projectionist ARGS` in `cwd` to completion."""
    return subprocess.run(
        [*projectionist_command(), *args], cwd=cwd, env=cli_env() if env is None else env,
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refusal with exit status 2, without a traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def said(app: App, store: str, words: Iterable[str], read_store: str | None = None) -> None:
    """Records `words` with `app` and catches its projections up, in this process."""
    runtime = Runtime(app, store=store, read_store=read_store)
    try:
        for word in words:
            runtime.execute(Say(word=word))
        runtime.catch_up()
    finally:
        runtime.stop()
