"""Eight and more concurrent writers, in threads and in processes, with a live projector."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from projectionist import Runtime
from tests.helpers import wait_for
from tests.postgres.apps import create_audited_shop
from tests.postgres.conftest import process_env
from tests.postgres.shopcheck import (
    SKUS,
    ask_runtime,
    assert_read_models_match,
    register_products,
    run_workload,
)

THREADS = 4
PROCESSES = 4
COMMANDS = 60


def test_every_event_of_concurrent_writers_is_applied_exactly_once(
    pg_stores: tuple[str, str], tmp_path: Path
) -> None:
    write, read = pg_stores
    runtime = Runtime(create_audited_shop(), store=write, read_store=read, pool_size=8).start()
    try:
        register_products(runtime)
        processes = []
        for n in range(PROCESSES):
            with (tmp_path / f"writer-{n}.log").open("wb") as errors:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.postgres.writer", write, read, f"p{n}",
                     str(COMMANDS), str(n)],
                    cwd=tmp_path, env=process_env(f"pjtest-writer-{n}"), stdout=subprocess.PIPE,
                    stderr=errors,
                ))
        outcomes: Counter[str] = Counter()
        progress: list[int] = []
        done = threading.Event()

        def thread_writer(n: int) -> None:
            outcomes.update(run_workload(runtime, f"t{n}", COMMANDS, 100 + n))

        def watch_projector() -> None:
            while not done.wait(0.1):
                progress.append(min(row.position for row in runtime.status() if row.active))

        threads = [threading.Thread(target=thread_writer, args=(n,)) for n in range(THREADS)]
        watcher = threading.Thread(target=watch_projector)
        for thread in [*threads, watcher]:
            thread.start()
        try:
            for process in processes:
                out, _ = process.communicate(timeout=120)
                assert process.returncode == 0, (
                    (tmp_path / f"writer-{processes.index(process)}.log").read_text())
                outcomes.update(json.loads(out))
            for thread in threads:
                thread.join(120)
        finally:
            done.set()
            watcher.join(10)
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if process.stdout is not None:
                    process.stdout.close()

        assert not [key for key in outcomes if ":unavailable" in key], outcomes
        succeeded = sum(n for key, n in outcomes.items() if key.endswith(":ok"))
        assert succeeded > (THREADS + PROCESSES) * COMMANDS // 3, outcomes
        head = runtime.head()
        # Every shop command records one event: the log holds exactly the successful ones.
        assert head >= 2 * len(SKUS) + succeeded
        wait_for(lambda: all(row.position == head for row in runtime.status() if row.active),
                 timeout_s=60, what="the projector catching up")
        # The projector worked while the writers did, not only at the end.
        assert any(0 < position < head for position in progress), progress

        truth = assert_read_models_match(ask_runtime(runtime), write, audited=True)
        assert len(truth["positions"]) == 2 * len(SKUS) + succeeded
        print(f"\nstress: {succeeded} commands ok of {sum(outcomes.values())},"
              f" {len(truth['positions'])} events, outcomes {dict(sorted(outcomes.items()))}")
    finally:
        runtime.stop()

