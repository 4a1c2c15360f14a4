"""Every stored event says what caused it: event, command, correlation, subject, time."""

from __future__ import annotations

import time
import uuid

import pytest

from projectionist import EventMetadata, Principal, Runtime
from tests.notes import AddNote, AddNotes, FindNotes

ALICE = Principal(subject="alice", scopes=frozenset({"commands:*", "queries:*"}),
                  token_id="token-1")


def test_stored_events_carry_event_command_and_correlation_ids(notes_runtime: Runtime) -> None:
    result = notes_runtime.execute(AddNotes(stream="s", texts=["a", "b"]), principal=ALICE,
                                   correlation_id="checkout-42")
    assert notes_runtime.log is not None
    stored = notes_runtime.log.read(0, 10)
    metadata = [EventMetadata.from_json(e.metadata) for e in stored]
    assert [m.command_id for m in metadata] == [result.command_id] * 2
    assert [m.correlation_id for m in metadata] == ["checkout-42"] * 2
    assert [m.subject for m in metadata] == ["alice"] * 2
    assert [m.token_id for m in metadata] == ["token-1"] * 2
    event_ids = [m.event_id for m in metadata]
    assert len(set(event_ids)) == 2
    for event_id in event_ids:
        uuid.UUID(event_id)


def test_correlation_id_defaults_to_the_command_id(notes_runtime: Runtime) -> None:
    result = notes_runtime.execute(AddNote(stream="s", text="a"))
    assert notes_runtime.log is not None
    [stored] = notes_runtime.log.read(0, 10)
    metadata = EventMetadata.from_json(stored.metadata)
    assert metadata.correlation_id == result.command_id
    assert metadata.subject == "system"


def test_stored_events_carry_the_time_they_were_recorded(notes_runtime: Runtime) -> None:
    before = time.time()
    notes_runtime.execute(AddNote(stream="s", text="a"))
    after = time.time()
    assert notes_runtime.log is not None
    [stored] = notes_runtime.log.read(0, 10)
    assert before <= stored.recorded_at <= after
    assert stored.recorded_time.timestamp() == pytest.approx(stored.recorded_at, abs=1e-5)
    assert stored.recorded_time.tzinfo is not None


def test_projections_see_the_metadata_of_the_event_they_apply(notes_runtime: Runtime) -> None:
    result = notes_runtime.execute(AddNote(stream="s", text="a"), principal=ALICE,
                                   correlation_id="corr")
    notes_runtime.catch_up()
    [doc] = notes_runtime.ask(FindNotes(stream="s")).data["items"]
    assert doc["command_id"] == result.command_id
    assert doc["correlation_id"] == "corr"
    assert doc["subject"] == "alice"
    assert doc["position"] == result.position
    assert notes_runtime.log is not None
    assert doc["recorded_at"] == notes_runtime.log.read(0, 1)[0].recorded_at


def test_metadata_survives_a_round_trip_through_json() -> None:
    metadata = EventMetadata(event_id="e", command_id="c", correlation_id="r", subject=None,
                             token_id="t")
    assert EventMetadata.from_json(metadata.to_json()) == metadata
