"""A command-only process running the shop workload: `python -m tests.postgres.writer
WRITE_URL READ_URL WRITER COMMANDS SEED`; prints its outcomes as JSON."""

from __future__ import annotations

import json
import sys

from projectionist import Runtime
from projectionist_examples.shop import create_app
from tests.postgres.shopcheck import run_workload


def main(argv: list[str]) -> None:
    store, read_store, writer, commands, seed = argv
    runtime = Runtime(create_app(), store=store, read_store=read_store, roles=["command"])
    try:
        outcomes = run_workload(runtime, writer, int(commands), int(seed))
    finally:
        runtime.stop()
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main(sys.argv[1:])
