"""Admission: past its limit of pending commands, a command process answers 503 at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from projectionist import App, Command, Event, Runtime, UnitOfWork
from projectionist.commands.admission import Admission
from projectionist.errors import ConfigurationError
from projectionist.http import create_http_app
from tests.helpers import free_port


class Slow(Command):
    id: str


class SlowDone(Event):
    id: str


def slow_app(release: threading.Event, entered: threading.Event) -> App:
    app = App("slow")

    @app.command(Slow)
    def slow(command: Slow, uow: UnitOfWork) -> None:
        entered.set()
        release.wait(10)
        uow.record(f"slow-{command.id}", SlowDone(id=command.id))

    app.events(SlowDone)
    return app


@pytest.fixture
def served(
    store_urls: tuple[str, str],
) -> Iterator[tuple[str, Runtime, threading.Event, threading.Event]]:
    release, entered = threading.Event(), threading.Event()
    write, read = store_urls
    runtime = Runtime(slow_app(release, entered), store=write, read_store=read, roles=["command"])
    runtime.start()
    port = free_port()
    api = create_http_app(runtime, authority=None, max_pending_commands=2)
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", runtime, release, entered
    finally:
        release.set()
        server.should_exit = True
        thread.join(10)
        runtime.stop()


def test_past_the_limit_commands_are_refused_at_once_and_the_held_ones_complete(
    served: tuple[str, Runtime, threading.Event, threading.Event],
) -> None:
    url, runtime, release, entered = served
    answers: dict[str, httpx.Response] = {}

    def send(i: int) -> None:
        answers[f"held-{i}"] = httpx.post(f"{url}/commands/Slow", json={"id": str(i)}, timeout=20)

    held = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    held[0].start()
    assert entered.wait(10)  # the first runs its handler, which waits for the release
    held[1].start()
    time.sleep(0.5)  # the second is queued behind it, for the group commit
    began = time.perf_counter()
    answer = httpx.post(f"{url}/commands/Slow", json={"id": "extra"}, timeout=20)
    took = time.perf_counter() - began
    assert answer.status_code == 503
    assert answer.json()["error"] == "overloaded"
    assert "--max-pending-commands" in answer.json()["detail"]
    assert answer.headers["Retry-After"] == "1"
    assert took < 1.0  # answered at once, not after the held commands
    release.set()
    for thread in held:
        thread.join(20)
    assert [answers[f"held-{i}"].status_code for i in range(2)] == [200, 200]
    assert runtime.log is not None
    assert sorted(e.stream for e in runtime.log.read(0, 100)) == ["slow-0", "slow-1"]
    after = httpx.post(f"{url}/commands/Slow", json={"id": "later"}, timeout=20)
    assert after.status_code == 200


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_pending_commands must be 1 or more"):
        Admission(0)
