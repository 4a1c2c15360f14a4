"""Group commit: concurrent commands share one transaction and one commit.

Callers queue up; the caller at the front of the queue leads: it takes the waiting commands (up
to a limit) as one batch, runs them, and wakes their callers after the one commit. A caller
alone in the queue runs its command by itself at once, so a single client pays nothing.

Under steady concurrency, the leader of the next batch is usually a caller of the last one,
back before the others: it would run alone while they queue behind it. So a leader that finds
fewer callers queued than the last batch held waits for them a moment (`gather_s`, woken as
each arrives): a batch then costs its commit once for all of them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Ticket(Generic[T, R]):
    """One queued item and, once its batch ran, its result or error."""

    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class GroupCommit(Generic[T, R]):
    """Runs queued items in batches; `run_batch` must settle every ticket it is given."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Ticket[T, R]]], None],
        *,
        max_batch: int = 64,
        fits: Callable[[Sequence[Ticket[T, R]], Ticket[T, R]], bool] | None = None,
        gather_s: float = 0.0005,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.fits = fits
        self.gather_s = gather_s
        self._queue: deque[Ticket[T, R]] = deque()
        lock = threading.Lock()
        self._condition = threading.Condition(lock)
        self._arrival = threading.Condition(lock)  # a gathering leader's: an arrival wakes it
        self._gathering = False
        self._last_size = 1

    def submit(self, item: T) -> R:
        """Runs `item` in the next batch and returns its result (or raises its error)."""
        ticket: Ticket[T, R] = Ticket(item)
        with self._condition:
            self._queue.append(ticket)
            if self._gathering:
                self._arrival.notify()
            while not ticket.done and self._queue[0] is not ticket:
                self._condition.wait()
            if ticket.done:
                return ticket.outcome()
            self._gather()
            batch = self._take()
            self._last_size = len(batch)
        try:
            self.run_batch(batch)
        except BaseException as error:
            for waiting in batch:
                if waiting.result is None and waiting.error is None:
                    waiting.error = error
        finally:
            with self._condition:
                for waiting in batch:
                    waiting.done = True
                    self._queue.popleft()
                self._condition.notify_all()
        return ticket.outcome()

    def _gather(self) -> None:
        """Waits, a moment at most, for as many callers as the last batch held."""
        expected = min(self._last_size, self.max_batch)
        if len(self._queue) >= expected or self.gather_s <= 0:
            return
        deadline = time.monotonic() + self.gather_s
        self._gathering = True
        try:
            while len(self._queue) < expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._arrival.wait(remaining)
        finally:
            self._gathering = False

    def _take(self) -> list[Ticket[T, R]]:
        batch: list[Ticket[T, R]] = []
        for ticket in self._queue:
            if len(batch) >= self.max_batch:
                break
            if batch and self.fits is not None and not self.fits(batch, ticket):
                break
            batch.append(ticket)
        return batch
