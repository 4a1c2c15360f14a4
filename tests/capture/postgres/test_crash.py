"""`kill -9` of a capture process mid-stream: after restarts, every change is in the log once."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from tests.capture.postgres.conftest import Database
from tests.helpers import ServeSubprocess, wait_for


def test_a_killed_capture_neither_loses_nor_doubles_a_change(
    database: Database, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env["PROJECTIONIST_AUTH"] = "off"
    args = ["billing", "--quiet", "--roles", "capture", "--store", database.url]
    server = ServeSubprocess(tmp_path, args, env)
    server.wait_until_healthy()
    database.sql("INSERT INTO customers (id, name, country) VALUES ('c0', 'counter', 'DE')")
    stop = threading.Event()
    done = [0]

    def write() -> None:
        while not stop.is_set():
            n = done[0] + 1
            database.transaction(
                f"INSERT INTO customers (id, name, country) VALUES ('k{n}', 'n', 'FR')",
                f"UPDATE customers SET notes = '{n}' WHERE id = 'c0'",
            )
            done[0] = n

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(3):
            count = _events(database)
            wait_for(lambda count=count: _events(database) > count + 20, timeout_s=30,
                     what="capture appending")
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=10)
            server = ServeSubprocess(tmp_path, args, env)
            server.wait_until_healthy()
    finally:
        stop.set()
        writer.join()
    try:
        total = done[0]
        wait_for(lambda: _events(database) >= 1 + 2 * total, timeout_s=60,
                 what="capture catching up")
        per_stream = dict(database.sql(
            "SELECT stream, count(*) FROM projectionist_events GROUP BY stream"
        ))
        assert per_stream["customers:c0"] == 1 + total
        assert all(per_stream[f"customers:k{n}"] == 1 for n in range(1, total + 1))
        assert len(per_stream) == 1 + total
        [(lsns,)] = database.sql(
            "SELECT count(DISTINCT metadata::json->>'lsn') FROM projectionist_events"
        )
        assert lsns == 1 + total
    finally:
        server.stop()


def _events(database: Database) -> int:
    [(count,)] = database.sql("SELECT count(*) FROM projectionist_events")
    return int(count)  # type: ignore[call-overload]
