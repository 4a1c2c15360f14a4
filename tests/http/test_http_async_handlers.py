"""Async handlers and policies over HTTP: awaited on the server's event loop, never a 200 that
wrote nothing. Objects bound to the server's loop (here an asyncio.Event) work in them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    Command,
    Event,
    Principal,
    Projection,
    Query,
    ReadContext,
    Runtime,
    UnitOfWork,
)
from tests.lifecycle.support import AUTHORITY, InProcessServer, bearer


class Say(Command):
    room: str
    text: str


class Said(Event):
    text: str


class Transcript(Query):
    room: str


class Calls:
    """Where each async handler ran, and a gate bound to the first loop that waits on it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, threading.Thread, asyncio.AbstractEventLoop]] = []
        self.gate = asyncio.Event()

    async def note(self, name: str) -> None:
        self.seen.append((name, threading.current_thread(), asyncio.get_running_loop()))
        # The event binds to the loop of its first wait: awaiting it on another loop fails.
        self.gate.clear()
        asyncio.get_running_loop().call_soon(self.gate.set)
        await self.gate.wait()


def chat_app(calls: Calls) -> App:
    """A new App whose every handler and policy is a coroutine function."""
    app = App("chat")
    transcripts = Projection("transcripts")
    lines = transcripts.table(
        "lines",
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("room", sa.String(64), nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
    )

    async def no_strangers(principal: Principal, message: Any) -> bool:
        await asyncio.sleep(0)
        return principal.subject != "stranger"

    @app.command(Say, policy=no_strangers)
    async def say(command: Say, uow: UnitOfWork) -> None:
        await calls.note("command")
        uow.record(f"room-{command.room}", Said(text=command.text))

    @transcripts.on(Said)
    async def write_line(event: Said, ctx: ApplyContext) -> None:
        await asyncio.sleep(0)
        room = ctx.stream.removeprefix("room-")
        ctx.put(lines, {"position": ctx.position, "room": room, "text": event.text})

    @app.query(Transcript, reads=[transcripts], policy=no_strangers)
    async def transcript(query: Transcript, ctx: ReadContext) -> dict[str, Any]:
        await calls.note("query")
        table = ctx[lines]
        texts = ctx.connection.execute(
            sa.select(table.c.text).where(table.c.room == query.room).order_by(table.c.position)
        ).scalars()
        return {"room": query.room, "lines": list(texts)}

    return app


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def runtime(calls: Calls, schema_store_urls: tuple[str, str]) -> Iterator[Runtime]:
    write, read = schema_store_urls
    runtime = Runtime(chat_app(calls), store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


def test_async_handlers_and_policies_are_awaited_on_the_servers_loop(
    runtime: Runtime, calls: Calls
) -> None:
    with InProcessServer(runtime) as server:
        positions = []
        for text in ("hello", "bye"):
            response = server.http.post("/commands/Say", json={"room": "kitchen", "text": text})
            assert response.status_code == 200, response.text
            positions.append(response.json()["position"])
        assert positions == [1, 2]
        assert runtime.catch_up(strict=True) == 2
        for _ in range(2):
            response = server.http.get("/queries/Transcript", params={"room": "kitchen"})
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {"room": "kitchen", "lines": ["hello", "bye"]}
    assert [name for name, _, _ in calls.seen] == ["command", "command", "query", "query"]
    assert {thread for _, thread, _ in calls.seen} == {server.thread}
    assert len({loop for _, _, loop in calls.seen}) == 1


def test_an_async_policy_refuses_with_403_over_http(runtime: Runtime, calls: Calls) -> None:
    stranger = bearer(AUTHORITY.issue(["commands:*", "queries:*"], subject="stranger"))
    with InProcessServer(runtime) as server:
        response = server.http.post("/commands/Say", json={"room": "r", "text": "t"},
                                    headers=stranger)
        assert response.status_code == 403, response.text
        assert response.json()["detail"] == "the policy of Say refuses this subject"
        runtime.catch_up()
        response = server.http.get("/queries/Transcript", params={"room": "r"},
                                   headers=stranger)
        assert response.status_code == 403, response.text
        assert response.json()["detail"] == "the policy of Transcript refuses this subject"
    assert calls.seen == []
    assert runtime.head() == 0
