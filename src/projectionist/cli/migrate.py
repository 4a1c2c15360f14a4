"""Upgrading the framework's tables of a store made by an older release."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from .. import migrations
from ..migrations import StoreKind
from ..runtime import DEFAULT_STORE
from ..stores import Store, default_read_store
from .common import (
    DEFAULT_APP,
    AppOption,
    ReadStoreOption,
    StoreOption,
    console,
    friendly_errors,
    load_app,
)


def migrate(
    app_path: AppOption = DEFAULT_APP,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change, and change nothing.")
    ] = False,
) -> None:
    """Upgrade the framework's tables in the write and read stores to this release's version."""
    with friendly_errors():
        app = load_app(app_path)
        console.print(
            f"[bold]{escape(app.name)}[/]: the framework's tables are at version"
            f" {migrations.CURRENT} in this release"
        )
        for kind, url in ((StoreKind.WRITE, store), (StoreKind.READ, read_store)):
            opened = Store(url or default_read_store(store), pool_size=1)
            try:
                if dry_run:
                    done = migrations.plan(opened, kind)
                else:
                    done = migrations.upgrade(opened, kind)
            finally:
                opened.dispose()
            _report(done, dry_run=dry_run)
        if dry_run:
            console.print("dry run: nothing was changed")


def _report(plan: migrations.Plan, *, dry_run: bool) -> None:
    console.print(escape(plan.describe()), soft_wrap=True)
    if plan.newer:
        return
    for migration in plan.migrations:
        verb = "would reach" if dry_run else "reached"
        summary = migration.summary(plan.kind)
        console.print(f"  {verb} {migration.version}: {escape(summary)}", soft_wrap=True)
