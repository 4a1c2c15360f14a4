"""Real `projectionist serve` processes of the shop for the security tests, and their client."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from projectionist import TokenAuthority
from tests.helpers import ServeSubprocess, uid

SECRET = "security-tests-current-secret-0123456789abcdef"
OLD_SECRET = "security-tests-previous-secret-0123456789abcd"
ADMIN_SCOPES = ("admin", "commands:*", "queries:*")
FUZZED: dict[str, int] = {}
"""Requests sent by each fuzzer in this session, for the terminal summary."""


class Server(ServeSubprocess):
    """A running `projectionist serve` of the shop on given stores, with its output in files."""

    def __init__(self, cwd: Path, *, store: str | None = None, read_store: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.store = store or f"sqlite:///{cwd / 'projectionist.db'}"
        args = ["--store", self.store]
        if read_store is not None:
            args += ["--read-store", read_store]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
        environment.update(env if env is not None else {"PROJECTIONIST_SECRET": SECRET})
        super().__init__(cwd, args, environment)
        self._engine: sa.Engine | None = None

    def wait_until_healthy(self) -> Server:  # type: ignore[override]
        super().wait_until_healthy()
        return self

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        super().stop()

    def assert_no_server_errors(self) -> None:
        logged = self.stderr
        assert "unexpected error" not in logged and "Traceback" not in logged, logged[-4000:]

    @property
    def engine(self) -> sa.Engine:
        """An engine on the write store, beside the server."""
        if self._engine is None:
            self._engine = sa.create_engine(self.store, poolclass=sa.NullPool)
        return self._engine

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.text(sql), params).mappings()]

    def event_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM projectionist_events"))


class Api:
    """The shop over HTTP, with tokens signed by the server's current secret."""

    def __init__(self, client: httpx.Client, server: Server,
                 authority: TokenAuthority | None = None) -> None:
        self.client = client
        self.server = server
        self.authority = authority or TokenAuthority([SECRET])
        self.admin = self.headers(*ADMIN_SCOPES, sub="admin")

    def token(self, *scopes: str, sub: str = "staff", ttl_s: float = 3600.0) -> str:
        return self.authority.issue(scopes, subject=sub, ttl_s=ttl_s)

    def headers(self, *scopes: str, sub: str = "staff") -> dict[str, str]:
        return bearer(self.token(*scopes, sub=sub))

    def command(self, name: str, body: Any, *, headers: Mapping[str, str] | None = None,
                content: bytes | None = None) -> httpx.Response:
        sent = dict(self.admin if headers is None else headers)
        if content is not None:
            return self.client.post(f"/commands/{name}", content=content,
                                    headers={**sent, "Content-Type": "application/json"})
        return self.client.post(f"/commands/{name}", json=body, headers=sent)

    def query(self, name: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
              *, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return self.client.get(f"/queries/{name}", params=params,
                               headers=dict(self.admin if headers is None else headers))

    def accepted(self, name: str, body: Any) -> int:
        """Runs a command that must succeed; the position of its last event."""
        response = self.command(name, body)
        assert response.status_code == 200, response.text
        return int(response.json()["position"])

    def fresh(self, name: str, params: Mapping[str, Any], position: int,
              headers: Mapping[str, str] | None = None) -> Any:
        """The data of a query answered at or after `position`."""
        response = self.query(name, {**params, "min_position": position, "wait_ms": 20000},
                              headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def head(self) -> int:
        response = self.client.get("/projections", headers=self.admin)
        assert response.status_code == 200, response.text
        return max(row["head"] for row in response.json())

    def product(self, *, price_cents: int = 250, stock: int = 10, sku: str | None = None) -> str:
        """A registered, stocked product; its sku."""
        sku = sku or uid("sku")
        self.accepted("RegisterProduct", {"sku": sku, "name": f"Product {sku}",
                                          "price_cents": price_cents})
        if stock:
            self.accepted("RestockProduct", {"sku": sku, "quantity": stock})
        return sku

    def order(self, customer_id: str, sku: str, *, quantity: int = 1,
              order_id: str | None = None) -> tuple[str, int]:
        """A placed order; its id and the position of its event."""
        order_id = order_id or uid("order")
        position = self.accepted("PlaceOrder", {
            "order_id": order_id, "customer_id": customer_id,
            "lines": [{"sku": sku, "quantity": quantity}]})
        return order_id, position


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_for(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60.0)
