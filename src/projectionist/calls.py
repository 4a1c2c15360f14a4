"""Calling the app's code: handlers and policies, checked when registered, run to completion.

The buses and the projector call handlers and policies as plain functions, from worker threads.
A coroutine function is registered as a plain call that runs it to completion: on the event
loop of the calling AnyIO worker thread (an HTTP request's), so that it may await objects bound
to the server's loop, and otherwise on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import anyio.from_thread

from .errors import ConfigurationError

P = ParamSpec("P")
T = TypeVar("T")


def describe(function: object) -> str:
    """The name errors give a handler: module.qualname (a callable object's, its class's)."""
    target = _unwrap_partial(function)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(qualname, str):
        # Instances have no __qualname__ of their own: name the class of a callable object.
        target = type(target)
        qualname = target.__qualname__
    module = getattr(target, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def check_parameters(function: object, role: str, parameters: tuple[str, str]) -> None:
    """ConfigurationError, naming `role` and the function, unless it takes two arguments.

    Extra parameters with defaults, `*args` and `**kwargs` are fine; a missing or an extra
    required parameter is not.
    """
    wanted = f"two parameters ({', '.join(parameters)})"
    if not callable(function):
        raise ConfigurationError(
            f"{role}, {function!r:.80}, is not callable; it must take {wanted}"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # a builtin that states no signature: nothing to check before its first call
    try:
        signature.bind(object(), object())
    except TypeError:
        raise ConfigurationError(
            f"{role}, {describe(function)}, must take {wanted}; it takes {_plain(signature)}"
        ) from None


def is_coroutine_function(function: object) -> bool:
    """Whether calling `function` makes a coroutine (also a partial or a callable object)."""
    target = _unwrap_partial(function)
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isroutine(target) or inspect.isclass(target):
        return False
    # A callable object: what its class's __call__ is.
    return inspect.iscoroutinefunction(type(target).__call__)


def synchronous(function: Callable[P, Any]) -> Callable[P, Any]:
    """`function` as a plain call; a coroutine it makes is run to completion, awaited."""
    if is_coroutine_function(function):

        def awaited(*args: P.args, **kwargs: P.kwargs) -> Any:
            return run_to_completion(function(*args, **kwargs))

        awaited.awaits = True  # type: ignore[attr-defined]
        return functools.update_wrapper(awaited, function, updated=())

    def plain(*args: P.args, **kwargs: P.kwargs) -> Any:
        result = function(*args, **kwargs)
        if result is None:  # most handlers' answer: nothing to await
            return None
        # A plain function may hand back a coroutine (a sync decorator around an async
        # function): awaited, it does its work; dropped, it would do nothing at all.
        if inspect.iscoroutine(result):
            plain.awaits = True  # type: ignore[attr-defined]  # see `awaits`
            return run_to_completion(result)
        return result

    return functools.update_wrapper(plain, function, updated=())


def awaits(call: object) -> bool:
    """Whether a call made by `synchronous` awaits a coroutine: it wraps a coroutine function,
    or it has returned a coroutine once. Such a call must run in an AnyIO worker thread to be
    awaited on the server's loop."""
    return bool(getattr(call, "awaits", False))


def run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """What the coroutine returns, run from synchronous code (see the module's docstring)."""
    started = False

    async def start() -> T:
        nonlocal started
        started = True
        return await coroutine

    try:
        try:
            return anyio.from_thread.run(start)
        except RuntimeError:
            # Raised by the coroutine: its own error. Raised before it started: this thread
            # is no AnyIO worker (a library caller's, the projector's), or its loop is gone.
            if started:
                raise
        return _run_on_new_loop(start)
    finally:
        if not started:
            coroutine.close()  # never run: closing it spares a "never awaited" warning


def _run_on_new_loop(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(start())
    # This thread runs a loop already (sync code called from a coroutine), and asyncio.run
    # cannot nest: the coroutine gets a loop of its own in a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1, "projectionist-coroutine") as pool:
        return pool.submit(asyncio.run, start()).result()


def _unwrap_partial(function: object) -> object:
    while isinstance(function, functools.partial):
        function = function.func
    return function


def _plain(signature: inspect.Signature) -> str:
    """The signature without annotations: `(command, uow, *, extra)`."""
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))
