"""Lag you can see: a projector paused on purpose shows in /metrics and /projections, stalls,
and recovers; commands and queries are counted by outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from projectionist import Runtime
from tests.helpers import wait_for
from tests.lifecycle.support import InProcessServer
from tests.notes import Notes

STALL_AFTER_S = 1.5

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: InProcessServer) -> Samples:
    response = server.http.get("/metrics", headers={})
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def projection(server: InProcessServer, name: str = "note_counts") -> dict[str, Any]:
    response = server.http.get("/projections")
    assert response.status_code == 200, response.text
    row: dict[str, Any] = next(r for r in response.json() if r["name"] == name)
    return row


@pytest.fixture
def served(store_urls: tuple[str, str]) -> Iterator[tuple[Runtime, InProcessServer]]:
    write, read = store_urls
    runtime = Runtime(Notes().app, store=write, read_store=read, stall_after_s=STALL_AFTER_S,
                      poll_interval_s=0.05)
    with runtime, InProcessServer(runtime) as server:
        yield runtime, server


def add_note(server: InProcessServer, text: str, **extra: object) -> int:
    response = server.http.post("/commands/AddNote", json={"stream": "s", "text": text, **extra})
    assert response.status_code in (200, 409), response.text
    return int(response.json().get("position", 0))


def test_lag_shows_while_the_projector_is_paused_then_stalls_and_clears(
    served: tuple[Runtime, InProcessServer],
) -> None:
    runtime, server = served
    first = add_note(server, "first")
    response = server.http.get("/queries/CountNotes", params={
        "stream": "s", "min_position": first, "wait_ms": 5000})
    assert response.status_code == 200
    assert projection(server)["state"] == "live"
    time.sleep(STALL_AFTER_S + 0.3)  # idle: caught up, checkpoint unmoved, and that is fine
    assert projection(server)["state"] == "live"

    runtime.pause_projector()
    last = 0
    for i in range(5):
        last = add_note(server, f"n{i}")
    behind = projection(server)
    # Behind for a moment only: catching up, not stalled (although the checkpoint is old).
    assert behind["state"] == "catching_up"
    assert (behind["position"], behind["head"], behind["lag_events"]) == (first, last, 5)
    assert behind["lag_ms"] > 0
    metrics = scrape(server)
    labels = {"projection": "note_counts", "version": "1"}
    assert sample(metrics, "projectionist_projection_lag_events", **labels) == 5
    assert sample(metrics, "projectionist_projection_lag_seconds", **labels) > 0
    assert sample(metrics, "projectionist_projection_position", **labels) == first
    assert sample(metrics, "projectionist_projection_head", **labels) == last
    assert sample(metrics, "projectionist_projection_state", state="catching_up", **labels) == 1

    wait_for(lambda: projection(server)["state"] == "stalled", timeout_s=STALL_AFTER_S + 5,
             what="the state stalled")
    stalled = projection(server)
    assert stalled["lag_events"] == 5 and stalled["lag_ms"] > STALL_AFTER_S * 1000
    metrics = scrape(server)
    assert sample(metrics, "projectionist_projection_state", state="stalled", **labels) == 1
    assert sample(metrics, "projectionist_projection_state", state="live", **labels) == 0
    status = {r.name: r.state for r in runtime.status() if r.active}
    assert status == {"note_counts": "stalled", "note_list": "stalled"}

    runtime.resume_projector()
    wait_for(lambda: projection(server)["state"] == "live", what="the state live again")
    caught_up = projection(server)
    assert (caught_up["position"], caught_up["lag_events"], caught_up["lag_ms"]) == (last, 0, 0)
    metrics = scrape(server)
    assert sample(metrics, "projectionist_projection_lag_events", **labels) == 0
    assert sample(metrics, "projectionist_projection_state", state="live", **labels) == 1
    assert sample(metrics, "projectionist_projection_events_applied_total",
                  projection="note_counts") == 6


def test_commands_and_queries_are_counted_by_outcome(
    served: tuple[Runtime, InProcessServer],
) -> None:
    runtime, server = served
    for i in range(3):
        add_note(server, f"n{i}")
    add_note(server, "refused", fail_after_record=True)
    ok = server.http.get("/queries/CountNotes", params={"stream": "s"})
    assert ok.status_code == 200
    runtime.pause_projector()
    position = add_note(server, "late")
    not_fresh = server.http.get("/queries/CountNotes", params={
        "stream": "s", "min_position": position, "wait_ms": 0})
    assert not_fresh.status_code == 503

    metrics = scrape(server)
    commands = {
        outcome: sample(metrics, "projectionist_commands_total", type="AddNote",
                        outcome=outcome)
        for outcome in ("ok", "refused")
    }
    assert commands == {"ok": 4, "refused": 1}
    queries = {
        outcome: sample(metrics, "projectionist_queries_total", type="CountNotes",
                        outcome=outcome)
        for outcome in ("ok", "not_fresh")
    }
    assert queries == {"ok": 1, "not_fresh": 1}
    assert sample(metrics, "projectionist_command_seconds_count", type="AddNote") == 5
    assert sample(metrics, "projectionist_query_seconds_count", type="CountNotes") == 2
