"""The project file: defaults for every command, from the working directory.

`[tool.projectionist]` of ./pyproject.toml, or the top level of ./projectionist.toml, may set
`app`, `store`, `read_store` and `events`. They are handed to the commands as Click's default
map, so an option on the command line wins, then its environment variable, then the project
file, then the built-in default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from typer.core import TyperGroup

from ..errors import ConfigurationError

PROJECT_FILE = "projectionist.toml"
PYPROJECT_FILE = "pyproject.toml"
PARAMETERS = {"app": "app_path", "store": "store", "read_store": "read_store", "events": "events"}
"""Each key of the project file, and the parameter of the commands it gives a default to."""


def project_settings(directory: Path) -> dict[str, str]:
    """The settings of the project file in `directory`; empty when there is none."""
    own = directory / PROJECT_FILE
    pyproject = directory / PYPROJECT_FILE
    tool = _tool_table(pyproject) if pyproject.is_file() else None
    if own.is_file():
        if tool is not None:
            raise ConfigurationError(
                f"both {own} and [tool.projectionist] of {pyproject} hold projectionist"
                " settings; keep one of them"
            )
        return _checked(_read(own), str(own))
    if tool is None:
        return {}
    return _checked(tool, f"[tool.projectionist] of {pyproject}")


def default_map(command: Any, settings: Mapping[str, str]) -> dict[str, Any]:
    """Click's default map of `command` and its subcommands, for the parameters each has."""
    # `command` is typed Any: the Click classes typer builds commands with are private to it.
    if isinstance(command, TyperGroup):
        return {
            name: default_map(subcommand, settings) for name, subcommand in command.commands.items()
        }
    names = {parameter.name for parameter in command.params}
    return {PARAMETERS[key]: value for key, value in settings.items() if PARAMETERS[key] in names}


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigurationError(f"{path} cannot be read: {error.strerror}") from None


def _tool_table(pyproject: Path) -> dict[str, Any] | None:
    """[tool.projectionist] of a pyproject.toml, or None when it has no such table."""
    try:
        text = pyproject.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    if "projectionist" not in text:
        return None  # another tool's file, valid or not, is none of this command's business
    tool = _read(pyproject).get("tool", {})
    table = tool.get("projectionist") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigurationError(f"tool.projectionist of {pyproject} must be a table")
    return table


def _checked(table: Mapping[str, Any], where: str) -> dict[str, str]:
    """The settings of `table`; a ConfigurationError names an unknown key or a bad value."""
    settings: dict[str, str] = {}
    for key, value in table.items():
        if key not in PARAMETERS:
            raise ConfigurationError(
                f"{where} has an unknown key {key!r}; the keys are {', '.join(PARAMETERS)}"
            )
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"{where}: {key} must be a non-empty string, not {value!r:.80}"
            )
        settings[key] = value
    return settings
