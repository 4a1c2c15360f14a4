"""Correlation over HTTP: X-Request-ID or traceparent becomes the command's correlation id, in
its events' metadata, the X-Request-ID answer header and the request's log lines."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from in_process import InProcess

from projectionist import (
    App,
    Command,
    CorrelationFilter,
    Event,
    EventMetadata,
    Refused,
    Runtime,
    UnitOfWork,
)
from projectionist.http import create_http_app

log = logging.getLogger("tests.correlation")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
FRESH = re.compile(r"[0-9a-f]{32}")


class Note(Command):
    text: str


class Noted(Event):
    text: str


def notes_app() -> App:
    app = App("correlated")

    @app.command(Note)
    def note(command: Note, uow: UnitOfWork) -> None:
        log.info("noting %s", command.text)
        if command.text == "refuse":
            raise Refused("this note is refused")
        uow.record(f"note-{command.text}", Noted(text=command.text))

    return app


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    running = Runtime(notes_app(), store=f"sqlite:///{tmp_path / 'notes.db'}", roles="command")
    running.install()
    yield running
    running.stop()


@pytest.fixture
def http(runtime: Runtime) -> InProcess:
    return InProcess(create_http_app(runtime, authority=None))


class Recorder(logging.Handler):
    """Keeps the records it handles, after its filters (CorrelationFilter) ran on them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.addFilter(CorrelationFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.INFO)
    recorder = Recorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        root.removeHandler(recorder)


def correlation_of(runtime: Runtime, position: int) -> str:
    assert runtime.log is not None
    [stored] = runtime.log.read(position - 1, 1)
    return EventMetadata.from_json(stored.metadata).correlation_id


def logged(records: list[logging.LogRecord], text: str) -> logging.LogRecord:
    [record] = [r for r in records if r.getMessage() == text]
    return record


def test_x_request_id_is_the_correlation_id_of_the_events_the_answer_and_the_log(
    runtime: Runtime, http: InProcess, records: list[logging.LogRecord]
) -> None:
    answer = http.post("/commands/Note", json={"text": "a"}, headers={"X-Request-ID": "req-42"})
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "req-42"
    assert correlation_of(runtime, answer.json()["position"]) == "req-42"
    assert logged(records, "noting a").correlation_id == "req-42"  # type: ignore[attr-defined]


def test_a_traceparents_trace_id_is_the_correlation_id(
    runtime: Runtime, http: InProcess
) -> None:
    answer = http.post("/commands/Note", json={"text": "b"}, headers={"traceparent": TRACEPARENT})
    assert answer.headers["X-Request-ID"] == TRACE
    assert correlation_of(runtime, answer.json()["position"]) == TRACE


def test_x_request_id_wins_over_traceparent(runtime: Runtime, http: InProcess) -> None:
    answer = http.post("/commands/Note", json={"text": "c"},
                       headers={"traceparent": TRACEPARENT, "X-Request-ID": "mine"})
    assert answer.headers["X-Request-ID"] == "mine"
    assert correlation_of(runtime, answer.json()["position"]) == "mine"


@pytest.mark.parametrize("headers", [
    {"traceparent": "00-not-a-trace-01"},
    {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},
    {"traceparent": TRACEPARENT, "X-Request-ID": "x" * 201},
    {"X-Request-ID": "has space"},
    {},
], ids=["malformed-traceparent", "zero-trace-id", "request-id-too-long", "request-id-space",
        "no-header"])
def test_without_a_usable_id_the_request_gets_a_fresh_one(
    runtime: Runtime, http: InProcess, headers: dict[str, str]
) -> None:
    first = http.post("/commands/Note", json={"text": "d"}, headers=headers)
    second = http.post("/commands/Note", json={"text": "e"}, headers=headers)
    assert first.status_code == second.status_code == 200
    given = first.headers["X-Request-ID"]
    if "X-Request-ID" in headers and "traceparent" in headers:
        assert given == TRACE  # the trace id, after an unusable X-Request-ID
        return
    assert FRESH.fullmatch(given)
    assert second.headers["X-Request-ID"] != given
    assert correlation_of(runtime, first.json()["position"]) == given


def test_refusals_and_errors_echo_the_request_id_and_log_it(
    http: InProcess, records: list[logging.LogRecord]
) -> None:
    refused = http.post("/commands/Note", json={"text": "refuse"},
                        headers={"X-Request-ID": "req-refused"})
    assert refused.status_code == 409
    assert refused.headers["X-Request-ID"] == "req-refused"
    audit = [r for r in records if r.name == "projectionist.audit"]
    assert [r.correlation_id for r in audit] == ["req-refused"]  # type: ignore[attr-defined]
    invalid = http.post("/commands/Note", json={"text": 5}, headers={"X-Request-ID": "req-422"})
    assert invalid.status_code == 422
    assert invalid.headers["X-Request-ID"] == "req-422"
    assert http.get("/healthz", headers={"X-Request-ID": "probe"}).headers["X-Request-ID"] \
        == "probe"


def test_each_handler_logs_with_its_own_commands_id_when_commands_share_a_commit(
    runtime: Runtime, records: list[logging.LogRecord]
) -> None:
    callers = 8
    barrier = threading.Barrier(callers)

    def send(index: int) -> None:
        barrier.wait()
        runtime.execute(Note(text=f"n{index}"), correlation_id=f"id-{index}")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(callers):
        record = logged(records, f"noting n{index}")
        assert record.correlation_id == f"id-{index}"  # type: ignore[attr-defined]


def test_a_command_without_a_correlation_id_is_correlated_by_its_own_id(
    runtime: Runtime, records: list[logging.LogRecord]
) -> None:
    result = runtime.execute(Note(text="alone"))
    assert correlation_of(runtime, result.position) == result.command_id
    assert logged(records, "noting alone").correlation_id == result.command_id  # type: ignore[attr-defined]
