"""A real `projectionist serve` process of the shop, and the shop's API over HTTP."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from projectionist import TokenAuthority
from tests.helpers import ServeSubprocess, projectionist_executable, uid

SECRET = "projectionist-http-tests-secret-0123456789abcdef"
STAFF_SCOPES = ("commands:*", "queries:*")
PROJECTIONS = {"order_summary", "customer_dashboard", "daily_sales", "product_catalog"}
WRITE_TABLES = {
    "projectionist_events": "position",
    "projectionist_idempotency": "key",
    "products": "sku",
    "stock": "sku",
    "orders": "order_id",
    "order_lines": "order_id, line_no",
}


def server_env(secret: str = SECRET) -> dict[str, str]:
    """The environment of a CLI process: the test secret, and no store or auth overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env["PROJECTIONIST_SECRET"] = secret
    return env


def run_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None,
            timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs `projectionist ARGS` to completion and returns its output."""
    return subprocess.run(
        [projectionist_executable(), *args], cwd=cwd, env=dict(env or server_env()),
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )


class Server(ServeSubprocess):
    """A running `projectionist serve` process, its working directory and its output."""

    def __init__(self, cwd: Path, *args: str, secret: str = SECRET) -> None:
        super().__init__(cwd, args, server_env(secret))

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a write-store table, read with sqlite3 beside the server."""
        path = self.cwd / "projectionist.db"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute(f"SELECT * FROM {table} ORDER BY {WRITE_TABLES[table]}").fetchall()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """The event log and the write model, row by row."""
        return {table: self.rows(table) for table in WRITE_TABLES}

    def event_count(self) -> int:
        return len(self.rows("projectionist_events"))


class Api:
    """The shop over HTTP, with tokens minted from the server's secret."""

    def __init__(self, client: httpx.Client, server: Server) -> None:
        self.client = client
        self.server = server
        self.authority = TokenAuthority([SECRET])
        self.staff = self.headers(*STAFF_SCOPES, sub="staff")

    def token(self, *scopes: str, sub: str = "staff", ttl_s: float = 3600.0) -> str:
        return self.authority.issue(scopes, subject=sub, ttl_s=ttl_s)

    def headers(self, *scopes: str, sub: str = "staff", ttl_s: float = 3600.0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*scopes, sub=sub, ttl_s=ttl_s)}"}

    def command(self, name: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
                key: str | None = None, content: bytes | None = None) -> httpx.Response:
        sent = dict(self.staff if headers is None else headers)
        if key is not None:
            sent["Idempotency-Key"] = key
        if content is not None:
            return self.client.post(f"/commands/{name}", content=content,
                                    headers={**sent, "Content-Type": "application/json"})
        return self.client.post(f"/commands/{name}", json=body, headers=sent)

    def query(self, name: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
              *, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return self.client.get(f"/queries/{name}", params=params,
                               headers=dict(self.staff if headers is None else headers))

    def accepted(self, name: str, body: Any) -> dict[str, Any]:
        """Runs a command that must succeed; its 200 body."""
        response = self.command(name, body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def fresh(self, name: str, params: Mapping[str, Any], position: int) -> Any:
        """The data of a query answered at or after `position`."""
        response = self.query(name, {**params, "min_position": position, "wait_ms": 10000})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["freshness"]["position"] >= position
        return answer["data"]

    def head(self) -> int:
        """The head of the log as the read side reports it."""
        response = self.client.get("/projections", headers=self.staff)
        assert response.status_code == 200, response.text
        return max(row["head"] for row in response.json())

    def product(self, *, price_cents: int = 250, stock: int = 10) -> str:
        """A registered, stocked product; its sku."""
        sku = uid("sku")
        self.accepted("RegisterProduct", {"sku": sku, "name": f"Product {sku}",
                                          "price_cents": price_cents})
        if stock:
            self.accepted("RestockProduct", {"sku": sku, "quantity": stock})
        return sku

    def order(self, customer_id: str, lines: Sequence[tuple[str, int]],
              order_id: str | None = None) -> tuple[str, int]:
        """A placed order; its id and the position of its event."""
        order_id = order_id or uid("order")
        body = {"order_id": order_id, "customer_id": customer_id,
                "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines]}
        return order_id, int(self.accepted("PlaceOrder", body)["position"])
