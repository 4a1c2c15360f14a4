"""What the OpenAPI document says beyond the routes: the answers of commands and queries (a
query's `data` typed by its result model), errors and freshness."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The command was handled; its events are in the log.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CommandAccepted"}}
        },
    },
    401: _error("Missing, invalid or expired token."),
    403: _error("The token lacks the scope, or a policy refuses."),
    404: _error("Unknown command type."),
    409: _error("Refused by the current state; nothing was written."),
    422: _error("The body does not match the command's schema."),
    503: _error("The write store is unavailable, or too many commands are pending; retry later."),
}

QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer and its freshness.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryAnswer"}}},
    },
    401: _error("Missing, invalid or expired token."),
    403: _error("The token lacks the scope, or a policy refuses."),
    404: _error("Unknown query type, or no such item."),
    422: _error("Bad parameters."),
    503: _error("min_position was not reached within wait_ms, or the read store is down."),
}


def typed_answer(result: str) -> dict[str, Any]:
    """The 200 answer of a query that declares its result model: `data` has its schema."""
    return {
        "description": "The answer and its freshness.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["data", "freshness"],
                    "properties": {
                        "data": {"$ref": f"#/components/schemas/{result}"},
                        "freshness": {"$ref": "#/components/schemas/Freshness"},
                    },
                }
            }
        },
    }


_SHARED_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "Freshness": {
        "type": "object",
        "required": ["position", "head", "lag_events", "lag_ms", "dead_letters"],
        "properties": {
            "position": {"type": "integer"},
            "head": {"type": "integer"},
            "lag_events": {"type": "integer"},
            "lag_ms": {"type": "number"},
            "dead_letters": {"type": "integer"},
        },
    },
    "QueryAnswer": {
        "type": "object",
        "required": ["data", "freshness"],
        "properties": {"data": {}, "freshness": {"$ref": "#/components/schemas/Freshness"}},
    },
    "CommandAccepted": {
        "type": "object",
        "required": ["command_id", "position", "events"],
        "properties": {
            "command_id": {"type": "string"},
            "position": {"type": "integer"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "stream", "version", "position"],
                    "properties": {
                        "type": {"type": "string"},
                        "stream": {"type": "string"},
                        "version": {"type": "integer"},
                        "position": {"type": "integer"},
                    },
                },
            },
        },
    },
}


def install_openapi(api: FastAPI, schemas: dict[str, type[BaseModel]]) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(_SHARED_SCHEMAS)
            for name, model in schemas.items():
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[name] = schema
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
