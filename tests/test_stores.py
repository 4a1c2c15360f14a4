"""Stores: URLs, the settings a URL carries, the errors a bad URL gives, and the kept
writer of PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from projectionist import ConfigurationError, StoreUnavailable
from projectionist.driver import Sql
from projectionist.stores import Store
from projectionist.wakeups.postgres import Listener

INSERT_KEPT = Sql("INSERT INTO kept (id) VALUES (?)")


def test_postgres_url_options_reach_the_connection(
    make_store_url: Callable[[str], str],
) -> None:
    url = make_store_url("postgresql")  # a schema of the test database, by search_path
    schema = url.rsplit("%3D", 1)[1]
    store = Store(url)
    try:
        with store.read() as connection:
            assert connection.exec_driver_sql("SELECT current_schema()").scalar() == schema
            # The store's own settings are there too.
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() != "0"
    finally:
        store.dispose()


@pytest.mark.parametrize(("durable", "expected"), [(True, "on"), (False, "off")])
def test_a_postgres_read_store_apart_commits_without_waiting_for_the_disk(
    make_store_url: Callable[[str], str], durable: bool, expected: str
) -> None:
    # The read store apart from the write store can be rebuilt from the log, and its
    # checkpoints commit with its rows: it trades the last commits for latency, as SQLite's
    # synchronous=NORMAL does.
    store = Store(make_store_url("postgresql"), durable=durable)
    try:
        with store.read() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == expected
    finally:
        store.dispose()


@pytest.mark.parametrize("durable", [True, False])
def test_sqlite_synchronous_follows_durability(tmp_path: Path, durable: bool) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}", durable=durable)
    try:
        with store.read() as connection:
            level = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        assert level == (2 if durable else 1)  # FULL, NORMAL
    finally:
        store.dispose()


def test_the_read_store_commits_without_waiting_and_the_write_store_waits(
    make_store_url: Callable[[str], str],
) -> None:
    from projectionist import App, Runtime

    write, read = make_store_url("postgresql"), make_store_url("postgresql")
    for read_url in (read, write):  # apart, and in the write store's own database
        runtime = Runtime(App("durability"), store=write, read_store=read_url)
        try:
            with runtime.read_store.read() as connection:
                reads = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
            assert runtime.store is not None
            with runtime.store.read() as connection:
                writes = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
            assert (reads, writes) == ("off", "on")
        finally:
            runtime.stop()


def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with store.read() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.dispose()


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "is not a store URL"),
    ("mysql://user@host/db", "unsupported store 'mysql'"),
    ("sqlite:///no/such/folder/x.db", "does not exist"),
])
def test_a_bad_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Store(url)


def test_repr_hides_the_password() -> None:
    store = Store("postgresql+psycopg://user:s3cret@127.0.0.1:1/db")
    try:
        assert "s3cret" not in repr(store)
        assert "user" in repr(store)
    finally:
        store.dispose()


def test_more_reading_threads_than_any_pool_all_read_at_once(tmp_path: Path) -> None:
    import threading

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.write() as connection:
        connection.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (7)")
    threads = 40  # a server's thread pool; the engine's pool holds 24
    inside = threading.Barrier(threads, timeout=20)
    seen: list[int] = []

    def read() -> None:
        with store.read() as connection:
            seen.append(connection.exec_driver_sql("SELECT v FROM t").scalar_one())
            inside.wait()  # every thread holds its read transaction open at once

    try:
        workers = [threading.Thread(target=read) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert seen == [7] * threads
        # The readers of threads that ended are closed when another thread starts reading.
        def read_once() -> None:
            with store.read():
                pass

        read_alone = threading.Thread(target=read_once)
        read_alone.start()
        read_alone.join()
        assert len(store._reader_connections) == 1
    finally:
        store.dispose()


@pytest.fixture
def kept_store(make_store_url: Callable[[str], str]) -> Iterator[Store]:
    store = Store(make_store_url("postgresql"))
    with store.write() as connection:
        connection.exec_driver_sql("CREATE TABLE kept (id int PRIMARY KEY)")
    try:
        yield store
    finally:
        store.dispose()


def _ids(store: Store) -> list[int]:
    with store.read() as connection:
        return [row[0] for row in connection.exec_driver_sql("SELECT id FROM kept ORDER BY id")]


def test_kept_writes_share_one_connection_and_commit(kept_store: Store) -> None:
    pids = set()
    for i in range(3):
        with kept_store.write(kept=True) as connection:
            pids.add(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            INSERT_KEPT.run(connection, (i,))
    assert len(pids) == 1
    assert _ids(kept_store) == [0, 1, 2]


def test_a_kept_write_that_fails_rolls_back_and_the_next_one_works(kept_store: Store) -> None:
    with kept_store.write(kept=True) as connection:
        INSERT_KEPT.run(connection, (1,))
    with pytest.raises(IntegrityError), kept_store.write(kept=True) as connection:
        INSERT_KEPT.run(connection, (2,))
        INSERT_KEPT.run(connection, (1,))  # a duplicate: the transaction is aborted
    with pytest.raises(RuntimeError), kept_store.write(kept=True) as connection:
        INSERT_KEPT.hold(connection, [(3,)])  # held, then dropped with the rollback
        raise RuntimeError("the caller's own failure")
    with kept_store.write(kept=True) as connection:
        INSERT_KEPT.run(connection, (4,))
    assert _ids(kept_store) == [1, 4]


def test_held_writes_on_the_kept_connection_go_with_its_commit(kept_store: Store) -> None:
    with kept_store.write(kept=True) as connection:
        INSERT_KEPT.hold(connection, [(5,), (6,)])
    assert _ids(kept_store) == [5, 6]
    with pytest.raises(IntegrityError), kept_store.write(kept=True) as connection:
        INSERT_KEPT.hold(connection, [(7,), (5,)])  # fails at the commit, all of it undone
    assert _ids(kept_store) == [5, 6]


def test_a_kept_connection_the_server_ended_fails_one_write_and_the_next_connects_anew(
    kept_store: Store,
) -> None:
    with kept_store.write(kept=True) as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with kept_store.write() as other:
        other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(StoreUnavailable), kept_store.write(kept=True) as connection:
        INSERT_KEPT.run(connection, (8,))
    with kept_store.write(kept=True) as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
        INSERT_KEPT.run(connection, (9,))
    assert _ids(kept_store) == [9]


def test_a_listener_ignores_the_notifications_of_the_kept_writer_alone(kept_store: Store) -> None:
    """A process learns of its own group commit's appends first hand; the NOTIFY of another
    connection still wakes it."""
    heard: list[str] = []
    listener = Listener(kept_store.url, "pjtest_kept", heard.append, ignore=kept_store.writes_from)
    listener.start()
    try:
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:  # until the listener listens
            with kept_store.write() as pooled:
                pooled.exec_driver_sql("NOTIFY pjtest_kept, 'ready'")
            time.sleep(0.05)
        with kept_store.write(kept=True) as connection:
            connection.exec_driver_sql("NOTIFY pjtest_kept, 'kept'")
        with kept_store.write() as pooled:
            pooled.exec_driver_sql("NOTIFY pjtest_kept, 'pooled'")
        while "pooled" not in heard and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        listener.stop()
    assert "pooled" in heard
    assert "kept" not in heard  # sent before "pooled": it would have been heard first


def test_kept_writes_on_another_postgres_driver_use_the_pool(
    make_store_url: Callable[[str], str],
) -> None:
    url = make_store_url("postgresql").replace("postgresql+psycopg://", "postgresql+psycopg2://")
    store = Store(url)
    try:
        with store.write() as connection:
            connection.exec_driver_sql("CREATE TABLE kept (id int PRIMARY KEY)")
        for i in range(2):
            with store.write(kept=True) as connection:
                connection.exec_driver_sql(f"INSERT INTO kept (id) VALUES ({i})")
        assert _ids(store) == [0, 1]
    finally:
        store.dispose()


def test_a_savepoint_left_open_by_a_kept_write_does_not_spoil_the_next(kept_store: Store) -> None:
    with kept_store.write(kept=True) as connection:
        connection.begin_nested()  # never ended by its caller
        INSERT_KEPT.run(connection, (1,))
    with pytest.raises(IntegrityError), kept_store.write(kept=True) as connection:
        INSERT_KEPT.run(connection, (1,))
    with kept_store.write(kept=True) as connection:
        assert not connection.in_nested_transaction()
        INSERT_KEPT.run(connection, (2,))
    assert _ids(kept_store) == [1, 2]
