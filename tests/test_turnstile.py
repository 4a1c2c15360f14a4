"""SQLite writers in other processes take turns: one that commits again and again lets in one
that waits (docs/architecture.md, turnstile.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from projectionist import StoreUnavailable
from projectionist.stores import Store

BATCHES = 400


def _table(url: str) -> Store:
    store = Store(url)
    with store.write() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS done (who TEXT, batch INTEGER)")
    return store


def test_a_writer_gets_in_while_another_commits_batch_after_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    busy, waiting = _table(url), Store(url)  # apart, as if in two processes
    started = threading.Event()

    def batches() -> None:
        for batch in range(BATCHES):
            with busy.write() as connection:
                connection.exec_driver_sql("INSERT INTO done VALUES ('busy', ?)", (batch,))
                time.sleep(0.002)  # a batch's work, holding the write lock
            if batch == 10:
                started.set()

    loop = threading.Thread(target=batches)
    loop.start()
    try:
        assert started.wait(30)
        with waiting.write() as connection:
            before = connection.exec_driver_sql("SELECT count(*) FROM done").scalar()
            connection.exec_driver_sql("INSERT INTO done VALUES ('waiting', ?)", (before,))
    finally:
        loop.join()
    # It got in between two of the loop's batches, not after the loop.
    assert before is not None and 10 < before < BATCHES
    with busy.read() as connection:
        rows = connection.exec_driver_sql("SELECT who, count(*) FROM done GROUP BY who").all()
    assert sorted(rows) == [("busy", BATCHES), ("waiting", 1)]
    busy.dispose()
    waiting.dispose()


def test_a_writer_that_waits_too_long_gets_a_clear_error_and_lets_the_others_on(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    holder, impatient = _table(url), Store(url, timeout_s=0.2)
    with holder.write() as connection:
        connection.exec_driver_sql("INSERT INTO done VALUES ('holder', 1)")
        with pytest.raises(StoreUnavailable, match="locked"), impatient.write():
            pass
    # The one that gave up does not stand in the turnstile: both write again.
    for store, batch in ((holder, 2), (impatient, 3)):
        with store.write() as connection:
            connection.exec_driver_sql("INSERT INTO done VALUES ('again', ?)", (batch,))
    with holder.read() as connection:
        assert connection.exec_driver_sql("SELECT batch FROM done ORDER BY batch").all() == [
            (1,), (2,), (3,)]
    holder.dispose()
    impatient.dispose()
