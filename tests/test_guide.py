"""docs/guide.md's walk-throughs run as written and answer what the guide says they answer.

The code blocks are read from the guide itself, so the test fails when the guide's code stops
working: "A complete app in one file" (in process on SQLite and PostgreSQL, over HTTP against
its curl transcript, and its own test), the bank of "Event-sourced aggregates", the shop example
of "The Runtime" and the test of "Testing an app".
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import uvicorn

from projectionist import HandlerFailed, ProjectionistError, Refused, Runtime, State
from projectionist.http import create_http_app
from tests.helpers import free_port

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
COMPLETE_APP = "A complete app in one file"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


# Reading the guide

def section(title: str) -> str:
    """The text under the heading `title`, up to the next heading of the same or a higher level."""
    text = GUIDE.read_text()
    heading = re.search(rf"^(#+) {re.escape(title)}\n", text, re.MULTILINE)
    assert heading is not None, f"docs/guide.md has no section {title!r}"
    level = len(heading.group(1))
    rest = text[heading.end():]
    # Headings inside code blocks (a "# comment" line of a shell block) are not headings.
    heading_or_code = rf"^```.*?^```$|^(#{{1,{level}}}) "
    for match in re.finditer(heading_or_code, rest, re.MULTILINE | re.DOTALL):
        if match.group(1):
            return rest[: match.start()]
    return rest


def blocks(title: str, language: str) -> list[str]:
    """The code blocks of one language in the section `title`, in order."""
    found = [code for lang, code in FENCE.findall(section(title)) if lang == language]
    assert found, f"the section {title!r} of docs/guide.md has no {language} block"
    return found


def module_from(code: str, directory: Path, name: str) -> ModuleType:
    """Imports `code` as the module `name`, from a file in `directory`."""
    path = directory / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture
def import_guide_code(tmp_path: Path) -> Iterator[Any]:
    """Imports guide code under a module name of its own, forgotten after the test."""
    names: list[str] = []

    def load(code: str, prefix: str) -> ModuleType:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        names.append(name)
        return module_from(code, tmp_path, name)

    yield load
    for name in names:
        sys.modules.pop(name, None)


# The curl transcript of the complete app

@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    body: dict[str, Any] | None
    answer: Any


def transcript(title: str) -> list[Exchange]:
    """Each `$ curl` of the section's shell blocks, with the JSON the guide shows after it."""
    exchanges = []
    for block in blocks(title, "sh"):
        lines = block.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("$ curl "):
                continue
            words = shlex.split(line[2:])
            [url] = [word for word in words if "localhost:8000" in word]
            body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
            answer = json.loads(lines[index + 1])
            path = url.split("localhost:8000", 1)[1]
            exchanges.append(Exchange("POST" if body is not None else "GET", path, body, answer))
    assert exchanges, f"the section {title!r} shows no curl"
    return exchanges


def matches(expected: Any, actual: Any) -> bool:
    """Equal, where a string of the guide holding "..." stands for any string (an id)."""
    if isinstance(expected, str) and "..." in expected:
        return isinstance(actual, str)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(value, actual[key]) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual) and type(expected) is type(actual)


@contextmanager
def served_without_auth(runtime: Runtime) -> Iterator[httpx.Client]:
    """The runtime's HTTP API as `PROJECTIONIST_AUTH=off projectionist serve` has it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_http_app(runtime, authority=None),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30.0
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(10)


# A complete app in one file

def test_the_complete_app_answers_what_the_guide_shows(
    import_guide_code: Any, store_urls: tuple[str, str]
) -> None:
    library = import_guide_code(blocks(COMPLETE_APP, "python")[0], "library")
    exchanges = transcript(COMPLETE_APP)
    write, read = store_urls
    runtime = Runtime(library.app, store=write, read_store=read)
    try:
        for exchange in exchanges:
            kind, type_name = urlsplit(exchange.path).path.strip("/").split("/")
            if kind == "commands":
                command = getattr(library, type_name)(**exchange.body)
                if "error" in exchange.answer:
                    assert exchange.answer["error"] == "refused"
                    with pytest.raises(Refused) as refused:
                        runtime.execute(command)
                    assert refused.value.detail == exchange.answer["detail"]
                    continue
                result = runtime.execute(command)
                runtime.catch_up(strict=True)
                answer = {
                    "command_id": result.command_id,
                    "position": result.position,
                    "events": [dataclasses.asdict(event) for event in result.events],
                }
            else:
                parameters = dict(parse_qsl(urlsplit(exchange.path).query, strict_parsing=True))
                min_position = parameters.pop("min_position", None)
                query = getattr(library, type_name)(**parameters)
                try:
                    answer = runtime.ask(
                        query,
                        min_position=int(min_position) if min_position is not None else None,
                    ).to_json()
                except ProjectionistError as error:  # NotFound: its code and detail, as HTTP has
                    answer = {"error": error.code, "detail": error.detail}
            assert matches(exchange.answer, answer), (exchange, answer)
        assert [row.state for row in runtime.status()] == [State.LIVE]
    finally:
        runtime.stop()


def test_the_complete_app_serves_the_guides_curl_transcript(
    import_guide_code: Any, store_urls: tuple[str, str]
) -> None:
    library = import_guide_code(blocks(COMPLETE_APP, "python")[0], "library")
    write, read = store_urls
    runtime = Runtime(library.app, store=write, read_store=read)
    try:
        runtime.install()
        with served_without_auth(runtime) as http:
            for exchange in transcript(COMPLETE_APP):
                if exchange.method == "POST":
                    response = http.post(exchange.path, json=exchange.body)
                    runtime.catch_up(strict=True)  # the server of the guide runs its projector
                else:
                    response = http.get(exchange.path)
                expected_status = {"refused": 409, "not_found": 404}.get(
                    exchange.answer.get("error"), 200
                )
                assert response.status_code == expected_status, response.text
                assert matches(exchange.answer, response.json()), (exchange, response.text)
    finally:
        runtime.stop()


def test_a_typo_in_the_complete_apps_projection_fails_strict_catch_up(
    import_guide_code: Any, tmp_path: Path
) -> None:
    code = blocks(COMPLETE_APP, "python")[0]
    handler = code[code.index("@shelf.on(BookAdded)"):code.index("@app.query(GetBook")]
    assert "event.title" in handler, "the guide's projection handler changed: update this test"
    typo = code.replace(handler, handler.replace("event.title", "event.titel"))
    library = import_guide_code(typo, "library")
    runtime = Runtime(library.app, store=f"sqlite:///{tmp_path / 'typo.db'}")
    try:
        runtime.execute(library.AddBook(isbn="978-1", title="Emma"))
        with pytest.raises(HandlerFailed) as failed:
            runtime.catch_up(strict=True)
        assert isinstance(failed.value.__cause__, AttributeError)
        assert "titel" in str(failed.value.__cause__)
        assert runtime.list_dead_letters() == []
        # What the guide warns of: without strict, the event is parked and the test goes on.
        runtime.catch_up()
        [parked] = runtime.list_dead_letters("shelf")
        assert parked.type == "BookAdded"
    finally:
        runtime.stop()


def test_the_guides_own_tests_pass(tmp_path: Path) -> None:
    """The library's test of "A complete app in one file" and the shop's of "Testing an app",
    run by pytest as a user would, beside library.py."""
    (tmp_path / "library.py").write_text(blocks(COMPLETE_APP, "python")[0])
    [library_test] = blocks(COMPLETE_APP, "python")[1:]
    (tmp_path / "test_library.py").write_text(library_test)
    [shop_test] = blocks("Testing an app", "python")
    (tmp_path / "test_shop.py").write_text(shop_test)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "test_library.py", "test_shop.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout


# Event-sourced aggregates

def test_the_bank_of_the_aggregates_section_does_what_the_guide_says(
    import_guide_code: Any, store_urls: tuple[str, str]
) -> None:
    [code] = blocks("Event-sourced aggregates", "python")
    bank = import_guide_code(code, "bank")
    write, read = store_urls
    runtime = Runtime(bank.app, store=write, read_store=read)
    try:
        deposited = runtime.execute(bank.Deposit(account_id="a1", amount=100))
        assert [(e.type, e.stream, e.version) for e in deposited.events] == [
            ("Deposited", "account-a1", 1)]
        withdrawn = runtime.execute(bank.Withdraw(account_id="a1", amount=30))
        assert [(e.type, e.stream, e.version) for e in withdrawn.events] == [
            ("Withdrawn", "account-a1", 2)]
        with pytest.raises(Refused) as refused:
            runtime.execute(bank.Withdraw(account_id="a1", amount=100))
        assert refused.value.detail == "account 'a1' holds 70"
        with pytest.raises(Refused) as refused:
            runtime.execute(bank.Withdraw(account_id="a2", amount=1))
        assert refused.value.detail == "there is no account 'a2'"
        runtime.catch_up(strict=True)
    finally:
        runtime.stop()
    # A new process decodes the stream without app.events(...): load registers its types.
    fresh = import_guide_code(code, "bank")
    again = Runtime(fresh.app, store=write, read_store=read)
    try:
        with pytest.raises(Refused, match="holds 70"):
            again.execute(fresh.Withdraw(account_id="a1", amount=71))
    finally:
        again.stop()


# The Runtime

def test_the_runtime_example_prints_what_the_guide_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example, signature = blocks("The Runtime", "python")[:2]
    printed = [line.strip().removeprefix("# ") for line in example.splitlines()
               if line.strip().startswith("# ") and "print(" not in line]
    assert printed, "the Runtime example shows no output"
    monkeypatch.chdir(tmp_path)  # its SQLite files go to the working directory
    exec(compile(example, "docs/guide.md (The Runtime)", "exec"), {"__name__": "guide_runtime"})
    assert capsys.readouterr().out.splitlines() == printed[-1:]
    # The signature the guide states is the Runtime's: the same parameters, the same defaults.
    stated = re.sub(r"\s+", " ", signature.strip())
    parameters = inspect.signature(Runtime).parameters
    assert set(re.findall(r"(\w+)=", stated)) == set(parameters) - {"app"}
    for name, parameter in parameters.items():
        if name == "app":
            continue
        assert f"{name}=" in stated, f"the guide's Runtime(...) lacks {name}"
        if parameter.default is not None and isinstance(parameter.default, int | float):
            assert re.search(rf"{name}={parameter.default!r}\b", stated), name


def test_the_runtime_methods_the_guide_lists_take_the_parameters_it_says() -> None:
    table = [line for line in section("The Runtime").splitlines() if line.startswith("| `")]
    stated = {
        name: arguments
        for row in table
        for name, arguments in re.findall(r"`(\w+)\(([^)`]*)\)`", row.split(" | ")[0])
        if name != "Runtime"
    }
    assert {"catch_up", "swap", "execute", "ask"} <= set(stated)
    for name, arguments in stated.items():
        said = [part.split("=")[0].strip() for part in arguments.split(",") if part.strip()]
        actual: list[str] = []
        for parameter in list(inspect.signature(getattr(Runtime, name)).parameters.values())[1:]:
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in actual:
                actual.append("*")
            actual.append(parameter.name)
        assert said == actual, f"the guide says {name}({arguments})"
