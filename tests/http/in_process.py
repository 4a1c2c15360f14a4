"""An app's HTTP face called in this process (ASGI), from synchronous tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI


class InProcess:
    """Sends each request through httpx's ASGI transport, on an event loop of its own."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.request(method, path, **options)

        return asyncio.run(send())

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)
