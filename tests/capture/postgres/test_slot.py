"""The checks at start-up, the publication, and a slot lost under a running capture."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from projectionist import App, ConfigurationError, Runtime
from projectionist.capture.postgres import CaptureState
from projectionist.capture.postgres.slot import check_wal_level, names
from tests.capture.postgres.conftest import Database
from tests.capture.postgres.support import PEOPLE, capture_runtime, people_app
from tests.helpers import wait_for


@pytest.mark.parametrize("level", ["replica", "minimal"])
def test_a_wal_level_other_than_logical_is_one_line_naming_the_fix(level: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_wal_level(level)
    message = str(refused.value)
    assert "\n" not in message
    assert f"wal_level = {level}" in message
    assert "ALTER SYSTEM SET wal_level = logical" in message and "restart" in message
    check_wal_level("logical")


def test_a_table_without_a_primary_key_is_refused_at_start_up(database: Database) -> None:
    database.sql("CREATE TABLE people (id int NOT NULL, name text)")
    declared = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    app = App("nokey")
    app.capture(declared)
    runtime = Runtime(app, store=database.url, roles="capture")
    with pytest.raises(ConfigurationError, match="'people' has no primary key in the database"):
        runtime.install()
    runtime.stop()
    database.sql("ALTER TABLE people REPLICA IDENTITY FULL")
    runtime = Runtime(app, store=database.url, roles="capture")
    runtime.install()  # REPLICA IDENTITY FULL names each row by all its columns
    runtime.stop()


def test_replica_identity_nothing_is_refused(database: Database) -> None:
    database.sql(PEOPLE, "ALTER TABLE people REPLICA IDENTITY NOTHING")
    runtime = Runtime(people_app(), store=database.url, roles="capture")
    with pytest.raises(ConfigurationError, match="'people' has REPLICA IDENTITY NOTHING"):
        runtime.install()
    runtime.stop()


def test_the_publication_follows_the_captured_tables(database: Database) -> None:
    database.sql(PEOPLE, "CREATE TABLE pets (id int PRIMARY KEY)")
    capture_runtime(database, people_app("zoo")).stop()
    published = "SELECT tablename FROM pg_publication_tables WHERE pubname = 'projectionist_zoo'"
    assert database.sql(published) == [("people",)]
    app = people_app("zoo")
    app.capture("pets")
    capture_runtime(database, app).stop()
    assert sorted(database.sql(published)) == [("people",), ("pets",)]


def test_names_fit_postgresql_and_differ_per_database() -> None:
    slot, publication = names("Billing-App", "db1")
    assert (slot, publication) == ("projectionist_billing_app_db1", "projectionist_billing_app")
    long_slot, _ = names("x" * 80, "db")
    assert len(long_slot) == 63 and long_slot != names("x" * 80, "other")[0]


def test_a_lost_slot_stops_capture_with_an_error_and_a_metric(database: Database) -> None:
    database.sql(PEOPLE)
    runtime = capture_runtime(database, people_app())
    capturer = runtime.capturer
    assert capturer is not None and runtime.capture_progress is not None
    # A broken stream is opened again after `poll_interval_s`: long enough here for the slot
    # to be dropped in between.
    capturer.poll_interval_s = 0.5
    runtime.start()
    try:
        [(slot, _, _)] = database.slots()

        def dropped() -> bool:
            # The capture streams from the slot: its connection goes first, as an operator's
            # would, and the slot is dropped before the capture reconnects.
            try:
                database.sql(
                    "DO $$ BEGIN PERFORM pg_terminate_backend(active_pid, 5000)"
                    f" FROM pg_replication_slots WHERE slot_name = '{slot}'"
                    f" AND active_pid IS NOT NULL; PERFORM pg_drop_replication_slot('{slot}');"
                    " END $$"
                )
            except sa.exc.OperationalError:  # the capture reconnected first
                return False
            return True

        wait_for(dropped, what="dropping the slot")
        wait_for(lambda: capturer.error is not None, what="capture stopping")
        assert f"the replication slot {slot!r} of this capture is gone" in str(capturer.error)
        status = runtime.capture_progress.status()
        assert status is not None and status.state is CaptureState.FAILED
        metrics = runtime.metrics.render().decode()
        assert f'projectionist_capture_failed{{slot="{slot}"}} 1.0' in metrics
        database.sql("INSERT INTO people (id, name) VALUES (1, 'after')")
    finally:
        runtime.stop()
    assert database.slots() == [], "the capture made a new slot and skipped what was lost"
    again = Runtime(people_app(), store=database.url, roles="capture")
    with pytest.raises(ConfigurationError, match="is gone"):
        again.install()
    again.stop()
