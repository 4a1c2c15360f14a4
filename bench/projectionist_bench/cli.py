"""`projectionist bench orders`, `bench http`, `bench rebuild`, `bench feeds`, `bench cdc` and
`bench scale`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from projectionist.errors import ProjectionistError

from . import report

bench_cli = typer.Typer(
    help="Run the benchmarks: the orders workload in-process, the shop over HTTP, rebuilds,"
         " and the event feeds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
if not console.is_terminal:
    # Piped to a file or a CI log: wide enough that the tables do not wrap.
    console = Console(width=120)
errors = Console(stderr=True)


class Backend(StrEnum):
    """The stores a benchmark can run on."""

    sqlite = "sqlite"
    postgresql = "postgresql"


class Engine(StrEnum):
    """The feed engines `bench feeds` can measure."""

    nats = "nats"
    redis = "redis"


BackendOption = Annotated[Backend, typer.Option("--backend", help="The store to measure.")]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="PostgreSQL server URL; a fresh database is created on it per"
                               " phase and dropped afterwards. Default:"
                               " postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
]
DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Folder for the SQLite files (default: the system's temporary"
                               " folder). Put it on the disk you mean to measure."),
]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the figures here.")]
KeepOption = Annotated[bool, typer.Option("--keep", help="Keep the databases afterwards.")]


@bench_cli.command("orders")
def orders(
    backend: BackendOption = Backend.sqlite,
    url: UrlOption = None,
    orders: Annotated[int, typer.Option("--orders", min=1, help="N: orders in W, W8, P.")] = 5000,
    live: Annotated[int, typer.Option("--live", min=1, help="Commands in phase L.")] = 1000,
    threads: Annotated[int, typer.Option("--threads", min=2, help="Writers in W8.")] = 8,
    write8: Annotated[
        bool | None,
        typer.Option("--w8/--no-w8", help="Run W8 (default: on PostgreSQL only)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1,
                                            help="The projector's batch size.")] = 1000,
    json_path: JsonOption = None,
    directory: DirOption = None,
    keep: KeepOption = False,
) -> None:
    """The orders workload through the library: W, W8, P (with checks) and L."""
    from .orders import BenchmarkFailed, OrdersSettings, run_orders

    settings = OrdersSettings(
        backend=backend.value, orders=orders, live_commands=live, threads=threads,
        write8=write8, batch_size=batch_size, url=url, directory=directory, keep=keep,
    )
    try:
        result = run_orders(settings, progress=lambda line: errors.print(f"[dim]{line}"))
    except (BenchmarkFailed, ProjectionistError) as error:
        errors.print(f"[bold red]benchmark failed:[/] {error}")
        raise typer.Exit(1) from None
    report.print_orders(console, result)
    if json_path is not None:
        report.write_json(json_path, result)
        console.print(f"figures written to {json_path}")
    if not result["verification"]["passed"]:
        errors.print("[bold red]the read model does not match the workload[/]")
        raise typer.Exit(1)


@bench_cli.command("http")
def http(
    backend: BackendOption = Backend.sqlite,
    url: UrlOption = None,
    duration: Annotated[float, typer.Option("--duration", min=0.5,
                                            help="Seconds per phase.")] = 10.0,
    query_clients: Annotated[int, typer.Option("--query-clients", min=1)] = 8,
    command_clients: Annotated[int, typer.Option("--command-clients", min=1)] = 4,
    query_rate: Annotated[float, typer.Option(
        "--query-rate", min=1, help="Queries/s in the paced phases.")] = 500.0,
    seed_orders: Annotated[int, typer.Option("--seed-orders", min=1)] = 500,
    app_path: Annotated[str, typer.Option("--app", help="The app, as module:attribute;"
                                                        " its commands must be the shop's.")
                        ] = "shop",
    auth: Annotated[bool, typer.Option("--auth/--no-auth",
                                       help="Bearer tokens on every request.")] = True,
    json_path: JsonOption = None,
    directory: DirOption = None,
    keep: KeepOption = False,
) -> None:
    """The shop served by uvicorn, driven over HTTP: reads alone, then with writes saturating."""
    from .http import HttpSettings, run_http
    from .orders import BenchmarkFailed

    settings = HttpSettings(
        backend=backend.value, url=url, duration_s=duration, query_clients=query_clients,
        command_clients=command_clients, query_rate=query_rate, seed_orders=seed_orders,
        app=app_path, auth=auth, directory=directory, keep=keep,
    )
    try:
        result = run_http(settings, progress=lambda line: errors.print(f"[dim]{line}"))
    except (BenchmarkFailed, ProjectionistError) as error:
        errors.print(f"[bold red]benchmark failed:[/] {error}")
        raise typer.Exit(1) from None
    report.print_http(console, result)
    if json_path is not None:
        report.write_json(json_path, result)
        console.print(f"figures written to {json_path}")


@bench_cli.command("rebuild")
def rebuild(
    backend: BackendOption = Backend.sqlite,
    url: UrlOption = None,
    events: Annotated[int, typer.Option("--events", min=1,
                                        help="Events to seed the log with.")] = 1_000_000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1,
                                            help="Events per rebuild batch.")] = 5000,
    json_path: JsonOption = None,
) -> None:
    """Seed a large log of shop events, then time blue/green rebuilds of two projections."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from .rebuild import RebuildSettings, run_rebuild

    settings = RebuildSettings(backend=backend.value, events=events, url=url,
                               batch_size=batch_size)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console) as progress:
            tasks: dict[str, TaskID] = {}

            tenths: dict[str, int] = {}

            def show(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=total)
                progress.update(tasks[name], completed=done, total=total)
                tenth = done * 10 // max(total, 1)
                if not console.is_terminal and tenth > tenths.get(name, 0):
                    # A log file sees no progress bar: a line per tenth instead.
                    tenths[name] = tenth
                    errors.print(f"{name}: {done:,} of {total:,} events", soft_wrap=True)

            result = run_rebuild(settings, show)
    except ProjectionistError as error:
        errors.print(f"[bold red]benchmark failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"seeded {result['events']:,} events at {result['seed_events_per_s']:,}/s")
    log = result["log"]
    console.print(f"log: {log['bytes']:,} bytes, {log['bytes_per_event']} bytes per event")
    for name, figures in result["rebuilds"].items():
        planned = figures["capacity"]
        console.print(f"rebuild of {name}: {figures['seconds']} s end to end,"
                      f" {figures['events_per_s']:,} events/s;"
                      f" replay {planned['replay_events_per_s']:,} events/s,"
                      f" {planned['storage_bytes']:,} bytes ({planned['bytes_per_event']} per"
                      " event)")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")


@bench_cli.command("feeds")
def feeds(
    backend: BackendOption = Backend.sqlite,
    url: UrlOption = None,
    events: Annotated[int, typer.Option("--events", min=1,
                                        help="N: events to seed the log with.")] = 100_000,
    commands: Annotated[int, typer.Option("--commands", min=1,
                                          help="M: commands in the latency phase.")] = 200,
    engine: Annotated[list[Engine] | None, typer.Option(
        "--engine", help="A feed engine to measure; repeat for several (default: all).")
    ] = None,
    nats_url: Annotated[str, typer.Option("--nats", help="The NATS server (JetStream on).")
                        ] = "nats://127.0.0.1:4222",
    redis_url: Annotated[str, typer.Option("--redis", help="The Redis server.")
                         ] = "redis://127.0.0.1:6379/0",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1,
                                            help="Events per rebuild batch.")] = 5000,
    json_path: JsonOption = None,
    directory: DirOption = None,
) -> None:
    """The log relayed to NATS JetStream and Redis Streams: relay, read back, rebuild from the
    feed, and commit-to-visible latency through it; each beside the same without a feed."""
    from .feeds import ENGINES, FeedsSettings, print_feeds, run_feeds

    settings = FeedsSettings(
        backend=backend.value, events=events, commands=commands,
        engines=tuple(dict.fromkeys(e.value for e in engine)) if engine else ENGINES,
        nats_url=nats_url, redis_url=redis_url, batch_size=batch_size, url=url,
        directory=directory,
    )
    try:
        result = run_feeds(settings, progress=lambda line: errors.print(f"[dim]{line}"))
    except ProjectionistError as error:
        errors.print(f"[bold red]benchmark failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    print_feeds(console, result)
    if json_path is not None:
        report.write_json(json_path, result)
        console.print(f"figures written to {json_path}")
    if not result["verification"]["passed"]:
        errors.print("[bold red]the feeds do not mirror the log[/]")
        raise typer.Exit(1)


@bench_cli.command("cdc")
def cdc(
    url: UrlOption = None,
    changes: Annotated[int, typer.Option("--changes", min=1,
                                         help="N: changes written in LIVE, and again in"
                                              " BACKLOG.")] = 20_000,
    runs: Annotated[int, typer.Option("--runs", min=1,
                                      help="Runs on fresh databases; figures are medians.")] = 1,
    samples: Annotated[int, typer.Option("--samples", min=1,
                                         help="Commits timed in IDLE and in LOAD.")] = 300,
    writers: Annotated[int, typer.Option("--writers", min=1,
                                         help="Writer connections in LIVE and BACKLOG.")] = 4,
    per_transaction: Annotated[int, typer.Option("--per-transaction", min=1,
                                                 help="Changes per writer transaction.")] = 10,
    load_rate: Annotated[float, typer.Option("--load-rate", min=1,
                                             help="Background changes/s in LOAD.")] = 2000.0,
    json_path: JsonOption = None,
) -> None:
    """PostgreSQL change data capture: the billing app's tables written by plain SQL, captured
    by `projectionist serve billing`: changes/s end to end, and commit-to-visible latency with
    `min_lsn`, idle and under load."""
    from .cdc import CdcSettings, print_cdc, run_cdc
    from .orders import BenchmarkFailed

    settings = CdcSettings(changes=changes, runs=runs, samples=samples, writers=writers,
                           per_transaction=per_transaction, load_rate=load_rate, url=url)
    try:
        result = run_cdc(settings, progress=lambda line: errors.print(f"[dim]{line}"))
    except (BenchmarkFailed, ProjectionistError) as error:
        errors.print(f"[bold red]benchmark failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    print_cdc(console, result)
    if json_path is not None:
        report.write_json(json_path, result)
        console.print(f"figures written to {json_path}")
    if not result["verification"]["passed"]:
        errors.print("[bold red]the read model does not match the tables[/]")
        raise typer.Exit(1)


@bench_cli.command("scale")
def scale(
    backend: BackendOption = Backend.postgresql,
    url: UrlOption = None,
    events: Annotated[int, typer.Option("--events", min=1,
                                        help="N: events in the log each APPLY cell projects.")
                      ] = 100_000,
    duration: Annotated[float, typer.Option("--duration", min=0.5,
                                            help="Seconds per QUERY cell.")] = 10.0,
    runs: Annotated[int, typer.Option("--runs", min=1,
                                      help="Runs on fresh databases; figures are medians.")] = 1,
    json_path: JsonOption = None,
    directory: DirOption = None,
) -> None:
    """Projection apply with 1, 2 and 4 partitions over 1 and 2 projector processes, and
    queries over 1, 2 and 4 query processes: events/s, queries/s, and CPU per each."""
    from .orders import BenchmarkFailed
    from .scale import ScaleSettings, print_scale, run_scale

    settings = ScaleSettings(backend=backend.value, events=events, duration_s=duration,
                             runs=runs, url=url, directory=directory)
    try:
        result = run_scale(settings, progress=lambda line: errors.print(f"[dim]{line}"))
    except (BenchmarkFailed, ProjectionistError) as error:
        errors.print(f"[bold red]benchmark failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    print_scale(console, result)
    if json_path is not None:
        report.write_json(json_path, result)
        console.print(f"figures written to {json_path}")
    if not result["verification"]["passed"]:
        errors.print("[bold red]a read model does not match the workload[/]")
        raise typer.Exit(1)
