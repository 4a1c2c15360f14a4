"""The orders workload on bare sqlite3, no framework: the floor the W and P figures compare with.

    python bench/floor.py [--orders 5000] [--dir DIR]

W: the same commands, statements and events as the workload's handlers and the event log,
one transaction each, written directly on a sqlite3 connection (WAL, synchronous=FULL).
P: the read model built from that log in batches of 1,000 events, decoded by the workload's
event types, folded in memory and written with one executemany upsert per table per batch.
Prints wall-clock rates and the CPU time per command or event (the steadier figure on a busy
machine); put --dir on the disk you measure (tmpfs shows the CPU-bound rate).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from projectionist_bench.workload import (
    AddOrderNote,
    DeliverOrder,
    OrderDelivered,
    OrderNoteAdded,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    PayOrder,
    PlaceOrder,
    ShipOrder,
    command_sequence,
    create_app,
)

SCHEMA = """
CREATE TABLE orders (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
                     total_cents INTEGER NOT NULL);
CREATE TABLE order_lines (order_id TEXT REFERENCES orders, line_no INTEGER, sku TEXT,
                          quantity INTEGER, unit_price_cents INTEGER,
                          PRIMARY KEY (order_id, line_no));
CREATE TABLE order_notes (note_id INTEGER PRIMARY KEY, order_id TEXT REFERENCES orders,
                          note TEXT);
CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
                     version INTEGER NOT NULL, type TEXT NOT NULL,
                     schema_version INTEGER NOT NULL, data TEXT NOT NULL,
                     metadata TEXT NOT NULL, recorded_at REAL NOT NULL,
                     UNIQUE (stream, version));
"""
READ_SCHEMA = """
CREATE TABLE order_summary (order_id TEXT PRIMARY KEY, customer_id TEXT, status TEXT,
                            total_cents INTEGER, item_count INTEGER, updated_at REAL);
CREATE TABLE customer_stats (customer_id TEXT PRIMARY KEY, orders INTEGER, spent_cents INTEGER);
CREATE TABLE checkpoint (name TEXT PRIMARY KEY, position INTEGER);
INSERT INTO checkpoint VALUES ('order_views', 0);
"""
STATUS = {PayOrder: "paid", ShipOrder: "shipped", DeliverOrder: "delivered"}


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def write(db: sqlite3.Connection, orders: int) -> tuple[float, float, int]:
    commands = list(command_sequence(0, orders * 4))

    def append(stream: str, event: Any) -> None:
        row = db.execute("SELECT max(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        metadata = json.dumps({"event_id": str(uuid.uuid4()), "command_id": str(uuid.uuid4())})
        db.execute(
            "INSERT INTO events (stream, version, type, schema_version, data, metadata,"
            " recorded_at) VALUES (?, ?, ?, 1, ?, ?, ?)",
            (stream, (row[0] or 0) + 1, event.type_name, event.model_dump_json(), metadata,
             time.time()),
        )

    wall, cpu = time.perf_counter(), time.process_time()
    for command in commands:
        db.execute("BEGIN IMMEDIATE")
        stream = f"order-{command.order_id}"  # type: ignore[attr-defined]
        if isinstance(command, PlaceOrder):
            taken = db.execute("SELECT 1 FROM orders WHERE order_id = ?",
                               (command.order_id,)).fetchone()
            assert taken is None
            total = sum(line.quantity * line.unit_price_cents for line in command.lines)
            db.execute("INSERT INTO orders VALUES (?, ?, 'placed', ?)",
                       (command.order_id, command.customer_id, total))
            db.executemany("INSERT INTO order_lines VALUES (?, ?, ?, ?, ?)", [
                (command.order_id, n, line.sku, line.quantity, line.unit_price_cents)
                for n, line in enumerate(command.lines)])
            append(stream, OrderPlaced(order_id=command.order_id,
                                       customer_id=command.customer_id, lines=command.lines,
                                       total_cents=total))
        else:
            order = db.execute("SELECT customer_id, status, total_cents FROM orders"
                               " WHERE order_id = ?", (command.order_id,)).fetchone()
            if isinstance(command, AddOrderNote):
                db.execute("INSERT INTO order_notes (order_id, note) VALUES (?, ?)",
                           (command.order_id, command.note))
                append(stream, OrderNoteAdded(order_id=command.order_id, note=command.note))
            else:
                db.execute("UPDATE orders SET status = ? WHERE order_id = ?",
                           (STATUS[type(command)], command.order_id))
                if isinstance(command, PayOrder):
                    event: Any = OrderPaid(order_id=command.order_id, customer_id=order[0],
                                           amount_cents=command.amount_cents)
                elif isinstance(command, ShipOrder):
                    event = OrderShipped(order_id=command.order_id)
                else:
                    event = OrderDelivered(order_id=command.order_id)
                append(stream, event)
        db.execute("COMMIT")
    return time.perf_counter() - wall, time.process_time() - cpu, len(commands)


def catch_up(log: sqlite3.Connection, read: sqlite3.Connection) -> tuple[float, float, int]:
    decode = create_app().registry.decode_event
    position = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while True:
        rows = log.execute("SELECT position, type, schema_version, data, recorded_at FROM events"
                           " WHERE position > ? ORDER BY position LIMIT 1000",
                           (position,)).fetchall()
        if not rows:
            break
        summaries: dict[str, list[Any]] = {}
        customers: dict[str, list[int]] = {}
        read.execute("BEGIN IMMEDIATE")
        for _, kind, schema_version, data, at in rows:
            event: Any = decode(kind, schema_version, data)
            if isinstance(event, OrderPlaced):
                summaries[event.order_id] = [
                    event.order_id, event.customer_id, "placed", event.total_cents,
                    sum(line.quantity for line in event.lines), at]
                customers.setdefault(event.customer_id, [0, 0])[0] += 1
                continue
            summary = summaries.get(event.order_id)
            if summary is None:
                summary = summaries[event.order_id] = list(read.execute(
                    "SELECT * FROM order_summary WHERE order_id = ?", (event.order_id,)
                ).fetchone())
            summary[5] = at
            if isinstance(event, OrderPaid):
                summary[2] = "paid"
                customers.setdefault(event.customer_id, [0, 0])[1] += event.amount_cents
            elif isinstance(event, OrderShipped):
                summary[2] = "shipped"
            elif isinstance(event, OrderDelivered):
                summary[2] = "delivered"
        read.executemany(
            "INSERT INTO order_summary VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id)"
            " DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            list(summaries.values()))
        read.executemany(
            "INSERT INTO customer_stats VALUES (?, ?, ?) ON CONFLICT (customer_id) DO UPDATE"
            " SET orders = orders + excluded.orders,"
            " spent_cents = spent_cents + excluded.spent_cents",
            [(customer, n, spent) for customer, (n, spent) in customers.items()])
        position = rows[-1][0]
        read.execute("UPDATE checkpoint SET position = ?", (position,))
        read.execute("COMMIT")
    return time.perf_counter() - wall, time.process_time() - cpu, position


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    options = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="projectionist-floor-", dir=options.dir) as folder:
        log = connect(Path(folder) / "write.db")
        log.executescript(SCHEMA)
        wall, cpu, count = write(log, options.orders)
        figures.update(write_cmds_per_s=count / wall, write_cpu_us_per_cmd=cpu / count * 1e6)
        print(f"W floor: {count / wall:,.0f} commands/s, {cpu / count * 1e6:.0f} µs CPU each")
        read = connect(Path(folder) / "read.db")
        read.executescript(READ_SCHEMA)
        wall, cpu, count = catch_up(log, read)
        figures.update(catchup_events_per_s=count / wall,
                       catchup_cpu_us_per_event=cpu / count * 1e6)
        print(f"P floor: {count / wall:,.0f} events/s, {cpu / count * 1e6:.1f} µs CPU each")
        rows, total = read.execute("SELECT count(*), sum(total_cents) FROM order_summary"
                                   ).fetchone()
        print(f"  order_summary: {rows} rows, sum(total_cents) = {total}")
        log.close()
        read.close()
    if options.json is not None:
        options.json.write_text(json.dumps({"benchmark": "floor", "orders": options.orders,
                                            **figures}, indent=2))


if __name__ == "__main__":
    main()
