"""The command line: serve, token, status."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .app import App
from .auth import ALL_SCOPES, READ_ONLY_SCOPES, TokenAuthority, auth_enabled
from .errors import ProjectionistError, RebuildInProgress
from .readstore.checkpoints import Checkpoint, State
from .runtime import DEFAULT_STORE, ROLES, Runtime

DEFAULT_APP = "shop"
APPS_GROUP = "projectionist.apps"
"""Entry points naming apps by a short name (the bundled demos: shop)."""
PLUGINS_GROUP = "projectionist.cli"
"""Entry points adding subcommands (the benchmarks: bench)."""

cli = typer.Typer(
    name="projectionist",
    help="A CQRS framework and runtime: commands, an event log, projections, fresh queries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

AppOption = Annotated[str, typer.Argument(
    help="The app, as module:attribute, or the short name of an installed one (shop).")]
StoreOption = Annotated[
    str, typer.Option("--store", envvar="PROJECTIONIST_STORE", help="Write store URL.")
]
ReadStoreOption = Annotated[
    str | None,
    typer.Option("--read-store", envvar="PROJECTIONIST_READ_STORE",
                 help="Read store URL (default: a SQLite file beside a SQLite write store)."),
]
EventsOption = Annotated[
    str | None,
    typer.Option("--events", envvar="PROJECTIONIST_EVENTS",
                 help="An event feed, nats://host:4222?stream=NAME (JetStream) or"
                      " redis://host:6379/0?stream=NAME (Redis Streams): command processes"
                      " relay the log to it, projector processes read their events from it."),
]


def load_app(path: str) -> App:
    """The App at `module:attribute`, or the installed app of that short name."""
    if ":" not in path:
        named = importlib.metadata.entry_points(group=APPS_GROUP).select(name=path)
        for entry_point in named:
            app = entry_point.load()
            if not isinstance(app, App):
                raise ProjectionistError(f"the app {path!r} is not a projectionist App")
            return app
        if path in _BUNDLED_APPS:
            raise ProjectionistError(
                f"the demo app {path!r} is not installed: pip install 'projectionist[examples]'"
                " from the repository")
    module_name, _, attribute = path.partition(":")
    if not module_name:
        raise ProjectionistError(f"{path!r} is not an app path; use module:attribute")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ProjectionistError(f"cannot import {module_name!r}: {error}") from None
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, App):
        raise ProjectionistError(f"{path!r} is not a projectionist App")
    return app


_BUNDLED_APPS = ("shop",)


def secret_directory(store: str) -> Path:
    """Where a generated secret is kept: beside a SQLite store, else the working directory."""
    if store.startswith("sqlite:///") and not store.endswith(":memory:"):
        return Path(store.removeprefix("sqlite:///")).expanduser().resolve().parent
    return Path.cwd()


def authority_for(store: str) -> TokenAuthority:
    return TokenAuthority.from_environment(secret_directory(store))


@cli.command()
def serve(
    app_path: AppOption = DEFAULT_APP,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    roles: Annotated[str, typer.Option("--roles", help="Any of command,projector,query.")] = (
        ",".join(ROLES)
    ),
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    events: EventsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print no tokens.")] = False,
    pool_size: Annotated[int, typer.Option("--pool-size", min=1, max=200,
                                           help="Connections per store.")] = 5,
    lease_ttl: Annotated[float, typer.Option(
        "--lease-ttl", min=1.0, max=300.0,
        help="Seconds a projector's lease lasts; another projector takes over within it.",
    )] = 5.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000,
                                            help="Events per projection batch.")] = 1000,
    idempotency_ttl: Annotated[float, typer.Option(
        "--idempotency-ttl", min=0.0,
        help="Seconds an Idempotency-Key's answer is kept for retries (0: forever).",
    )] = 7 * 86400.0,
) -> None:
    """Serve an app over HTTP, running the chosen roles in this process."""
    import uvicorn

    from .http import create_http_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with _friendly_errors():
        app = load_app(app_path)
        runtime = Runtime(app, store=store, read_store=read_store, roles=roles,
                          pool_size=pool_size, lease_ttl_s=lease_ttl, batch_size=batch_size,
                          events=events, idempotency_ttl_s=idempotency_ttl or None)
        authority = authority_for(store) if auth_enabled() else None
        runtime.start()
    try:
        api = create_http_app(runtime, authority=authority)
        if not quiet:
            _print_banner(runtime, host, port, authority)
        uvicorn.run(api, host=host, port=port, log_level="warning")
    finally:
        runtime.stop()


@cli.command()
def token(
    scope: Annotated[list[str], typer.Option("--scope", help="A scope; repeat for more.")],
    sub: Annotated[str, typer.Option("--sub", help="The token's subject.")] = "user",
    ttl: Annotated[int, typer.Option("--ttl", help="Seconds until it expires.")] = 3600,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Print a bearer token signed with the app's secret."""
    with _friendly_errors():
        scopes = [part for item in scope for part in item.split()]
        print(authority_for(store).issue(scopes, subject=sub, ttl_s=ttl))


@cli.command()
def status(
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    events: EventsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One row per projection: version, state, position, head, lag, dead letters."""
    with _friendly_errors():
        runtime = Runtime(load_app(app_path), store=store, read_store=read_store,
                          roles=["projector"], events=events)
        try:
            rows = [row for row in runtime.status()]
        finally:
            runtime.stop()
    if as_json:
        print(json.dumps([{**row.to_json(), "active": row.active} for row in rows], indent=2))
        return
    table = Table(title="projections")
    for column in ("name", "version", "state", "position", "head", "lag (events)", "lag (ms)",
                   "dead letters"):
        text = column in ("name", "state")
        table.add_column(column, justify="left" if text else "right", no_wrap=text)
    colors = {State.LIVE: "green", State.CATCHING_UP: "yellow", State.REBUILDING: "cyan",
              State.STALLED: "red", State.FAILED: "bold red"}
    for row in rows:
        label = row.state if row.active else f"{row.state} (next)"
        table.add_row(row.name, str(row.version), f"[{colors[row.state]}]{label}",
                      str(row.position), str(row.head), str(row.lag_events),
                      f"{row.lag_ms:.0f}", str(row.dead_letters))
    console.print(table)


@cli.command()
def rebuild(
    name: Annotated[str, typer.Argument(help="The projection to rebuild.")],
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    events: EventsOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000)] = 5000,
) -> None:
    """Blue/green rebuild of one projection, with progress; the old build serves until the swap."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with _friendly_errors():
        runtime = Runtime(load_app(app_path), store=store, read_store=read_store,
                          roles=["projector"], batch_size=batch_size, events=events)
        try:
            try:
                build = runtime.rebuild(name)
                console.print(f"rebuilding [cyan]{name}[/] as build {build.generation}"
                              f" (version {build.version}); the serving build answers until"
                              " the swap")
            except RebuildInProgress:
                build = _build_in_progress(runtime, name)
                console.print(f"resuming the rebuild of [cyan]{name}[/] (build"
                              f" {build.generation}, at position {build.position})")
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]:>9,.0f} events/s"), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn())
            began = time.perf_counter()
            projector = runtime.projector
            assert projector is not None
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(name, total=None, rate=0.0)

                def show(row: Checkpoint) -> None:
                    elapsed = max(1e-6, time.perf_counter() - began)
                    head = max(row.head, runtime.high_water.head, 1)
                    progress.update(task, completed=row.position, total=head,
                                    rate=row.position / elapsed)

                projector.run_until_serving(name, build.generation, progress=show)
            elapsed = time.perf_counter() - began
            console.print(f"[green]done[/]: {name} build {build.generation} serves now"
                          f" ({elapsed:.1f}s)")
        finally:
            runtime.stop()


def _build_in_progress(runtime: Runtime, name: str) -> Checkpoint:
    """The build of `name` in progress, if it is of the code's version; else the refusal."""
    with runtime.read_store.read() as connection:
        builds = [row for row in runtime.checkpoints.all(connection)
                  if row.name == name and not row.active]
    version = runtime.app.projections[name].version
    if not builds or builds[0].version != version:
        raise RebuildInProgress(f"a rebuild of {name} of another version is running")
    return builds[0]


dead_letters_cli = typer.Typer(help="Events parked after their handler kept failing.",
                               no_args_is_help=True)
cli.add_typer(dead_letters_cli, name="dead-letters")


@dead_letters_cli.command("list")
def dead_letters_list(
    projection: Annotated[str | None, typer.Option("--projection")] = None,
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List parked events."""
    with _friendly_errors():
        runtime = Runtime(load_app(app_path), store=store, read_store=read_store,
                          roles=["query"])
        try:
            letters = runtime.list_dead_letters(projection)
        finally:
            runtime.stop()
    if as_json:
        print(json.dumps([{k: getattr(d, k) for k in d.__dataclass_fields__} for d in letters],
                         indent=2))
        return
    table = Table(title="dead letters")
    for column in ("projection", "position", "stream", "type", "reason", "attempts", "error"):
        table.add_column(column)
    for d in letters:
        table.add_row(d.projection, str(d.position), d.stream, d.type, d.reason,
                      str(d.attempts), (d.error or "")[:80])
    console.print(table)


@dead_letters_cli.command("retry")
def dead_letters_retry(
    projection: Annotated[str, typer.Argument(help="The projection whose events to retry.")],
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
) -> None:
    """Apply a projection's parked events again, in order, after a fix."""
    with _friendly_errors():
        runtime = Runtime(load_app(app_path), store=store, read_store=read_store,
                          roles=["projector"])
        try:
            applied, left = runtime.retry_dead_letters(projection)
        finally:
            runtime.stop()
    color = "green" if not left else "yellow"
    console.print(f"[{color}]{applied} applied, {left} still parked[/]")
    if left:
        raise typer.Exit(1)


def _print_banner(runtime: Runtime, host: str, port: int,
                  authority: TokenAuthority | None) -> None:
    base = f"http://{host}:{port}"
    console.print(f"[bold]projectionist[/] serving [cyan]{runtime.app.name}[/] at {base}"
                  f"  roles: {', '.join(runtime.roles)}")
    if runtime.store is not None:
        console.print(f"  write store: {runtime.store!r}")
    console.print(f"  read store:  {runtime.read_store!r}")
    if runtime.feed is not None:
        console.print(f"  events:      {runtime.feed!r}")
    console.print(f"  docs: {base}/docs   metrics: {base}/metrics")
    if authority is None:
        console.print("  [yellow]authentication is off (PROJECTIONIST_AUTH=off)[/]")
        return
    if not runtime.read_store.is_sqlite and not os.environ.get("PROJECTIONIST_SECRET"):
        console.print("  [yellow]PROJECTIONIST_SECRET is not set: this process signs with a secret"
                      " of its own, which other processes and hosts do not share[/]")
    if not authority.can_issue:
        console.print("  tokens: verified with the configured public key")
        return
    admin = authority.issue(ALL_SCOPES, subject="admin", ttl_s=24 * 3600)
    reader = authority.issue(READ_ONLY_SCOPES, subject="reader", ttl_s=24 * 3600)
    console.print(f"  admin token:     {admin}", soft_wrap=True)
    console.print(f"  read-only token: {reader}", soft_wrap=True)


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """Start-up errors as one line, without a traceback."""
    try:
        yield
    except ProjectionistError as error:
        errors.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None


@cli.command(
    "bench", add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench(context: typer.Context) -> None:
    """Run the benchmarks (installed with pip install 'projectionist[bench]')."""
    found = importlib.metadata.entry_points(group=PLUGINS_GROUP).select(name="bench")
    plugin = next(iter(found), None)
    if plugin is None:
        errors.print("[bold red]error:[/] the benchmarks are not installed: pip install"
                      " 'projectionist[bench]' from the repository", soft_wrap=True)
        raise typer.Exit(2)
    command = typer.main.get_command(plugin.load())
    command.main(args=context.args, prog_name="projectionist bench")


def main() -> None:
    cli()
