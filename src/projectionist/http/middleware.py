"""The ASGI middleware every request passes: its correlation id, and the count of answers."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from .. import correlation

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class RequestEdge:
    """Gives each request its correlation id (see `correlation`), current while it runs and
    echoed in the answer's X-Request-ID header, and counts every answer by method, route and
    status, refusals before any handler included.

    The route label is the route's path template (`/commands/PlaceOrder`,
    `/projections/{name}/rebuild`) or `unmatched`, so no request can add label values.
    """

    def __init__(self, app: Any, *, metrics: Any, api: FastAPI) -> None:
        self.app = app
        self.counter = metrics.http_responses
        self.exact: dict[str, str] = {}
        self.templated: list[tuple[re.Pattern[str], str]] = []
        for route in api.routes:
            path = getattr(route, "path", "")
            if "{" not in path:
                self.exact[path] = path
            else:
                self.templated.append((route.path_regex, path))  # type: ignore[attr-defined]
        # The counter of each label set, found once: a lookup by labels costs microseconds.
        self._counters: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = correlation.from_headers(scope["headers"])
        header = (b"x-request-id", request_id.encode())
        status = 500

        async def edge_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = correlation.current.set(request_id)
        try:
            await self.app(scope, receive, edge_send)
        finally:
            correlation.current.reset(token)
            self._count(scope["method"], scope["path"], status)

    def _count(self, method: str, path: str, status: int) -> None:
        key = (method, path, status)
        counter = self._counters.get(key)
        if counter is None:
            label = method if method in _METHODS else "other"
            counter = self.counter.labels(label, self._route(path), str(status))
            if len(self._counters) < 10_000:  # paths are the client's: keep the cache bounded
                self._counters[key] = counter
        counter.inc()

    def _route(self, path: str) -> str:
        label = self.exact.get(path)
        if label is not None:
            return label
        for pattern, template in self.templated:
            if pattern.match(path):
                return template
        return "unmatched"
