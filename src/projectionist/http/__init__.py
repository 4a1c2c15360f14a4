"""HTTP: command, query and operations routes over FastAPI."""

from .app import create_http_app

__all__ = ["create_http_app"]
