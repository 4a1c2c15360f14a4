"""The bare stack: the shop's GetOrder as a minimal FastAPI route, the anchor of `bench http`.

The same server stack as `projectionist serve` (uvicorn in one process, started the same way),
reading the same document from the same read store with the driver directly (sqlite3, or
psycopg for PostgreSQL): one `SELECT doc ... WHERE key = ?` on the documents table of the
serving build of the shop's `order_summary` projection, answered as `{"data": <doc>}`.

What it leaves out, so that projectionist's GetOrder beside it shows what the framework costs:
no bearer token (no auth at all), no query model validation, no checkpoint read per request
(the table is found once, at start), no freshness in the answer, no metrics. The bench starts
it only after the shop is seeded and caught up, and runs no rebuild while it serves, so the
table it found at start stays the serving one.

    python -m projectionist_bench.bare --read-store URL --port P [--host H]
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from projectionist.readstore.tables import physical_name
from projectionist_examples.shop.projections import order_summary, orders

PROJECTION = order_summary.name
"""The shop's projection that keeps one document per order."""
COLLECTION = orders.name
"""Its document collection; each build's table is `<collection>_g<generation>`."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SERVING = ("SELECT generation, tables FROM projectionist_projections"
            " WHERE name = {p} AND active")


class Reader:
    """Reads one document by key with the database's own driver, one connection per thread
    (the threads of the server's thread pool, which runs the route)."""

    def __init__(self, read_store: str) -> None:
        scheme, _, rest = read_store.partition("://")
        backend = scheme.split("+", 1)[0]
        self._connect: Callable[[], Any]
        if backend == "sqlite":
            path = rest.removeprefix("/").split("?", 1)[0]
            if path in ("", ":memory:"):
                raise ValueError("the bare server needs a SQLite file, not an in-memory store")
            self._connect = lambda: _sqlite(path)
            self._placeholder = "?"
        elif backend == "postgresql":
            conninfo = f"postgresql://{rest}"
            self._connect = lambda: _postgresql(conninfo)
            self._placeholder = "%s"
        else:
            raise ValueError(f"unsupported read store {scheme!r}: use sqlite or postgresql")
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()
        self.table = self._serving_table()
        self._select = f"SELECT doc FROM {self.table} WHERE key = {self._placeholder}"

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            with self._lock:
                self._opened.append(connection)
        return connection

    def close(self) -> None:
        """Closes every thread's connection (the server has stopped serving)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()

    def _serving_table(self) -> str:
        """The documents table of the serving build of `order_summary`."""
        cursor = self._connection().execute(_SERVING.format(p=self._placeholder), (PROJECTION,))
        row = cursor.fetchone()
        if row is None:
            raise LookupError(f"the read store has no serving build of {PROJECTION!r}")
        generation, tables = int(row[0]), json.loads(row[1])
        table = physical_name(COLLECTION, generation)
        if table not in tables or not _IDENTIFIER.fullmatch(table):
            raise LookupError(f"build {generation} of {PROJECTION!r} has tables {tables},"
                              f" not {table!r}")
        return table

    def get(self, key: str) -> str | None:
        """The document's JSON text, or None."""
        row = self._connection().execute(self._select, (key,)).fetchone()
        return None if row is None else str(row[0])


def _sqlite(path: str) -> sqlite3.Connection:
    # Autocommit: each SELECT is its own (WAL) read transaction, as a plain app would run it.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


def _postgresql(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=3)


def create_app(read_store: str) -> FastAPI:
    """The bare app: GET /queries/GetOrder?order_id=... (in a worker thread), the same at
    /loop/queries/GetOrder (on the event loop), and GET /healthz."""
    reader = Reader(read_store)

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            reader.close()

    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    api.state.reader = reader

    @api.get("/healthz")
    async def healthz() -> Response:
        return PlainTextResponse("ok")

    def answer(order_id: str) -> Response:
        doc = reader.get(order_id)
        if doc is None:
            return JSONResponse({"error": f"there is no order {order_id!r}"}, status_code=404)
        return JSONResponse({"data": json.loads(doc)})

    # A plain (not async) route: FastAPI runs it in its thread pool, the usual way to serve a
    # blocking read.
    @api.get("/queries/GetOrder")
    def get_order(order_id: str) -> Response:
        return answer(order_id)

    # An async route that reads on the event loop, as projectionist answers a query that has
    # proven quick on a SQLite read store.
    @api.get("/loop/queries/GetOrder")
    async def get_order_on_the_loop(order_id: str) -> Response:
        return answer(order_id)

    return api


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m projectionist_bench.bare",
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument("--read-store", required=True, help="The read store's URL.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)
    import uvicorn

    api = create_app(options.read_store)
    # As `projectionist serve` runs it: one process, uvicorn's default loop and HTTP parser.
    uvicorn.run(api, host=options.host, port=options.port, log_level="warning")


if __name__ == "__main__":
    main()
