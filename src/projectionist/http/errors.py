"""Errors as JSON: `{"error": "<code>", "detail": "<sentence>"}`, never a traceback."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    InvalidMessage,
    NotFresh,
    Overloaded,
    ProjectionistError,
    StoreUnavailable,
)

log = logging.getLogger("projectionist.http")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, detail: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": code, "detail": detail, **extra}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every failure answers with the error body of docs/http.md."""

    @app.exception_handler(ProjectionistError)
    async def _projectionist(_request: Request, error: ProjectionistError) -> JSONResponse:
        if isinstance(error, NotFresh):
            response = error_response(
                503, error.code, error.detail, freshness=error.freshness.to_json()
            )
            lag_s = error.freshness.lag_ms / 1000.0
            response.headers["Retry-After"] = str(max(1, min(30, math.ceil(lag_s))))
            return response
        if isinstance(error, StoreUnavailable | Overloaded):
            response = error_response(503, error.code, error.detail)
            response.headers["Retry-After"] = "1"
            return response
        if isinstance(error, InvalidMessage):
            return error_response(422, error.code, error.detail, errors=_plain(error.errors))
        if error.status >= 500:
            log.error("request failed: %s", error, exc_info=error)
        return error_response(error.status, error.code, error.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(
            422,
            "invalid_request",
            "the request does not match its schema",
            errors=_plain(list(error.errors())),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "error")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=error)
        return error_response(
            500, "internal_error", "the server failed to handle this request; it was logged"
        )


def _plain(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without the values that may not be JSON (exceptions, bytes)."""
    return [{k: v for k, v in item.items() if k in ("type", "loc", "msg")} for item in errors]
