"""Async projection handlers, query handlers and query policies are awaited; a Forbidden raised
inside a query handler is audited like any other refusal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import (
    App,
    ApplyContext,
    Command,
    Event,
    Forbidden,
    Principal,
    Projection,
    Query,
    ReadContext,
    Runtime,
    TokenAuthority,
    UnitOfWork,
)
from projectionist_examples.shop import (
    GetOrder,
    OrderLineIn,
    PlaceOrder,
    RegisterProduct,
    RestockProduct,
)
from tests.security.servers import SECRET, uid

AUDIT = "projectionist.audit"


class Say(Command):
    room: str
    text: str


class Said(Event):
    text: str


class Transcript(Query):
    room: str


class Whispers(Query):
    """Refused inside its handler for rooms whose name starts with 'secret'."""

    room: str


class Mine(Query):
    """A policy narrows it to the caller's own room, and refuses strangers."""

    room: str | None = None


def chat_app() -> App:
    """A new App whose projection handler, query handlers and policies are coroutines."""
    app = App("chat")
    transcripts = Projection("transcripts")
    lines = transcripts.table(
        "lines",
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("room", sa.String(64), nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
    )

    @app.command(Say)
    def say(command: Say, uow: UnitOfWork) -> None:
        uow.record(f"room-{command.room}", Said(text=command.text))

    @transcripts.on(Said)
    async def write_line(event: Said, ctx: ApplyContext) -> None:
        await asyncio.sleep(0)
        room = ctx.stream.removeprefix("room-")
        ctx.put(lines, {"position": ctx.position, "room": room, "text": event.text})

    async def read(room: str, ctx: ReadContext) -> list[str]:
        await asyncio.sleep(0)
        table = ctx[lines]
        return list(ctx.connection.execute(
            sa.select(table.c.text).where(table.c.room == room).order_by(table.c.position)
        ).scalars())

    @app.query(Transcript, reads=[transcripts])
    async def transcript(query: Transcript, ctx: ReadContext) -> dict[str, Any]:
        return {"room": query.room, "lines": await read(query.room, ctx)}

    @app.query(Whispers, reads=[transcripts])
    async def whispers(query: Whispers, ctx: ReadContext) -> dict[str, Any]:
        if query.room.startswith("secret"):
            raise Forbidden(f"the room {query.room!r} is secret")
        return {"lines": await read(query.room, ctx)}

    async def own_room(principal: Principal, query: Mine) -> Mine | bool:
        await asyncio.sleep(0)
        if principal.subject is None or principal.subject.startswith("stranger"):
            return False
        if query.room is None:
            return query.model_copy(update={"room": principal.subject})
        return query.room == principal.subject

    @app.query(Mine, reads=[transcripts], policy=own_room)
    async def mine(query: Mine, ctx: ReadContext) -> dict[str, Any]:
        assert query.room is not None
        return {"room": query.room, "lines": await read(query.room, ctx)}

    return app


@pytest.fixture
def runtime(store_urls: tuple[str, str]) -> Iterator[Runtime]:
    write, read = store_urls
    runtime = Runtime(chat_app(), store=write, read_store=read)
    runtime.install()
    yield runtime
    runtime.stop()


def reader(subject: str) -> Principal:
    return Principal(subject=subject, scopes=["queries:*"])


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == AUDIT]


def test_async_projection_and_query_handlers_are_awaited(runtime: Runtime) -> None:
    for room, text in [("kitchen", "hello"), ("hall", "hi"), ("kitchen", "bye")]:
        runtime.execute(Say(room=room, text=text))
    assert runtime.catch_up(strict=True) == 3
    answer = runtime.ask(Transcript(room="kitchen"), min_position=3, wait_ms=0)
    assert answer.data == {"room": "kitchen", "lines": ["hello", "bye"]}
    assert answer.freshness.position == 3


def test_an_async_query_policy_refuses_narrows_and_allows(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    runtime.execute(Say(room="ann", text="note to self"))
    runtime.catch_up(strict=True)

    with pytest.raises(Forbidden, match="the policy of Mine refuses this subject"):
        runtime.ask(Mine(), principal=reader("stranger-1"))
    with pytest.raises(Forbidden, match="the policy of Mine refuses this subject"):
        runtime.ask(Mine(room="ann"), principal=reader("bob"))
    lines = audit_lines(caplog)
    assert [(line.levelno, line.getMessage()) for line in lines] == [
        (logging.WARNING, "query refused: subject=stranger-1 query=Mine"
                          " reason=the policy of Mine refuses this subject"),
        (logging.WARNING, "query refused: subject=bob query=Mine"
                          " reason=the policy of Mine refuses this subject"),
    ]

    narrowed = runtime.ask(Mine(), principal=reader("ann"))
    assert narrowed.data == {"room": "ann", "lines": ["note to self"]}
    assert runtime.ask(Mine(room="ann"), principal=reader("ann")).data == narrowed.data


def test_forbidden_raised_inside_a_query_handler_is_audited_at_warning(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    runtime.catch_up()
    with pytest.raises(Forbidden, match="the room 'secret-1' is secret"):
        runtime.ask(Whispers(room="secret-1"), principal=reader("eve"))
    [record] = audit_lines(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "query refused: subject=eve query=Whispers reason=the room 'secret-1' is secret")

    caplog.clear()
    assert runtime.ask(Whispers(room="open"), principal=reader("eve")).data == {"lines": []}
    assert audit_lines(caplog) == []


def test_forbidden_raised_inside_a_query_handler_waiting_for_a_position_is_audited_once(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    runtime.execute(Say(room="secret-2", text="psst"))
    runtime.catch_up()
    with pytest.raises(Forbidden):
        runtime.ask(Whispers(room="secret-2"), principal=reader("eve"), min_position=1)
    assert len(audit_lines(caplog)) == 1


def test_the_shops_refusal_of_another_customers_order_is_audited(
    shop_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    authority = TokenAuthority([SECRET])
    sku, order_id = uid("sku"), uid("order")
    shop_runtime.execute(RegisterProduct(sku=sku, name="Tea", price_cents=300))
    shop_runtime.execute(RestockProduct(sku=sku, quantity=5))
    shop_runtime.execute(PlaceOrder(order_id=order_id, customer_id="c1",
                                    lines=[OrderLineIn(sku=sku, quantity=1)]))
    shop_runtime.catch_up()
    caplog.set_level(logging.INFO, logger=AUDIT)
    other = authority.verify(authority.issue(["customer", "queries:*"], subject="c2"))
    with pytest.raises(Forbidden, match="a customer may see only their own orders"):
        shop_runtime.ask(GetOrder(order_id=order_id), principal=other)
    [record] = audit_lines(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "query refused: subject=c2 query=GetOrder"
        " reason=a customer may see only their own orders")
