"""The raw database with no framework: one-row transactions per second, the ceiling for W."""

from __future__ import annotations

import json
import sqlite3
import time

import sqlalchemy as sa

_PAYLOAD = json.dumps({"order_id": "0" * 36, "customer_id": "cust-000", "amount_cents": 12345,
                       "lines": [{"sku": "SKU-0000", "quantity": 1, "unit_price_cents": 250}]})


def one_row_transactions(store_url: str, count: int = 2000) -> float:
    """Transactions/s, each inserting one row, with the durability projectionist uses."""
    if store_url.startswith("sqlite:///"):
        return _sqlite(store_url.removeprefix("sqlite:///"), count)
    return _postgres(store_url, count)


def _sqlite(path: str, count: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, data TEXT NOT NULL)")
        began = time.perf_counter()
        for _ in range(count):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO raw (data) VALUES (?)", (_PAYLOAD,))
            connection.execute("COMMIT")
        return count / (time.perf_counter() - began)
    finally:
        connection.close()


def _postgres(store_url: str, count: int) -> float:
    import psycopg

    conninfo = sa.engine.make_url(store_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("CREATE TABLE raw (id BIGSERIAL PRIMARY KEY, data TEXT NOT NULL)")
        began = time.perf_counter()
        for _ in range(count):
            with connection.transaction():
                connection.execute("INSERT INTO raw (data) VALUES (%s)", (_PAYLOAD,))
        return count / (time.perf_counter() - began)
