"""Stores: URLs, the settings a URL carries, and the errors a bad URL gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from projectionist import ConfigurationError
from projectionist.stores import Store


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
