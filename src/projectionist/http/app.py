"""The FastAPI application: one route per command and query type, plus operations."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import correlation, edge
from ..auth import SYSTEM, Principal, TokenAuthority, principal_from_header
from ..calls import awaits
from ..commands.admission import MAX_PENDING_COMMANDS, Admission
from ..errors import InvalidMessage, NotRegistered
from ..queries.dispatch import Answer
from ..queries.placement import Placement
from ..runtime import Runtime
from .errors import install_error_handlers
from .middleware import RequestEdge
from .openapi import COMMAND_RESPONSES, QUERY_RESPONSES, install_openapi, typed_answer
from .operations import LagHistory, dead_letter_routes, health_routes, operation_routes

MAX_BODY_BYTES = 256 * 1024
MAX_IDEMPOTENCY_KEY = 200
# Visible ASCII, spaces only inside: HTTP trims the ends of a header value.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
MAX_POSITION = 10**18 - 1
QUERY_THREADS = 32


def create_http_app(
    runtime: Runtime,
    *,
    authority: TokenAuthority | None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_pending_commands: int = MAX_PENDING_COMMANDS,
) -> FastAPI:
    """The HTTP face of a runtime; `authority=None` turns authentication off.

    Past `max_pending_commands` commands in progress, a command is answered 503 with
    Retry-After at once, rather than queued without bound.
    """
    history = LagHistory(runtime)
    # Queries have threads of their own: a lighter hand-off than anyio's (no task group, no
    # capacity limiter), and commands waiting for a group commit never hold a query up.
    threads = [_query_threads()]  # a new pool after each shutdown: a lifespan may run again

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        history.start()
        try:
            yield
        finally:
            history.stop()
            done, threads[0] = threads[0], _query_threads()
            done.shutdown(wait=False)

    api = FastAPI(
        lifespan=lifespan,
        title=f"{runtime.app.name} (projectionist)",
        version="1",
        description="Commands change state; queries read denormalized read models and state"
        " their freshness.",
    )
    install_error_handlers(api)

    def principal(request: Request) -> Principal:
        if authority is None:
            return SYSTEM
        return principal_from_header(authority, request.headers.get("authorization"))

    schemas: dict[str, type[BaseModel]] = {}
    if runtime.commands is not None:
        admission = Admission(max_pending_commands)
        _command_routes(api, runtime, principal, max_body_bytes, schemas, admission)
    if runtime.queries is not None:
        _query_routes(api, runtime, principal, schemas, threads)
    health_routes(api, runtime)
    operation_routes(api, runtime, principal, history)
    dead_letter_routes(api, runtime, principal)
    install_openapi(api, schemas)
    api.add_middleware(RequestEdge, metrics=runtime.metrics, api=api)
    return api


def _command_routes(
    api: FastAPI,
    runtime: Runtime,
    principal: Any,
    max_body_bytes: int,
    schemas: dict[str, type[BaseModel]],
    admission: Admission,
) -> None:
    bus = runtime.commands
    assert bus is not None

    def route(name: str) -> Any:
        async def handle(request: Request) -> JSONResponse:
            who = principal(request)
            edge.check_scope(who, edge.Kind.COMMAND, name)
            with admission:
                key = _idempotency_key(request)
                command = bus.parse(name, await _read_body(request, max_body_bytes))
                result = await run_in_threadpool(
                    bus.execute,
                    command,
                    who,
                    idempotency_key=key,
                    correlation_id=correlation.current.get(),
                )
            return JSONResponse(result.to_json())

        return handle

    for name, registration in runtime.app.commands.items():
        schemas[name] = registration.command_type
        api.add_api_route(
            f"/commands/{name}",
            route(name),
            methods=["POST"],
            tags=["commands"],
            name=name,
            summary=(registration.command_type.__doc__ or name).strip().splitlines()[0],
            responses=COMMAND_RESPONSES,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "description": f"The command as JSON, at most {max_body_bytes} bytes.",
                    "x-max-body-bytes": max_body_bytes,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    },
                },
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_IDEMPOTENCY_KEY,
                            "pattern": IDEMPOTENCY_KEY_PATTERN,
                        },
                        "description": "The same key and body again return the first answer.",
                    }
                ],
            },
        )

    @api.post("/commands/{name}", tags=["commands"], include_in_schema=False)
    async def unknown_command(name: str) -> None:
        raise NotRegistered(f"there is no command named {name!r}")


def _query_routes(
    api: FastAPI,
    runtime: Runtime,
    principal: Any,
    schemas: dict[str, type[BaseModel]],
    threads: list[ThreadPoolExecutor],
) -> None:
    bus = runtime.queries
    assert bus is not None
    placement = Placement(loop_allowed=bus.read_store.is_sqlite)
    api.state.query_placement = placement

    async def in_thread(ask: Callable[[], Answer]) -> Answer:
        context = contextvars.copy_context()  # the request's correlation id goes along
        return await asyncio.get_running_loop().run_in_executor(threads[0], context.run, ask)

    def route(name: str) -> Any:
        registration = runtime.app.queries[name]

        async def handle(request: Request) -> Response:
            who = principal(request)
            edge.check_scope(who, edge.Kind.QUERY, name)
            params: dict[str, str] = {}
            for key, value in request.query_params.multi_items():
                if key in params:
                    raise InvalidMessage(f"the parameter {key!r} is given more than once")
                params[key] = value
            min_position = _int_param(params.pop("min_position", None), "min_position")
            wait_ms = _int_param(params.pop("wait_ms", None), "wait_ms")
            min_lsn = params.pop("min_lsn", None)
            query = bus.parse(name, params)
            ask = functools.partial(
                bus.ask, query, who, min_position=min_position, wait_ms=wait_ms, min_lsn=min_lsn
            )
            if awaits(registration.handler) or awaits(registration.policy):
                answer = await run_in_threadpool(ask)  # awaited on this loop (calls.py)
            elif min_position is not None or min_lsn is not None:
                answer = await in_thread(ask)  # it may wait: never on the loop
            elif placement.on_loop(name):
                answer = placement.timed(name, ask)
            else:
                answer = await in_thread(functools.partial(placement.timed, name, ask))
            return Response(answer.json_bytes(), media_type="application/json")

        return handle

    lsn = bus.lsn_positions is not None
    for name, registration in runtime.app.queries.items():
        query_type = registration.query_type
        schemas[name] = query_type
        responses = QUERY_RESPONSES
        if registration.result is not None:
            schemas[f"{name}Result"] = registration.result
            responses = {**QUERY_RESPONSES, 200: typed_answer(f"{name}Result")}
        api.add_api_route(
            f"/queries/{name}",
            route(name),
            methods=["GET"],
            tags=["queries"],
            name=name,
            summary=(query_type.__doc__ or name).strip().splitlines()[0],
            responses=responses,
            openapi_extra={"parameters": _query_parameters(query_type, lsn=lsn)},
        )

    @api.get("/queries/{name}", tags=["queries"], include_in_schema=False)
    async def unknown_query(name: str) -> None:
        raise NotRegistered(f"there is no query named {name!r}")


def _query_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="projectionist-query")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidMessage(f"the body is {declared} bytes; the limit is {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise InvalidMessage(f"the body is larger than the limit of {limit} bytes")
    return bytes(body)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidMessage(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            " (spaces only inside)"
        )
    return key


def _int_param(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_POSITION)):
        raise InvalidMessage(f"{name} must be a whole number of 0 or more, got {value[:40]!r}")
    return int(value)


def _query_parameters(query_type: type[BaseModel], *, lsn: bool) -> list[dict[str, Any]]:
    """The query's fields as parameters, then the freshness ones (`min_lsn` where the
    process knows how far the capture of a PostgreSQL store has read)."""
    schema = query_type.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    parameters = [
        {"name": field, "in": "query", "required": field in required, "schema": spec}
        for field, spec in schema.get("properties", {}).items()
    ]
    parameters += [
        {
            "name": "min_position",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION},
            "description": "Wait until the read models have applied this position.",
        },
        {
            "name": "wait_ms",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0, "maximum": 30000, "default": 2000},
            "description": "How long to wait for min_position" + (" or min_lsn." if lsn else "."),
        },
    ]
    if not lsn:
        return parameters
    parameters += [
        {
            "name": "min_lsn",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"},
            "description": "Wait until every captured change committed before this LSN"
            " (a writer's pg_current_wal_lsn() after its commit) is in the read models.",
        },
    ]
    return parameters
