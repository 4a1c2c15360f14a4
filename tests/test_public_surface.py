"""The one public surface: `projectionist.__all__` is complete, sorted and importable."""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import projectionist
from projectionist import errors

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_every_name_in_all_exists() -> None:
    missing = [name for name in projectionist.__all__ if not hasattr(projectionist, name)]
    assert missing == []


def isort_style(name: str) -> tuple[int, list[int | str]]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then the rest; numbers sort naturally."""
    category = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    parts: list[int | str] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return category, parts


def test_all_is_sorted_constants_then_classes_then_functions() -> None:
    assert projectionist.__all__ == sorted(projectionist.__all__, key=isort_style)


def test_all_has_no_duplicates() -> None:
    assert len(projectionist.__all__) == len(set(projectionist.__all__))


def test_every_public_name_of_the_package_is_in_all() -> None:
    public = {
        name
        for name, value in vars(projectionist).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(projectionist.__all__) == set()


def test_every_error_is_exported() -> None:
    error_types = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.ProjectionistError)
    }
    assert error_types - set(projectionist.__all__) == set()


def test_exported_errors_are_the_classes_of_the_errors_module() -> None:
    for name in ("ConcurrencyError", "Refused", "NotFresh", "Forbidden"):
        assert getattr(projectionist, name) is getattr(errors, name)


def test_the_shop_example_needs_only_the_public_surface() -> None:
    imported: set[str] = set()
    for path in (EXAMPLES / "shop").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                assert not node.module.startswith("projectionist."), (
                    f"{path.name} imports from {node.module}; examples use `projectionist` only"
                )
                if node.module == "projectionist":
                    imported.update(alias.name for alias in node.names)
    assert imported, "the shop imports nothing from projectionist"
    assert imported - set(projectionist.__all__) == set()


def test_version_is_a_string() -> None:
    assert isinstance(projectionist.__version__, str)
    assert projectionist.__version__.count(".") >= 1
