"""Where the HTTP server answers each query type: in a worker thread, or on its event loop.

On a SQLite read store a query is a few tens of microseconds of CPU: one or two indexed reads
of a local file. Handing it to a worker thread and back costs more than that (the loop wakes
the thread, the thread wakes the loop, each takes the GIL in turn). So a query type earns its
place on the event loop: once its answers have each taken less than `QUICK_CPU_S` of CPU,
`PROVEN_AFTER` times in a row in worker threads, it is answered on the loop; one answer over
that sends it back to the threads, and it must then prove itself twice as long as before (up
to `MOST_PROOF` answers), so a query that is sometimes slow does not go back and forth.

It stays in the threads for good on a PostgreSQL read store (each read waits for the network,
and the loop must serve others meanwhile), and for an answer that waits for `min_position` or
`min_lsn`. It measures CPU time, and counts an answer that took `STALL_S` in all (waiting for
the disk or a lock, say) as slow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

QUICK_CPU_S = 0.001
"""The most CPU an answer may take and still count toward a place on the event loop."""
PROVEN_AFTER = 20
"""Quick answers in a row that earn a query type its place on the loop, the first time."""
MOST_PROOF = 1280
"""The most quick answers in a row a query type must give to come back to the loop."""
STALL_S = 0.02
"""An answer that took this long, waiting included (the network, the disk, a lock), is not
quick however little CPU it used: on the loop it would hold every other request up."""

T = TypeVar("T")


@dataclass(slots=True)
class _Record:
    quick_in_a_row: int = 0
    needed: int = PROVEN_AFTER
    on_loop: bool = False


class Placement:
    """Learns, per query type, whether its answers are quick enough for the event loop."""

    def __init__(self, *, loop_allowed: bool) -> None:
        self.loop_allowed = loop_allowed
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def on_loop(self, type_name: str) -> bool:
        """True if the query type is answered on the event loop."""
        record = self._records.get(type_name)
        return record is not None and record.on_loop

    def timed(self, type_name: str, answer: Callable[[], T]) -> T:
        """`answer()`, its CPU time counted toward (or against) the type's place on the loop."""
        if not self.loop_allowed:
            return answer()
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return answer()
        finally:
            cpu_s = time.thread_time() - cpu_started
            self._record(type_name, cpu_s, time.perf_counter() - started)

    def _record(self, type_name: str, cpu_s: float, wall_s: float) -> None:
        with self._lock:
            record = self._records.get(type_name)
            if record is None:
                record = self._records[type_name] = _Record()
            if cpu_s >= QUICK_CPU_S or wall_s >= STALL_S:
                if record.on_loop:
                    record.on_loop = False
                    record.needed = min(record.needed * 2, MOST_PROOF)
                record.quick_in_a_row = 0
            elif not record.on_loop:
                record.quick_in_a_row += 1
                record.on_loop = record.quick_in_a_row >= record.needed

    def state(self) -> dict[str, bool]:
        """Each query type seen so far, and whether it is answered on the loop."""
        with self._lock:
            return {name: record.on_loop for name, record in self._records.items()}
