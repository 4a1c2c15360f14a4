"""The initial snapshot: consistent with the change stream, and taken again on request."""

from __future__ import annotations

import threading

from projectionist import Runtime
from projectionist.capture.postgres import CaptureState
from projectionist.capture.postgres.snapshot import Snapshot
from tests.capture.postgres.conftest import Database
from tests.capture.postgres.support import (
    PEOPLE,
    Person,
    capture_runtime,
    captured,
    people_app,
)
from tests.helpers import wait_for


def test_visibility_follows_pg_visible_in_snapshot(database: Database) -> None:
    seen = Snapshot.parse("100:110:103,107")
    for xid in (5, 99, 100, 101, 104, 109, 103, 107, 110, 500):
        [(expected,)] = database.sql(
            f"SELECT pg_visible_in_snapshot('{xid}'::xid8, '100:110:103,107'::pg_snapshot)"
        )
        assert seen.visible(xid) is expected, xid
    # pgoutput sends 32-bit ids: the epoch is the snapshot's.
    wide = Snapshot.parse(f"{(3 << 32) + 10}:{(3 << 32) + 20}:{(3 << 32) + 15}")
    assert wide.visible(12) and not wide.visible(15) and not wide.visible(25)
    assert wide.visible(0xFFFFFFF0), "an id just before the epoch began is of the epoch before"


def test_rows_written_while_the_snapshot_is_taken_count_exactly_once(database: Database) -> None:
    database.sql(
        PEOPLE, "INSERT INTO people (id, name) SELECT g, '0' FROM generate_series(1, 50) g"
    )
    stop = threading.Event()
    written = [0]

    def write() -> None:
        n = 50
        while not stop.is_set():
            n += 1
            database.transaction(
                f"INSERT INTO people (id, name) VALUES ({n}, '0')",
                f"UPDATE people SET name = (name::int + 1)::text WHERE id = {n % 50 + 1}",
            )
            written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while written[0] < 20:
            stop.wait(0.01)
        runtime = Runtime(people_app(), store=database.url, roles="projector,query,capture")
        runtime.install()
        assert runtime.capturer is not None
        runtime.capturer.run_once()  # the snapshot, while the writer goes on
        before = written[0]
        while written[0] < before + 20:
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    try:
        while runtime.capturer.run_once():
            pass
        events = captured(database)
        assert any(e["metadata"]["command_id"] == "capture-snapshot" for e in events)
        assert any(e["metadata"]["command_id"] == "capture" for e in events)
        ops: dict[str, list[str]] = {}
        for event in events:
            ops.setdefault(event["stream"], []).append(event["op"])
        assert all(o[0] == "insert" and "insert" not in o[1:] for o in ops.values()), ops
        runtime.catch_up(strict=True)
        table = dict(database.sql("SELECT id, name FROM people"))  # type: ignore[arg-type]
        assert len(ops) == len(table)
        for person, name in table.items():
            assert runtime.ask(Person(id=person)).data["name"] == name
    finally:
        runtime.stop()


def test_resnapshot_appends_the_current_rows_for_a_rebuild_to_see(database: Database) -> None:
    from typer.testing import CliRunner

    from projectionist.cli import cli
    from projectionist_examples.billing import CustomerBalance, create_app

    runtime = Runtime(create_app(), store=database.url, poll_interval_s=0.01)
    runtime.start()
    try:
        progress = runtime.capture_progress
        assert progress is not None

        def started() -> bool:
            status = progress.status()
            return status is not None and status.state is CaptureState.LIVE

        wait_for(started, what="the first snapshots")
        database.sql("INSERT INTO customers (id, name, country) VALUES ('c1', 'Ann', 'DE')")
        outcome = CliRunner().invoke(
            cli, ["capture", "resnapshot", "customers", "billing", "--store", database.url]
        )
        assert outcome.exit_code == 0, outcome.output
        assert "snapshotted customers: 1 rows appended" in outcome.output
        snapshots = database.sql(
            "SELECT count(*) FROM projectionist_events"
            " WHERE metadata::json->>'command_id' = 'capture-snapshot'"
        )
        assert snapshots == [(1,)]
        unknown = CliRunner().invoke(
            cli, ["capture", "resnapshot", "payments", "billing", "--store", database.url]
        )
        assert unknown.exit_code != 0 and "captures no table 'payments'" in unknown.output
        lsn = database.transaction("UPDATE customers SET notes = 'abc'")
        answer = runtime.ask(CustomerBalance(customer_id="c1"), min_lsn=lsn, wait_ms=10000)
        assert answer.data["notes_chars"] == 3
    finally:
        runtime.stop()


def test_a_transaction_committed_past_the_snapshots_lsn_is_never_taken_as_seen() -> None:
    """pgoutput's ids are 32 bits: 2^32 transactions after the snapshot, a new one has the id
    of one the snapshot saw. Its commit LSN, past the snapshot's, says it is new."""
    seen = Snapshot.parse("100:110:103,107:0/5000")
    assert seen.lsn == 0x5000
    assert seen.sees(101, commit_lsn=0x4FFF) and not seen.sees(103, commit_lsn=0x4FFF)
    assert not seen.sees(101, commit_lsn=0x5000) and not seen.sees(101, commit_lsn=1 << 40)
    # One recorded without an LSN goes by the id alone.
    assert Snapshot.parse("100:110:103,107").sees(101, commit_lsn=1 << 40)


def test_a_snapshot_is_recorded_with_its_lsn_and_one_recorded_without_is_given_one(
    database: Database,
) -> None:
    database.sql(PEOPLE, "INSERT INTO people (id, name) VALUES (1, 'Ann')")
    runtime = capture_runtime(database, people_app())
    try:
        [(recorded,)] = database.sql("SELECT snapshot FROM projectionist_capture_snapshots")
        assert Snapshot.parse(recorded).lsn is not None
        [(before,)] = database.sql("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        unbounded = recorded.rpartition(":")[0]
        database.sql(f"UPDATE projectionist_capture_snapshots SET snapshot = '{unbounded}'")
        assert runtime.capturer is not None
        runtime.capturer.run_once()
        [(bounded,)] = database.sql("SELECT snapshot FROM projectionist_capture_snapshots")
        assert bounded.startswith(unbounded + ":")
        lsn = Snapshot.parse(bounded).lsn
        assert lsn is not None and lsn >= before
        assert runtime.capturer.snapshots["people"].lsn == lsn
    finally:
        runtime.stop()
