"""Operations routes: health, metrics, projections, rebuilds, swaps, dead letters, the dashboard."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import edge
from ..auth import Principal
from ..errors import InvalidMessage
from ..eventlog.schema import events_table
from ..projections.status import ProjectionStatus
from ..readstore.checkpoints import State
from ..readstore.storage import Cached, Footprint, measure_tables
from ..runtime import Runtime
from ..stores import Store
from .dashboard import DASHBOARD_HTML

PrincipalOf = Callable[[Request], Principal]

_ERROR_DESCRIPTIONS = {
    401: "Missing, invalid or expired token.",
    403: "The token lacks the scope.",
    404: "There is no projection of this name.",
    422: "A parameter is not one the route accepts.",
    409: "A rebuild of this projection is already running, or this process does not run"
    " the projector role.",
    503: "A store is unavailable; retry later.",
}


def _errors(
    *statuses: int, described: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (the `Error` body of docs/http.md).

    `described` replaces the usual description of a status where this route means another thing.
    """
    descriptions = {**_ERROR_DESCRIPTIONS, **(described or {})}
    return {
        status: {
            "description": descriptions[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _route(request: Request) -> str:
    """The route's template (never the raw path, which the client chose) for audit lines."""
    return str(getattr(request.scope.get("route"), "path", "operations"))


class LagHistory:
    """Samples every projection's lag in the background, for the dashboard's plot."""

    def __init__(self, runtime: Runtime, *, every_s: float = 2.0, keep: int = 300) -> None:
        self.runtime = runtime
        self.every_s = every_s
        self.samples: deque[dict[str, Any]] = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="projectionist-lag-history", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def sample(self) -> None:
        try:
            rows = self.runtime.status()
        except Exception:  # a store is down: skip this sample
            return
        now = time.time()
        positions = {_build_label(r): r.position for r in rows}
        last = self.samples[-1] if self.samples else None
        replayed = {}
        if last is not None and now > last["t"]:
            # Events applied per second since the last sample: the replay throughput seen live.
            for label, position in positions.items():
                before = last["positions"].get(label)
                if before is not None:
                    replayed[label] = round(max(0, position - before) / (now - last["t"]), 1)
        self.samples.append(
            {
                "t": now,
                "lag_events": {r.name: r.lag_events for r in rows if r.active},
                "lag_ms": {r.name: r.lag_ms for r in rows if r.active},
                "positions": positions,
                "events_per_s": replayed,
            }
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)


def _build_label(row: ProjectionStatus) -> str:
    return row.name if row.active else f"{row.name} (g{row.generation})"


def health_routes(api: FastAPI, runtime: Runtime) -> None:
    """Adds /healthz and /metrics, open to whoever reaches them (your own network only)."""
    store = runtime.store
    if store is not None:
        # Measured at most every few seconds: a scrape never waits on a walk of a large log.
        log_size = Cached(lambda: _log_footprint(store))
        runtime.metrics.watch_log(log_size.get)
        runtime.on_stop(log_size.close)

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """Answers 200 while the process serves."""
        return {"status": "ok", "roles": list(runtime.roles)}

    @api.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        body = await run_in_threadpool(runtime.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def operation_routes(
    api: FastAPI, runtime: Runtime, principal: PrincipalOf, history: LagHistory
) -> None:
    """Adds the operations routes to `api`: projections, rebuilds, swaps, the dashboard."""

    def watcher(request: Request) -> Principal:
        return _allowed(principal, request, "admin", "queries:*")

    def admin(request: Request) -> Principal:
        return _allowed(principal, request, "admin")

    @api.get("/projections", tags=["operations"], responses=_errors(401, 403, 503))
    async def projections(request: Request) -> list[dict[str, Any]]:
        """Every projection: state, position, head, lag and dead letters; rebuilds too."""
        watcher(request)
        rows = await run_in_threadpool(runtime.status)
        listed = []
        for row in rows:
            body = row.to_json()
            body["generation"] = row.generation
            body["active"] = row.active
            if not row.active:
                body["progress"] = row.progress
            listed.append(body)
        return listed

    @api.get("/projections/capture", tags=["operations"], responses=_errors(401, 403, 503))
    async def capture(request: Request) -> dict[str, Any] | None:
        """Where the capture of the write store stands: slot, state, through_lsn, lag; null
        when the app captures no table of a PostgreSQL store or no capture has started."""
        watcher(request)
        progress = runtime.capture_progress
        found = None if progress is None else await run_in_threadpool(progress.status)
        return None if found is None else found.to_json()

    @api.get("/projections/history", tags=["operations"], responses=_errors(401, 403))
    async def lag_history(request: Request) -> list[dict[str, Any]]:
        """Lag samples of the last minutes, oldest first."""
        watcher(request)
        return list(history.samples)

    _build_routes(api, runtime, admin)

    @api.get(
        "/dashboard", tags=["operations"], response_class=HTMLResponse, responses=_errors(401, 403)
    )
    async def dashboard(request: Request) -> HTMLResponse:
        """A live page of every projection's state and lag (token in ?token= or a header)."""
        token = request.query_params.get("token")
        if token and "authorization" not in request.headers:
            request.scope["headers"] = [
                *request.scope["headers"],
                (b"authorization", f"Bearer {token}".encode()),
            ]
            request = Request(request.scope)
        watcher(request)
        return HTMLResponse(DASHBOARD_HTML.replace("{{title}}", runtime.app.name))


def _build_routes(api: FastAPI, runtime: Runtime, admin: PrincipalOf) -> None:
    """Adds the routes that move builds (admin): start a rebuild, swap a build in."""

    @api.post(
        "/projections/{name}/rebuild",
        tags=["operations"],
        status_code=202,
        responses=_errors(401, 403, 404, 409, 503),
    )
    async def rebuild(name: str, request: Request) -> JSONResponse:
        """Starts a blue/green rebuild; the serving build answers queries until the swap."""
        admin(request)
        build = await run_in_threadpool(runtime.rebuild, name)
        return JSONResponse(
            {
                "name": build.name,
                "version": build.version,
                "generation": build.generation,
                "state": State.REBUILDING.value,
            },
            status_code=202,
        )

    @api.post(
        "/projections/{name}/swap",
        tags=["operations"],
        responses=_errors(
            401,
            403,
            404,
            409,
            422,
            503,
            described={
                409: "The build is behind the serving one, gone or absent, or it has dead"
                " letters and `force` is false."
            },
        ),
        openapi_extra={
            "parameters": [
                {
                    "name": "force",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "boolean", "default": False},
                    "description": "Swap a build with dead letters in too.",
                }
            ]
        },
    )
    async def swap(name: str, request: Request) -> dict[str, Any]:
        """Swaps the build in progress in now; with `force`, one with dead letters too."""
        admin(request)  # before reading parameters: no answer but 401/403 without the scope
        force = _flag(request, "force")
        build = await run_in_threadpool(runtime.swap, name, force=force)
        return {
            "name": build.name,
            "version": build.version,
            "generation": build.generation,
            "state": build.state.value,
        }


def dead_letter_routes(api: FastAPI, runtime: Runtime, principal: PrincipalOf) -> None:
    """Adds the routes of parked events: list them, retry them after a fix (admin)."""

    def admin(request: Request) -> Principal:
        return _allowed(principal, request, "admin")

    @api.get(
        "/projections/{name}/dead-letters",
        tags=["operations"],
        responses=_errors(401, 403, 404, 503),
    )
    async def dead_letters(name: str, request: Request) -> list[dict[str, Any]]:
        """Events of this projection parked after failing, oldest first."""
        admin(request)
        letters = await run_in_threadpool(runtime.list_dead_letters, name)
        return [
            {
                "id": d.id,
                "generation": d.generation,
                "position": d.position,
                "stream": d.stream,
                "type": d.type,
                "reason": d.reason,
                "error": d.error,
                "attempts": d.attempts,
                "parked_at": d.parked_at,
            }
            for d in letters
        ]

    @api.post(
        "/projections/{name}/dead-letters/retry",
        tags=["operations"],
        responses=_errors(401, 403, 404, 409, 503),
    )
    async def retry_dead_letters(name: str, request: Request) -> dict[str, Any]:
        """Applies this projection's parked events again, in order (after a fix)."""
        admin(request)
        applied, failed = await run_in_threadpool(runtime.retry_dead_letters, name)
        return {"applied": applied, "still_parked": failed}


def _log_footprint(store: Store) -> Footprint:
    with store.read() as connection:
        return measure_tables(connection, [events_table.name])


def _flag(request: Request, name: str) -> bool:
    """A boolean query parameter, `true` or `false` (false when absent)."""
    values = request.query_params.getlist(name)
    if not values:
        return False
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise InvalidMessage(f"the parameter {name!r} must be true or false, once")
    return values[0] == "true"


def _allowed(principal: PrincipalOf, request: Request, *scopes: str) -> Principal:
    """The request's principal, if it holds one of `scopes`; Forbidden (audited) otherwise."""
    who = principal(request)
    edge.require(who, *scopes, operation=_route(request))
    return who
