"""What every command shares: the app argument, store options, consoles and error output."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..app import App
from ..auth import SECRET_FILE, TokenAuthority, secret_known
from ..engines import redact
from ..errors import ConfigurationError, ProjectionistError

DEFAULT_APP = "shop"
APPS_GROUP = "projectionist.apps"
"""Entry points naming apps by a short name (the bundled demos: shop)."""

console = Console()
errors = Console(stderr=True)

AppOption = Annotated[
    str,
    typer.Argument(
        envvar="PROJECTIONIST_APP",
        help="The app, as module:attribute, or the short name of an installed one (shop);"
        " the project file's app sets its default.",
    ),
]
StoreOption = Annotated[
    str, typer.Option("--store", envvar="PROJECTIONIST_STORE", help="Write store URL.")
]
ReadStoreOption = Annotated[
    str | None,
    typer.Option(
        "--read-store",
        envvar="PROJECTIONIST_READ_STORE",
        help="Read store URL (default: a SQLite file beside a SQLite write store).",
    ),
]
EventsOption = Annotated[
    str | None,
    typer.Option(
        "--events",
        envvar="PROJECTIONIST_EVENTS",
        help="An event feed, nats://host:4222?stream=NAME (JetStream) or"
        " redis://host:6379/0?stream=NAME (Redis Streams): command processes"
        " relay the log to it, projector processes read their events from it.",
    ),
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
                f"the demo app {path!r} is not installed: run pip install -e '.[examples]'"
                " in the projectionist repository"
            )
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


_BUNDLED_APPS = ("shop", "billing")


def secret_directory(store: str) -> Path:
    """Where a generated secret is kept: beside a SQLite store, else the working directory."""
    if _is_sqlite_file(store):
        return Path(store.removeprefix("sqlite:///")).expanduser().resolve().parent
    return Path.cwd()


def _is_sqlite_file(store: str) -> bool:
    return store.startswith("sqlite:///") and not store.endswith(":memory:")


def authority_for(store: str) -> TokenAuthority:
    """The server's authority: its configured keys, or a secret generated beside `store`."""
    return TokenAuthority.from_environment(secret_directory(store))


def issuing_authority(store: str) -> TokenAuthority:
    """The authority of the server of `store`, whose secret is never generated here.

    A secret made up by this process would sign tokens the server refuses with 401.
    """
    directory = secret_directory(store)
    if not secret_known(directory):
        where = (
            f"beside the store {redact(store)}"
            if _is_sqlite_file(store)
            else "in the working directory, where a server without a SQLite store keeps it"
        )
        raise ConfigurationError(
            f"no token secret is known: PROJECTIONIST_SECRET is not set and there is no"
            f" {directory / SECRET_FILE} ({where}); set PROJECTIONIST_SECRET"
            " to the server's secret, or pass the --store the server uses so that the secret"
            " file beside it is found"
        )
    return TokenAuthority.from_environment(directory, create=False)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Start-up errors as one line, without a traceback."""
    try:
        yield
    except ProjectionistError as error:
        errors.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
