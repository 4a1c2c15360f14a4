"""Profiles phases W, P and L of the orders benchmark with pyinstrument (pip install it).

    python bench/profile.py [--backend sqlite|postgresql] [--url URL] [--orders 5000] [--out DIR]

Writes one text and one HTML report per phase to DIR (default bench/results/profile). P runs
the projection in this thread (`Runtime.catch_up`, the same batches the projector thread runs)
so that pyinstrument, which samples one thread, sees it. L is profiled twice: the command side
(this thread, waiting included), and the projector's side by applying each command's event in
this thread right after it commits. The wake-up between threads is not in either; compare
with the L figures of `projectionist bench orders`. Figures printed here are slowed by the
profiler and are not the benchmark's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pyinstrument import Profiler

from projectionist_bench.databases import BenchDatabases
from projectionist_bench.orders import OrdersSettings, _drop_read_model, _runtime
from projectionist_bench.workload import COMMANDS_PER_ORDER, command_sequence, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--url", default=None)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--live", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    settings = OrdersSettings(backend=options.backend, orders=options.orders, url=options.url)
    app = create_app()
    events = options.orders * COMMANDS_PER_ORDER
    with BenchDatabases(options.backend, url=options.url) as databases:
        write_url, read_url = databases.fresh("w")
        runtime = _runtime(app, write_url, read_url, settings, roles=("command",))
        runtime.install()
        commands = list(command_sequence(0, events))
        with phase("W", options.out, events, "commands"):
            for command in commands:
                runtime.execute(command)
        runtime.stop()

        _drop_read_model(read_url)
        runtime = _runtime(app, write_url, read_url, settings)
        runtime.install()
        with phase("P", options.out, events, "events"):
            runtime.catch_up()

        live = list(command_sequence(options.orders, options.live))
        with phase("L-commands", options.out, len(live), "commands"):
            for command in live:
                runtime.execute(command)
        live = list(command_sequence(options.orders + options.live, options.live))
        runner = runtime.runners[0]
        with phase("L-projector", options.out, len(live), "commands, each applied"):
            for command in live:
                runtime.execute(command)
                runner.run_once()
        runtime.stop()


class phase:
    """Profiles a block and writes its reports."""

    def __init__(self, name: str, out: Path, count: int, unit: str) -> None:
        self.name, self.out, self.count, self.unit = name, out, count, unit
        self.profiler = Profiler(interval=0.0005)

    def __enter__(self) -> None:
        self.began = time.perf_counter()
        self.profiler.start()

    def __exit__(self, *exc: object) -> None:
        self.profiler.stop()
        elapsed = time.perf_counter() - self.began
        (self.out / f"{self.name}.txt").write_text(
            self.profiler.output_text(unicode=True, show_all=False))
        self.profiler.write_html(str(self.out / f"{self.name}.html"))
        print(f"{self.name}: {self.count:,} {self.unit} in {elapsed:.2f} s under the profiler;"
              f" {self.out / self.name}.txt")


if __name__ == "__main__":
    main()
