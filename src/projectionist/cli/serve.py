"""Serving an app over HTTP, and the tokens to call it with."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from ..auth import ALL_SCOPES, READ_ONLY_SCOPES, TokenAuthority, auth_enabled
from ..commands.admission import MAX_PENDING_COMMANDS
from ..correlation import CorrelationFilter
from ..runtime import DEFAULT_STORE, Runtime
from .common import (
    DEFAULT_APP,
    AppOption,
    EventsOption,
    ReadStoreOption,
    StoreOption,
    authority_for,
    console,
    friendly_errors,
    issuing_authority,
    load_app,
)


# long: one parameter per command-line option
def serve(
    app_path: AppOption = DEFAULT_APP,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    roles: Annotated[
        str | None,
        typer.Option(
            "--roles",
            help="Any of command,projector,query,capture (default: the first three, and"
            " capture when the app captures tables on PostgreSQL).",
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    read_store: ReadStoreOption = None,
    events: EventsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print no tokens.")] = False,
    pool_size: Annotated[
        int, typer.Option("--pool-size", min=1, max=200, help="Connections per store.")
    ] = 5,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            min=1.0,
            max=300.0,
            help="Seconds a projector's lease lasts; another projector takes over within it.",
        ),
    ] = 5.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Events per projection batch.")
    ] = 1000,
    idempotency_ttl: Annotated[
        float,
        typer.Option(
            "--idempotency-ttl",
            min=0.0,
            help="Seconds an Idempotency-Key's answer is kept for retries (0: forever).",
        ),
    ] = 7 * 86400.0,
    max_pending_commands: Annotated[
        int,
        typer.Option(
            "--max-pending-commands",
            min=1,
            help="Commands this process holds at once; past it, 503 with Retry-After at once.",
        ),
    ] = MAX_PENDING_COMMANDS,
    upgrade: Annotated[
        str,
        typer.Option(
            "--upgrade",
            envvar="PROJECTIONIST_UPGRADE",
            help="A store whose framework tables an older release made: auto upgrades it at"
            " start, refuse stops (then run projectionist migrate).",
        ),
    ] = "auto",
) -> None:
    """Serve an app over HTTP, running the chosen roles in this process."""
    import uvicorn

    from ..http import create_http_app

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(CorrelationFilter())
    with friendly_errors():
        app = load_app(app_path)
        runtime = Runtime(
            app,
            store=store,
            read_store=read_store,
            roles=roles,
            pool_size=pool_size,
            lease_ttl_s=lease_ttl,
            batch_size=batch_size,
            events=events,
            idempotency_ttl_s=idempotency_ttl or None,
            upgrade=upgrade,
        )
        authority = authority_for(store) if auth_enabled() else None
        runtime.start()
    try:
        api = create_http_app(
            runtime, authority=authority, max_pending_commands=max_pending_commands
        )
        if not quiet:
            _print_banner(runtime, host, port, authority)
        uvicorn.run(api, host=host, port=port, log_level="warning")
    finally:
        runtime.stop()


def token(
    scope: Annotated[list[str], typer.Option("--scope", help="A scope; repeat for more.")],
    sub: Annotated[str, typer.Option("--sub", help="The token's subject.")] = "user",
    ttl: Annotated[int, typer.Option("--ttl", help="Seconds until it expires.")] = 3600,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Print a bearer token signed with the server's secret, which it never generates."""
    with friendly_errors():
        scopes = [part for item in scope for part in item.split()]
        print(issuing_authority(store).issue(scopes, subject=sub, ttl_s=ttl))


def _print_banner(runtime: Runtime, host: str, port: int, authority: TokenAuthority | None) -> None:
    base = f"http://{host}:{port}"
    console.print(
        f"[bold]projectionist[/] serving [cyan]{runtime.app.name}[/] at {base}"
        f"  roles: {', '.join(runtime.roles)}"
    )
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
        console.print(
            "  [yellow]PROJECTIONIST_SECRET is not set: this process signs with a secret"
            " of its own, which other processes and hosts do not share[/]"
        )
    if not authority.can_issue:
        console.print("  tokens: verified with the configured public key")
        return
    admin = authority.issue(ALL_SCOPES, subject="admin", ttl_s=24 * 3600)
    reader = authority.issue(READ_ONLY_SCOPES, subject="reader", ttl_s=24 * 3600)
    console.print(f"  admin token:     {admin}", soft_wrap=True)
    console.print(f"  read-only token: {reader}", soft_wrap=True)
