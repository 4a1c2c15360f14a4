"""Operating projections: status, rebuilds, swaps, dead letters."""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..engines import redact
from ..errors import NotRegistered, RebuildInProgress, StoreUnavailable
from ..projections.status import ProjectionStatus
from ..readstore.checkpoints import BuildBlocked, Checkpoint, State
from ..runtime import DEFAULT_STORE, Runtime
from ..stores import MISSING_TABLE_ERRORS
from .capacity import human_bytes, human_duration, human_rate
from .common import (
    DEFAULT_APP,
    AppOption,
    EventsOption,
    ReadStoreOption,
    StoreOption,
    console,
    friendly_errors,
    load_app,
)


def status(
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    events: EventsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One row per projection: version, state, position, head, lag, dead letters."""
    with friendly_errors():
        runtime = Runtime(
            load_app(app_path),
            store=store,
            read_store=read_store,
            roles=["projector"],
            events=events,
        )
        try:
            rows = [row for row in runtime.status()]
            progress = runtime.capture_progress
            captured = progress.status() if progress is not None else None
        finally:
            runtime.stop()
    if captured is not None and not as_json:
        console.print(
            f"capture: slot {captured.slot}, {captured.state}, through"
            f" {captured.to_json()['through_lsn']}, lag {captured.lag_bytes} bytes"
            f" ({captured.lag_seconds:.1f} s)" + (f": {captured.error}" if captured.error else ""),
            soft_wrap=True,
        )
    if as_json:
        print(json.dumps([{**row.to_json(), "active": row.active} for row in rows], indent=2))
        return
    table = Table(title="projections")
    for column in (
        "name",
        "version",
        "state",
        "position",
        "head",
        "lag (events)",
        "lag (ms)",
        "dead letters",
        "storage",
        "rows",
        "replay",
        "rebuild ETA",
        "remaining",
    ):
        text = column in ("name", "state")
        table.add_column(column, justify="left" if text else "right", no_wrap=text)
    colors = {
        State.LIVE: "green",
        State.CATCHING_UP: "yellow",
        State.REBUILDING: "cyan",
        State.BLOCKED: "magenta",
        State.STALLED: "red",
        State.FAILED: "bold red",
    }
    for row in rows:
        label = row.state if row.active else f"{row.state} (next)"
        table.add_row(
            row.name,
            str(row.version),
            f"[{colors[row.state]}]{label}",
            str(row.position),
            str(row.head),
            str(row.lag_events),
            f"{row.lag_ms:.0f}",
            str(row.dead_letters),
            *_capacity_cells(row),
        )
    console.print(table)


def _capacity_cells(row: ProjectionStatus) -> list[str]:
    """Storage, rows, replay rate, rebuild ETA and a rebuild's time left, in human units."""
    rows = "-" if row.rows is None else f"{'~' if row.rows_estimated else ''}{row.rows:,}"
    remaining = "" if row.active else human_duration(row.remaining_s)
    return [
        human_bytes(row.storage_bytes),
        rows,
        human_rate(row.replay_events_per_s),
        human_duration(row.rebuild_eta_s),
        remaining,
    ]


def rebuild(
    name: Annotated[str, typer.Argument(help="The projection to rebuild.")],
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    events: EventsOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000)] = 5000,
) -> None:
    """Blue/green rebuild of one projection, with progress; the old build serves until the swap."""
    # Parked events and refused swaps are logged: the operator watching the rebuild sees them.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with friendly_errors():
        runtime = Runtime(
            load_app(app_path),
            store=store,
            read_store=read_store,
            roles=["projector"],
            batch_size=batch_size,
            events=events,
        )
        try:
            require_projection(runtime, app_path, name, f"rebuild {name}")
            try:
                build = runtime.rebuild(name)
                console.print(
                    f"rebuilding [cyan]{name}[/] as build {build.generation}"
                    f" (version {build.version}); the serving build answers until"
                    " the swap"
                )
            except RebuildInProgress:
                build = _build_in_progress(runtime, name)
                console.print(
                    f"resuming the rebuild of [cyan]{name}[/] (build"
                    f" {build.generation}, at position {build.position})"
                )
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>9,.0f} events/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            began = time.perf_counter()
            projector = runtime.projector
            assert projector is not None
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(name, total=None, rate=0.0)

                def show(row: Checkpoint) -> None:
                    elapsed = max(1e-6, time.perf_counter() - began)
                    head = max(row.head, runtime.high_water.head, 1)
                    progress.update(
                        task, completed=row.position, total=head, rate=row.position / elapsed
                    )

                try:
                    projector.run_until_serving(name, build.generation, progress=show)
                except BuildBlocked as blocked:
                    progress.stop()
                    _say_blocked(name, blocked)
                    raise typer.Exit(1) from None
            elapsed = time.perf_counter() - began
            console.print(
                f"[green]done[/]: {name} build {build.generation} serves now ({elapsed:.1f}s)"
            )
        finally:
            runtime.stop()


def swap(
    name: Annotated[str, typer.Argument(help="The projection whose new build to swap in.")],
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Swap in a build with dead letters; it serves without the events it parked.",
        ),
    ] = False,
) -> None:
    """Swap a projection's build in progress in now; refused while it is behind or blocked."""
    with friendly_errors():
        # The swap only reads and moves checkpoints: the query role is the one without leases.
        runtime = Runtime(load_app(app_path), store=store, read_store=read_store, roles=["query"])
        try:
            require_projection(runtime, app_path, name, f"swap {name}")
            build = runtime.swap(name, force=force)
        finally:
            runtime.stop()
    parked = f", without its {build.dead_letters} dead letter(s)" if build.dead_letters else ""
    console.print(
        f"[green]swapped[/]: {name} build {build.generation} (version {build.version})"
        f" serves now{parked}"
    )


def require_projection(runtime: Runtime, app_path: str, name: str, usage: str) -> None:
    """Refuses a projection the app lacks, naming the app and the read store's other ones.

    `usage` is the command line after `projectionist`, shown with the app to pass.
    """
    app = runtime.app
    if name in app.projections:
        return
    label = app_path if app_path == app.name else f"{app_path} ({app.name})"
    message = (
        f"the app {label} has no projection named {name!r}; its projections are"
        f" {', '.join(app.projections) or 'none'}"
    )
    others = _unknown_projections(runtime)
    if others:
        message += (
            f"; the read store {redact(runtime.read_store.url)} holds {', '.join(others)},"
            f" which belong to another app: pass that app, as in `projectionist {usage}"
            " module:app`"
        )
    raise NotRegistered(message)


def _unknown_projections(runtime: Runtime) -> list[str]:
    """The projections in the read store that the runtime's app does not define."""
    try:
        with runtime.read_store.read() as connection:
            names = {row.name for row in runtime.checkpoints.all(connection)}
    except (StoreUnavailable, *MISSING_TABLE_ERRORS):  # no read models yet: nothing to list
        return []
    return sorted(names - set(runtime.app.projections))


def _say_blocked(name: str, blocked: BuildBlocked) -> None:
    console.print(
        f"[bold red]blocked[/]: {escape(str(blocked))}; the serving build keeps serving. Retry"
        f" them after a fix (projectionist dead-letters retry {name}), or swap it in as it is"
        f" (projectionist swap {name} --force)",
        soft_wrap=True,
    )


def _build_in_progress(runtime: Runtime, name: str) -> Checkpoint:
    """The build of `name` in progress, if it is of the code's version; else the refusal."""
    with runtime.read_store.read() as connection:
        builds = [
            row
            for row in runtime.checkpoints.all(connection)
            if row.name == name and not row.active
        ]
    version = runtime.app.projections[name].version
    if not builds or builds[0].version != version:
        raise RebuildInProgress(f"a rebuild of {name} of another version is running")
    return builds[0]


dead_letters_cli = typer.Typer(
    help="Events parked after their handler kept failing.", no_args_is_help=True
)


@dead_letters_cli.command("list")
def dead_letters_list(
    projection: Annotated[str | None, typer.Option("--projection")] = None,
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List parked events."""
    with friendly_errors():
        runtime = Runtime(load_app(app_path), store=store, read_store=read_store, roles=["query"])
        try:
            if projection is not None:
                usage = f"dead-letters list --projection {projection}"
                require_projection(runtime, app_path, projection, usage)
            letters = runtime.list_dead_letters(projection)
        finally:
            runtime.stop()
    if as_json:
        print(
            json.dumps(
                [{k: getattr(d, k) for k in d.__dataclass_fields__} for d in letters], indent=2
            )
        )
        return
    table = Table(title="dead letters")
    for column in ("projection", "position", "stream", "type", "reason", "attempts", "error"):
        table.add_column(column)
    for d in letters:
        table.add_row(
            d.projection,
            str(d.position),
            d.stream,
            d.type,
            d.reason,
            str(d.attempts),
            (d.error or "")[:80],
        )
    console.print(table)


@dead_letters_cli.command("retry")
def dead_letters_retry(
    projection: Annotated[str, typer.Argument(help="The projection whose events to retry.")],
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
) -> None:
    """Apply a projection's parked events again, in order, after a fix."""
    with friendly_errors():
        runtime = Runtime(
            load_app(app_path), store=store, read_store=read_store, roles=["projector"]
        )
        try:
            require_projection(runtime, app_path, projection, f"dead-letters retry {projection}")
            applied, left = runtime.retry_dead_letters(projection)
        finally:
            runtime.stop()
    color = "green" if not left else "yellow"
    console.print(f"[{color}]{applied} applied, {left} still parked[/]")
    if left:
        raise typer.Exit(1)
