"""The package's architecture: the import graph of src/projectionist, read from the source.

Every import counts, wherever it is written: at module level, under `if TYPE_CHECKING:`, inside
a function. The demo apps and the benchmarks are distributions of their own, found through entry
points only.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from projectionist import App, ProjectionistError
from projectionist.cli import load_app
from tests.helpers import projectionist_command

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "projectionist"
FORBIDDEN_DISTRIBUTIONS = ("projectionist_bench", "projectionist_examples")
BENCH_SUBCOMMANDS = ("orders", "http", "rebuild", "feeds")

Graph = dict[str, set[str]]


# Reading the graph


def modules_under(src: Path, package: str) -> dict[str, Path]:
    """Every module of the package under `src`, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The dotted names `module` imports, relative imports resolved.

    `from pkg import name` is an import of `pkg.name` when that is a module, else of `pkg`.
    Names outside the package are kept as written (for the rules on other distributions).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):  # every import, at any depth: TYPE_CHECKING blocks included
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 > len(parts) - 1:
                    raise AssertionError(f"{path}: a relative import beyond the top package")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in modules else base)
        elif (isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)  # importlib.import_module("literal")
    return names


def _is_dynamic_import(func: ast.expr) -> bool:
    return ((isinstance(func, ast.Attribute) and func.attr == "import_module")
            or (isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}))


def import_graph(src: Path, package: str) -> tuple[Graph, dict[str, set[str]]]:
    """(edges between the package's modules, every name each module imports)."""
    modules = modules_under(src, package)
    everything = {name: imported_names(name, path, modules) for name, path in modules.items()}
    internal = {name: {target for target in targets if target in modules}
                for name, targets in everything.items()}
    return internal, everything


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle, as [a, b, ..., a], or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if colour[start] != white:
            continue
        colour[start] = grey
        path = [start]
        stack = [iter(sorted(graph[start]))]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                colour[path.pop()] = black
                continue
            if colour.get(target, black) == grey:
                return [*path[path.index(target):], target]
            if colour.get(target) == white:
                colour[target] = grey
                path.append(target)
                stack.append(iter(sorted(graph[target])))
    return None


def offending(everything: dict[str, set[str]], sources: Iterable[str],
              forbidden: Iterable[str]) -> list[str]:
    """'module -> import' for each import of `sources` that is, or is under, a forbidden name."""
    forbidden = tuple(forbidden)
    return sorted(
        f"{module} -> {target}"
        for module in sources
        for target in everything[module]
        if any(target == name or target.startswith(name + ".") for name in forbidden)
    )


def in_package(everything: dict[str, set[str]], package: str) -> list[str]:
    return [m for m in everything if m == package or m.startswith(package + ".")]


@pytest.fixture(scope="module")
def graph() -> tuple[Graph, dict[str, set[str]]]:
    return import_graph(SRC, PACKAGE)


# The reader itself finds what it must


def test_the_graph_reader_resolves_relative_and_type_checking_imports_and_finds_cycles(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import C\n")
    (pkg / "c.py").write_text("def f():\n    from . import a\n")
    internal, _ = import_graph(tmp_path, "pkg")
    assert internal["pkg.a"] == {"pkg.sub.b"}
    assert internal["pkg.sub.b"] == {"pkg.c"}
    assert internal["pkg.c"] == {"pkg.a"}
    assert find_cycle(internal) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("")
    assert find_cycle(import_graph(tmp_path, "pkg")[0]) is None


def test_the_graph_covers_the_whole_package(graph: tuple[Graph, dict[str, set[str]]]) -> None:
    internal, _ = graph
    for module in ("projectionist.cli", "projectionist.readstore.checkpoints",
                   "projectionist.projections.projector", "projectionist.http.app",
                   "projectionist.eventlog.base", "projectionist.wakeups.postgres"):
        assert module in internal
    # It sees edges the rules below rely on, so an empty graph cannot pass them.
    assert "projectionist.readstore.checkpoints" in internal["projectionist.projections.builds"]
    assert "projectionist.edge" in internal["projectionist.http.app"]


# The rules


def test_there_are_no_import_cycles_between_modules(
    graph: tuple[Graph, dict[str, set[str]]],
) -> None:
    cycle = find_cycle(graph[0])
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_read_store_imports_no_layer_above_it(
    graph: tuple[Graph, dict[str, set[str]]],
) -> None:
    _, everything = graph
    sources = in_package(everything, "projectionist.readstore")
    assert "projectionist.readstore.checkpoints" in sources
    assert offending(everything, sources, [
        "projectionist.projections", "projectionist.queries", "projectionist.runtime",
        "projectionist.http",
    ]) == []


def test_queries_do_not_import_projections(graph: tuple[Graph, dict[str, set[str]]]) -> None:
    _, everything = graph
    sources = in_package(everything, "projectionist.queries")
    assert "projectionist.queries.dispatch" in sources
    assert offending(everything, sources, ["projectionist.projections"]) == []


@pytest.mark.parametrize(("port", "backends"), [
    ("projectionist.eventlog.base",
     ["projectionist.eventlog.sqlite", "projectionist.eventlog.postgres"]),
    ("projectionist.feeds.base", ["projectionist.feeds.jetstream", "projectionist.feeds.redis"]),
    ("projectionist.wakeups.base", ["projectionist.wakeups.postgres"]),
])
def test_port_modules_do_not_import_their_own_backends(
    graph: tuple[Graph, dict[str, set[str]]], port: str, backends: list[str],
) -> None:
    _, everything = graph
    assert offending(everything, [port], backends) == []


def test_the_package_imports_neither_the_benchmarks_nor_the_demo_apps(
    graph: tuple[Graph, dict[str, set[str]]],
) -> None:
    _, everything = graph
    assert offending(everything, everything, FORBIDDEN_DISTRIBUTIONS) == []
    assert not (SRC / PACKAGE / "bench").exists()


# The command line finds the others through entry points, when asked


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env["COLUMNS"] = "200"  # rich must not wrap the command names away
    return env


def test_importing_the_cli_does_not_import_the_benchmarks() -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "import projectionist.cli, sys; print('projectionist_bench' in sys.modules,"
         " 'projectionist_examples' in sys.modules)"],
        cwd=REPO, env=_environment(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_projectionist_bench_help_lists_the_benchmarks() -> None:
    done = subprocess.run(
        [*projectionist_command(), "bench", "--help"], cwd=REPO, env=_environment(),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage: projectionist bench" in done.stdout
    listed = {line.strip("│ ").split(" ", 1)[0] for line in done.stdout.splitlines()}
    for name in BENCH_SUBCOMMANDS:
        assert name in listed, f"{name} is not listed:\n{done.stdout}"


def test_load_app_resolves_an_installed_short_name() -> None:
    from projectionist_examples.shop import app as shop

    loaded = load_app("shop")
    assert isinstance(loaded, App)
    assert loaded is shop
    assert loaded.name == "shop"


def test_load_app_of_an_unknown_short_name_is_a_projectionist_error() -> None:
    with pytest.raises(ProjectionistError):
        load_app("nope")
