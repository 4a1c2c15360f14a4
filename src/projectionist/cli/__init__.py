"""The command line: serve, token, status, rebuild, dead letters, and plug-ins (bench)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import typer
from rich.markup import escape

from ..errors import ProjectionistError
from .capacity import capacity
from .capture import capture_cli
from .common import DEFAULT_APP, errors, load_app
from .migrate import migrate
from .project import default_map, project_settings
from .projections import dead_letters_cli, rebuild, status, swap
from .serve import serve, token

__all__ = ["DEFAULT_APP", "PLUGINS_GROUP", "cli", "load_app", "main"]

PLUGINS_GROUP = "projectionist.cli"
"""Entry points adding subcommands (the benchmarks: bench)."""

cli = typer.Typer(
    name="projectionist",
    help="A CQRS framework and runtime: commands, an event log, projections, fresh queries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (serve, token, status, rebuild, swap, capacity):
    cli.command()(command)
cli.add_typer(dead_letters_cli, name="dead-letters")
cli.add_typer(capture_cli, name="capture")
cli.command()(migrate)


@cli.command(
    "bench",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench(context: typer.Context) -> None:
    """Run the benchmarks (installed with the bench extra of projectionist)."""
    found = importlib.metadata.entry_points(group=PLUGINS_GROUP).select(name="bench")
    plugin = next(iter(found), None)
    if plugin is None:
        errors.print(
            "[bold red]error:[/] the benchmarks are not installed: run pip install -e"
            " '.\\[bench]' in the projectionist repository",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    command = typer.main.get_command(plugin.load())
    command.main(args=context.args, prog_name="projectionist bench")


def main() -> None:
    """The console script: the command line, with the defaults of the project file here."""
    try:
        settings = project_settings(Path.cwd())
    except ProjectionistError as error:  # read before any command runs, so none reports it
        errors.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise SystemExit(2) from None
    cli(default_map=default_map(typer.main.get_command(cli), settings))
