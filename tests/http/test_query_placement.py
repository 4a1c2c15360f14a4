"""Where the server answers a query (queries/placement.py): a query type that proves quick on a
SQLite read store is answered on the event loop; a slow one, a waiting one, and every query on
a PostgreSQL read store stay in worker threads. The answers are the same wherever they run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    Command,
    Event,
    Projection,
    Query,
    ReadContext,
    Runtime,
    UnitOfWork,
)
from projectionist.http import create_http_app
from projectionist.queries.placement import (
    MOST_PROOF,
    PROVEN_AFTER,
    QUICK_CPU_S,
    STALL_S,
    Placement,
)
from tests.lifecycle.support import InProcessServer


class Put(Command):
    key: str


class Was(Event):
    key: str


class Quick(Query):
    key: str


class Slow(Query):
    key: str


class Threads:
    """The thread each query answer ran in, by query type."""

    def __init__(self) -> None:
        self.seen: dict[str, list[threading.Thread]] = {"Quick": [], "Slow": []}


def keys_app(threads: Threads) -> App:
    app = App("keys")
    keys = Projection("keys")
    table = keys.table("keys", sa.Column("key", sa.String(64), primary_key=True))

    @app.command(Put)
    def put(command: Put, uow: UnitOfWork) -> None:
        uow.record(f"key-{command.key}", Was(key=command.key))

    @keys.on(Was)
    def keep(event: Was, ctx: ApplyContext) -> None:
        ctx.put(table, {"key": event.key})

    def found(key: str, ctx: ReadContext) -> dict[str, Any]:
        rows = ctx.connection.execute(sa.select(ctx[table].c.key).where(ctx[table].c.key == key))
        return {"found": rows.first() is not None}

    @app.query(Quick, reads=[keys])
    def quick(query: Quick, ctx: ReadContext) -> dict[str, Any]:
        threads.seen["Quick"].append(threading.current_thread())
        return found(query.key, ctx)

    @app.query(Slow, reads=[keys])
    def slow(query: Slow, ctx: ReadContext) -> dict[str, Any]:
        threads.seen["Slow"].append(threading.current_thread())
        busy_until = time.thread_time() + 2 * QUICK_CPU_S
        while time.thread_time() < busy_until:  # CPU, not sleep: placement counts CPU time
            pass
        return found(query.key, ctx)

    return app


@pytest.fixture
def threads() -> Threads:
    return Threads()


@pytest.fixture
def runtime(threads: Threads, schema_store_urls: tuple[str, str]) -> Iterator[Runtime]:
    write, read = schema_store_urls
    runtime = Runtime(keys_app(threads), store=write, read_store=read)
    runtime.install()
    runtime.execute(Put(key="k1"))
    runtime.catch_up(strict=True)
    yield runtime
    runtime.stop()


def test_a_quick_query_moves_onto_the_loop_and_a_slow_one_stays_in_threads(
    backend: str, runtime: Runtime, threads: Threads
) -> None:
    asks = 3 * PROVEN_AFTER
    with InProcessServer(runtime) as server:
        for name in ("Quick", "Slow"):
            for i in range(asks):
                key = "k1" if i % 2 == 0 else "none"
                response = server.http.get(f"/queries/{name}", params={"key": key})
                assert response.status_code == 200, response.text
                assert response.json()["data"] == {"found": key == "k1"}
        # A query that waits for a position never runs on the loop, proven quick or not.
        head = runtime.execute(Put(key="k2")).position
        runtime.catch_up(strict=True)
        response = server.http.get(
            "/queries/Quick", params={"key": "k2", "min_position": head, "wait_ms": 5000}
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"found": True}
    on_loop = [thread is server.thread for thread in threads.seen["Quick"]]
    if backend == "sqlite":
        # The first answers prove it in worker threads (at least PROVEN_AFTER of them: the
        # first, which warms caches up, may take longer); then the loop. (An answer slowed by,
        # say, a garbage collection sends it back to prove itself again, unit-tested below.)
        assert on_loop.index(True) >= PROVEN_AFTER
        assert any(on_loop[:-1])
        assert on_loop[-1] is False  # the one that waits
    else:
        assert not any(on_loop)  # each read waits for the network: worker threads only
    assert len(threads.seen["Slow"]) == asks
    assert not any(thread is server.thread for thread in threads.seen["Slow"])


def test_one_slow_answer_sends_a_query_back_to_the_threads_for_twice_as_long() -> None:
    placement = Placement(loop_allowed=True)

    def answers(count: int, cpu_s: float) -> list[bool]:
        places = []
        for _ in range(count):
            places.append(placement.on_loop("Q"))
            placement.timed("Q", lambda: _burn(cpu_s))
        return places

    assert answers(PROVEN_AFTER + 1, 0.0) == [False] * PROVEN_AFTER + [True]
    assert answers(1, 2 * QUICK_CPU_S) == [True]  # on the loop when it turned out slow
    assert answers(2 * PROVEN_AFTER + 1, 0.0) == [False] * 2 * PROVEN_AFTER + [True]
    for _ in range(12):  # slow again and again: the proof it needs stops growing
        answers(1, 2 * QUICK_CPU_S)
        answers(MOST_PROOF, 0.0)
    assert answers(1, 0.0) == [True]
    assert placement.state() == {"Q": True}


def test_without_the_loop_allowed_nothing_is_placed_there() -> None:
    placement = Placement(loop_allowed=False)
    for _ in range(PROVEN_AFTER * 2):
        assert placement.timed("Q", lambda: 7) == 7
    assert not placement.on_loop("Q")
    assert placement.state() == {}


def _burn(cpu_s: float) -> None:
    busy_until = time.thread_time() + cpu_s
    while time.thread_time() < busy_until:
        pass


def test_an_answer_that_waits_long_is_slow_however_little_cpu_it_used() -> None:
    placement = Placement(loop_allowed=True)
    for _ in range(PROVEN_AFTER):
        placement.timed("Q", lambda: None)
    assert placement.on_loop("Q")
    placement.timed("Q", lambda: time.sleep(STALL_S * 1.5))  # the disk, a lock, the network
    assert not placement.on_loop("Q")


def test_the_query_threads_serve_again_after_the_servers_lifespan_ends(runtime: Runtime) -> None:
    api = create_http_app(runtime, authority=None)

    async def serve_once() -> httpx.Response:
        async with api.router.lifespan_context(api):
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.get("/queries/Quick", params={"key": "k1"})

    for _ in range(2):  # a second lifespan of the same app (a test client used twice)
        response = asyncio.run(serve_once())
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"found": True}
