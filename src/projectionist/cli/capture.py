"""Operating capture: snapshot a captured table again."""

from __future__ import annotations

from typing import Annotated

import typer

from ..capture.resnapshot import resnapshot
from ..runtime import DEFAULT_STORE
from ..stores import Store
from .common import DEFAULT_APP, AppOption, StoreOption, console, friendly_errors, load_app

capture_cli = typer.Typer(help="Capture of the app's tables: snapshots.", no_args_is_help=True)


@capture_cli.command("resnapshot")
def resnapshot_command(
    table: Annotated[str, typer.Argument(help="A captured table.")],
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    wait: Annotated[
        float, typer.Option("--wait", min=0.0, help="Seconds to wait for a capture process.")
    ] = 30.0,
) -> None:
    """Append the table's current rows as `insert` events, so a rebuild sees every one."""
    with friendly_errors():
        app = load_app(app_path)
        opened = Store(store)
        try:
            appended = resnapshot(opened, app, table, wait_s=wait)
        finally:
            opened.dispose()
    if appended is None:
        console.print(
            f"asked for a snapshot of {table}; no capture process took it within {wait:g} s,"
            " the capture takes it when it runs"
        )
        raise typer.Exit(1)
    console.print(f"snapshotted {table}: {appended} rows appended")
