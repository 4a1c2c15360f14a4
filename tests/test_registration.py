"""Handlers and policies are checked when they are registered, and async ones become plain calls.

A wrong parameter list is a ConfigurationError at decoration time that names the handler
(module.qualname) and the parameters it must take, never a 500 on the first request. A coroutine
function (a function, a callable object, a functools.partial) is registered as a call that runs
it to completion.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from projectionist import App, Command, ConfigurationError, Event, Projection, Query

HERE = __name__


class Ping(Command):
    text: str = ""


class Pinged(Event):
    text: str = ""


class Look(Query):
    text: str = ""


def one(message: Any) -> None:
    """Takes the message only."""


def three(message: Any, context: Any, extra: Any) -> None:
    """Takes a third, required parameter."""


def keyword_only(message: Any, context: Any, *, extra: Any) -> None:
    """Takes a required keyword-only parameter."""


def none_at_all() -> None:
    """Takes nothing."""


async def async_one(message: Any) -> None:
    """An async function taking the message only."""


class OneParameter:
    """A callable object whose __call__ takes one parameter."""

    def __call__(self, message: Any) -> None:
        """Takes the message only."""


WRONG: list[tuple[Callable[..., Any], str]] = [
    (one, f"{HERE}.one"),
    (three, f"{HERE}.three"),
    (keyword_only, f"{HERE}.keyword_only"),
    (none_at_all, f"{HERE}.none_at_all"),
    (async_one, f"{HERE}.async_one"),
    (OneParameter(), f"{HERE}.OneParameter"),
    (functools.partial(one, "bound"), f"{HERE}.one"),
]


def register_command(app: App, handler: Callable[..., Any]) -> None:
    app.command(Ping)(handler)


def register_query(app: App, handler: Callable[..., Any]) -> None:
    app.query(Look, reads=[Projection("looks")])(handler)


def register_projection_handler(app: App, handler: Callable[..., Any]) -> None:
    Projection("pings").on(Pinged)(handler)


def register_command_policy(app: App, policy: Callable[..., Any]) -> None:
    app.command(Ping, policy=policy)


def register_query_policy(app: App, policy: Callable[..., Any]) -> None:
    app.query(Look, reads=[Projection("looks")], policy=policy)


KINDS: list[tuple[Callable[[App, Callable[..., Any]], None], str]] = [
    (register_command, "(command, uow)"),
    (register_query, "(query, ctx)"),
    (register_projection_handler, "(event, ctx)"),
    (register_command_policy, "(principal, command)"),
    (register_query_policy, "(principal, query)"),
]


@pytest.mark.parametrize(("register", "parameters"), KINDS,
                         ids=[register.__name__ for register, _ in KINDS])
@pytest.mark.parametrize(("handler", "name"), WRONG,
                         ids=[f"{index}-{name}" for index, (_, name) in enumerate(WRONG)])
def test_a_wrong_parameter_list_is_refused_at_registration_naming_the_handler(
    register: Callable[[App, Callable[..., Any]], None], parameters: str,
    handler: Callable[..., Any], name: str,
) -> None:
    app = App("checked")
    with pytest.raises(ConfigurationError) as raised:
        register(app, handler)
    message = raised.value.detail
    assert name in message
    assert f"must take two parameters {parameters}" in message
    assert app.commands == {} and app.queries == {}


def test_the_error_says_which_message_type_and_what_the_handler_takes() -> None:
    app = App("checked")
    with pytest.raises(ConfigurationError) as raised:
        app.command(Ping)(one)
    assert raised.value.detail == (
        f"the handler of command Ping, {HERE}.one, must take two parameters (command, uow);"
        " it takes (message)"
    )
    with pytest.raises(ConfigurationError) as raised:
        Projection("pings").on(Pinged)(three)
    assert raised.value.detail == (
        f"the handler of Pinged in projection 'pings', {HERE}.three, must take two parameters"
        " (event, ctx); it takes (message, context, extra)"
    )


def test_a_policy_is_checked_when_the_decorator_is_made() -> None:
    app = App("checked")

    def policy(principal: Any) -> bool:
        return True

    with pytest.raises(ConfigurationError, match=r"the policy of query Look, .*\.policy, must"):
        app.query(Look, reads=[Projection("looks")], policy=policy)


def test_something_not_callable_is_refused() -> None:
    app = App("checked")
    with pytest.raises(ConfigurationError, match="the policy of command Ping, 'nope', is not"
                                                 " callable"):
        app.command(Ping, policy="nope")  # type: ignore[arg-type]


def with_default(message: Any, context: Any, extra: Any = None) -> str:
    return f"default {message} {extra}"


def with_star_args(*args: Any) -> str:
    return f"star {args[0]}"


def with_kwargs(message: Any, context: Any, **options: Any) -> str:
    return f"kwargs {message}"


class Method:
    """A handler that is a bound method."""

    def handle(self, message: Any, context: Any) -> str:
        return f"method {message}"


class Callable2:
    """A callable object taking two parameters."""

    def __call__(self, message: Any, context: Any) -> str:
        return f"object {message}"


def tagged(tag: str, message: Any, context: Any) -> str:
    return f"{tag} {message}"


RIGHT: list[tuple[Callable[..., Any], str]] = [
    (with_default, "default m None"),
    (with_star_args, "star m"),
    (with_kwargs, "kwargs m"),
    (Method().handle, "method m"),
    (Callable2(), "object m"),
    (functools.partial(tagged, "partial"), "partial m"),
    (lambda message, context: f"lambda {message}", "lambda m"),
]


@pytest.mark.parametrize(("handler", "answer"), RIGHT, ids=[a for _, a in RIGHT])
def test_handlers_with_extra_defaults_or_star_args_are_accepted(
    handler: Callable[..., Any], answer: str
) -> None:
    app = App("checked")
    projection = Projection("looks")
    assert app.command(Ping, policy=handler)(handler) is handler
    app.query(Look, reads=[projection], policy=handler)(handler)
    projection.on(Pinged)(handler)
    command, query = app.commands["Ping"], app.queries["Look"]
    assert command.policy is not None and query.policy is not None
    for call in (command.handler, query.handler, command.policy, query.policy,
                 projection.handlers["Pinged"].function):
        assert call("m", None) == answer


# Async handlers become plain calls that run them to completion


async def async_function(message: Any, context: Any) -> str:
    return f"async {message}"


class AsyncObject:
    """A callable object whose __call__ is a coroutine function."""

    async def __call__(self, message: Any, context: Any) -> str:
        return f"async object {message}"


async def async_tagged(tag: str, message: Any, context: Any) -> str:
    return f"{tag} {message}"


class AsyncMethod:
    async def handle(self, message: Any, context: Any) -> str:
        return f"async method {message}"


ASYNC: list[tuple[Callable[..., Any], str]] = [
    (async_function, "async m"),
    (AsyncObject(), "async object m"),
    (functools.partial(async_tagged, "async partial"), "async partial m"),
    (functools.partial(AsyncObject()), "async object m"),
    (AsyncMethod().handle, "async method m"),
]


@pytest.mark.parametrize(("handler", "answer"), ASYNC, ids=[a for _, a in ASYNC])
def test_an_async_handler_or_policy_is_registered_as_a_call_that_awaits_it(
    handler: Callable[..., Any], answer: str
) -> None:
    app = App("async")
    projection = Projection("looks")
    # The decorator gives back what it was given: the app's code may still await it.
    assert app.command(Ping, policy=handler)(handler) is handler
    app.query(Look, reads=[projection], policy=handler)(handler)
    projection.on(Pinged)(handler)
    command, query = app.commands["Ping"], app.queries["Look"]
    assert command.policy is not None and query.policy is not None
    for call in (command.handler, query.handler, command.policy, query.policy,
                 projection.handlers["Pinged"].function):
        assert call("m", None) == answer


def test_a_plain_function_that_returns_a_coroutine_is_awaited_too() -> None:
    app = App("async")

    @functools.wraps(async_function)
    def wrapper(message: Any, context: Any) -> Any:
        return async_function(message, context)

    app.command(Ping)(wrapper)
    assert app.commands["Ping"].handler("m", None) == "async m"


def test_an_async_handler_called_from_a_running_loop_runs_on_a_loop_of_its_own() -> None:
    app = App("async")
    app.command(Ping)(async_function)
    handler = app.commands["Ping"].handler

    async def caller() -> str:
        return str(handler("m", None))

    assert asyncio.run(caller()) == "async m"


def test_an_async_handler_that_raises_runtime_error_runs_once_and_raises_it() -> None:
    app = App("async")
    runs: list[str] = []

    async def failing(message: Any, context: Any) -> None:
        runs.append(message)
        raise RuntimeError("the handler's own error")

    app.command(Ping)(failing)
    with pytest.raises(RuntimeError, match="the handler's own error"):
        app.commands["Ping"].handler("m", None)
    assert runs == ["m"]


def test_from_an_anyio_worker_thread_an_async_handler_runs_on_the_callers_loop() -> None:
    app = App("async")
    loops: list[asyncio.AbstractEventLoop] = []
    runs: list[str] = []

    async def handler(message: Any, context: Any) -> str:
        loops.append(asyncio.get_running_loop())
        runs.append(message)
        if message == "fail":
            raise RuntimeError("the handler's own error")
        return f"handled {message}"

    app.command(Ping)(handler)
    call = app.commands["Ping"].handler

    async def main() -> None:
        assert await anyio.to_thread.run_sync(call, "m", None) == "handled m"
        with pytest.raises(RuntimeError, match="the handler's own error"):
            await anyio.to_thread.run_sync(call, "fail", None)
        assert loops == [asyncio.get_running_loop()] * 2

    anyio.run(main)
    assert runs == ["m", "fail"]
