"""Capture on PostgreSQL: committed row changes become RowChanged events, once each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projectionist import Runtime
from tests.capture.postgres.conftest import Database
from tests.capture.postgres.support import (
    PEOPLE,
    Person,
    capture_runtime,
    captured,
    changes,
    people_app,
)


@pytest.fixture
def runtime(database: Database) -> Iterator[Runtime]:
    database.sql(PEOPLE)
    runtime = capture_runtime(database, people_app())
    yield runtime
    runtime.stop()


def capture(runtime: Runtime) -> int:
    assert runtime.capturer is not None
    return runtime.capturer.run_once()


def test_inserts_updates_deletes_and_rekeys_become_events_in_commit_order(
    runtime: Runtime, database: Database
) -> None:
    database.sql(
        "INSERT INTO people (id, name, email) VALUES (1, 'Ann', 'a@x'), (2, 'Bob', NULL)",
        "UPDATE people SET email = 'ann@x' WHERE id = 1",
        "UPDATE people SET id = 3 WHERE id = 2",
        "DELETE FROM people WHERE id = 1",
    )
    assert capture(runtime) == 6
    ann = {"id": 1, "name": "Ann", "email": "a@x", "bio": None, "photo": None}
    bob = {"id": 2, "name": "Bob", "email": None, "bio": None, "photo": None}
    events = captured(database)
    assert [(e["op"], e["stream"], e["version"]) for e in events] == [
        ("insert", "people:1", 1),
        ("insert", "people:2", 1),
        ("update", "people:1", 2),
        ("delete", "people:2", 2),
        ("insert", "people:3", 1),
        ("delete", "people:1", 3),
    ]
    assert events[2]["row"] == {**ann, "email": "ann@x"} and events[2]["old"] == ann
    assert events[3]["old"] == bob and events[4]["row"] == {**bob, "id": 3}
    assert events[5]["old"] == {**ann, "email": "ann@x"}
    meta = events[0]["metadata"]
    assert meta["command_id"] == "capture" and meta["correlation_id"] == "capture"
    assert "/" in meta["lsn"] and isinstance(meta["xid"], int)
    assert len({e["metadata"]["event_id"] for e in events}) == 6
    assert capture(runtime) == 0, "a second round appended the same changes again"
    runtime.catch_up(strict=True)
    assert runtime.ask(Person(id=3)).data["name"] == "Bob"


def test_a_rolled_back_transaction_never_appears(runtime: Runtime, database: Database) -> None:
    database.rolled_back(
        "INSERT INTO people (id, name) VALUES (7, 'ghost')", "UPDATE people SET name = 'x'"
    )
    database.sql("INSERT INTO people (id, name) VALUES (8, 'real')")
    capture(runtime)
    assert [stream for _, stream, _, _ in changes(database)] == ["people:8"]


def test_a_multi_row_transaction_is_appended_whole_in_one_log_transaction(
    database: Database,
) -> None:
    database.sql(PEOPLE)
    runtime = capture_runtime(database, people_app())
    assert runtime.capturer is not None
    runtime.capturer.max_changes = 5  # a transaction larger than one read of the slot
    try:
        database.transaction(
            *(f"INSERT INTO people (id, name) VALUES ({n}, 'p{n}')" for n in range(40)),
            "UPDATE people SET name = 'changed' WHERE id < 10",
        )
        database.sql("INSERT INTO people (id, name) VALUES (100, 'after')")
        assert capture(runtime) == 50  # the whole transaction, and the read stops after it
        assert capture(runtime) == 1
        events = captured(database)
        assert len(events) == 51
        whole = events[:50]
        assert len({e["metadata"]["lsn"] for e in whole}) == 1
        assert len({e["metadata"]["xid"] for e in whole}) == 1
        # One append: the log's positions of one transaction are contiguous, in one xmin.
        xmins = database.sql(
            "SELECT DISTINCT xmin::text FROM projectionist_events WHERE position <= 50"
        )
        assert len(xmins) == 1
        assert events[50]["metadata"]["lsn"] != whole[0]["metadata"]["lsn"]
        runtime.catch_up(strict=True)
        assert runtime.ask(Person(id=3)).data["name"] == "changed"
    finally:
        runtime.stop()


def test_a_toasted_value_left_unchanged_by_an_update_keeps_its_value(
    runtime: Runtime, database: Database
) -> None:
    database.sql(
        "INSERT INTO people (id, name, bio) VALUES (1, 'Ann',"
        " (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3200)))"
    )
    [(stored, toasted)] = database.sql(
        "SELECT (SELECT length(bio) FROM people), pg_total_relation_size(reltoastrelid)"
        " FROM pg_class WHERE relname = 'people'"
    )
    assert stored == 102_400 and int(toasted) > 100_000  # type: ignore[call-overload]
    capture(runtime)
    database.sql("UPDATE people SET name = 'Anna' WHERE id = 1")
    capture(runtime)
    [bio] = database.sql("SELECT bio FROM people")[0]
    insert, update = captured(database)
    assert update["op"] == "update" and update["row"]["name"] == "Anna"
    assert update["row"]["bio"] == bio and update["old"]["bio"] == bio
    assert insert["row"]["bio"] == bio
    runtime.catch_up(strict=True)
    assert runtime.ask(Person(id=1)).data["bio"] == bio


def test_columns_added_and_dropped_while_capturing_follow_the_table(
    runtime: Runtime, database: Database
) -> None:
    database.sql("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    capture(runtime)
    database.sql(
        "ALTER TABLE people ADD COLUMN age int",
        "UPDATE people SET age = 40 WHERE id = 1",
        "ALTER TABLE people DROP COLUMN email",
        "INSERT INTO people (id, name, age) VALUES (2, 'Bob', 7)",
    )
    capture(runtime)
    first, added, dropped = captured(database)
    assert "age" not in first["row"] and "email" in first["row"]
    assert added["row"]["age"] == 40 and "email" in added["row"]
    assert dropped["row"] == {"id": 2, "name": "Bob", "bio": None, "photo": None, "age": 7}


def test_kept_columns_leave_the_others_out(database: Database) -> None:
    database.sql(PEOPLE)
    runtime = capture_runtime(database, people_app(columns=["name"]))
    try:
        database.sql(
            "INSERT INTO people (id, name, email) VALUES (1, 'Ann', 'a@x')",
            "UPDATE people SET email = 'b@x'",  # no kept column changes: no event
            "UPDATE people SET name = 'Anna'",
        )
        capture(runtime)
        assert changes(database) == [
            ("insert", "people:1", {"name": "Ann"}, None),
            ("update", "people:1", {"name": "Anna"}, {"name": "Ann"}),
        ]
    finally:
        runtime.stop()


def test_a_truncate_deletes_every_row_the_log_holds(runtime: Runtime, database: Database) -> None:
    database.sql("INSERT INTO people (id, name) VALUES (1, 'Ann'), (2, 'Bob')")
    capture(runtime)
    database.sql("TRUNCATE people", "INSERT INTO people (id, name) VALUES (3, 'Cy')")
    capture(runtime)
    ops = sorted((op, stream) for op, stream, _, _ in changes(database)[2:])
    assert ops == [("delete", "people:1"), ("delete", "people:2"), ("insert", "people:3")]


def test_an_idle_capture_advances_its_slot(runtime: Runtime, database: Database) -> None:
    assert runtime.capturer is not None
    runtime.capturer.idle_record_s = 0.0
    capture(runtime)
    [(_, before, _)] = database.slots()
    database.sql("CREATE TABLE other (id int)", "INSERT INTO other SELECT generate_series(1, 1000)")
    capture(runtime)
    [(_, after, _)] = database.slots()
    assert _lsn(after) > _lsn(before)
    assert changes(database) == []
    status = runtime.capture_progress.status() if runtime.capture_progress else None
    assert status is not None and status.through_lsn >= _lsn(after)


def _lsn(text: object) -> int:
    high, low = str(text).split("/")
    return (int(high, 16) << 32) | int(low, 16)


def test_wal_of_others_is_recorded_soon_and_the_captures_own_is_not(
    runtime: Runtime, database: Database
) -> None:
    capturer = runtime.capturer
    assert capturer is not None and runtime.capture_progress is not None
    capturer.idle_record_s = 3600.0  # only WAL written by others makes it record
    capturer.min_record_s = 0.0
    capture(runtime)
    database.sql("CREATE TABLE other (id int)", "INSERT INTO other VALUES (1)")
    [(writer_lsn,)] = database.sql("SELECT pg_current_wal_lsn()::text")
    capture(runtime)  # another's WAL moved: recorded, though nothing was captured
    recorded = runtime.capture_progress.status()
    assert recorded is not None and recorded.through_lsn >= _lsn(writer_lsn)
    # Its own record moved the WAL too: that alone is not recorded again.
    capture(runtime)
    again = runtime.capture_progress.status()
    assert again is not None and again.through_lsn == recorded.through_lsn


def test_a_round_whose_append_fails_reads_its_transactions_again(
    runtime: Runtime, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a round took from the stream and could not append is streamed again: the slot
    was not confirmed past it, and the round's failure reopens the stream."""
    capturer = runtime.capturer
    assert capturer is not None
    database.sql("INSERT INTO people (id, name) VALUES (1, 'Ann')")
    append = capturer.log.append

    def failing(*args: object, **kwargs: object) -> list[int]:
        raise RuntimeError("the write store went away mid-round")

    monkeypatch.setattr(capturer.log, "append", failing)
    with pytest.raises(RuntimeError, match="went away"):
        capture(runtime)
    monkeypatch.setattr(capturer.log, "append", append)
    database.sql("INSERT INTO people (id, name) VALUES (2, 'Bob')")
    assert capture(runtime) == 2
    assert [(e["stream"], e["version"]) for e in captured(database)] == [
        ("people:1", 1), ("people:2", 1)]


def test_a_capture_that_resumes_after_another_captured_continues_each_stream(
    runtime: Runtime, database: Database
) -> None:
    """Another process captured from the slot in between (a lost lease): the resumed capture
    takes each stream's version and previous row from what that process appended."""
    database.sql("INSERT INTO people (id, name, email) VALUES (1, 'Ann', 'a@x')")
    assert capture(runtime) == 1
    database.sql("UPDATE people SET email = 'b@x' WHERE id = 1")
    assert capture(runtime) == 1
    runtime.stop()  # its stream closed, as when its lease is lost
    other = capture_runtime(database, people_app())
    try:
        database.sql("UPDATE people SET name = 'Anne' WHERE id = 1")
        assert capture(other) == 1
    finally:
        other.stop()
    database.sql("UPDATE people SET email = 'c@x' WHERE id = 1")
    assert capture(runtime) == 1
    events = captured(database)
    assert [(e["stream"], e["version"]) for e in events] == [("people:1", v) for v in (1, 2, 3, 4)]
    assert events[1]["old"]["email"] == "a@x" and events[1]["row"]["email"] == "b@x"
    assert events[3]["old"]["name"] == "Anne" and events[3]["row"] == {
        **events[2]["row"], "email": "c@x"}
