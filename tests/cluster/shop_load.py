"""The shop's load across hosts, and the exactly-once check of what the read side shows.

Worker threads place orders and pay, ship or cancel them, sending each command to the command
hosts in turn. A command that gets no answer (a host is cut off, killed, or answers 503) is sent
again to the next host with the same Idempotency-Key, so it takes effect once however often it
is sent. What the read side shows is then compared with SQL over the write store and the log.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa

from tests.lifecycle.support import bearer

PRICES = {"tea": 350, "coffee": 420, "cake": 275}
CUSTOMERS = 8
COMMAND_DEADLINE_S = 90.0


class CommandSender:
    """Commands over HTTP to the command hosts, each retried on the next host until answered."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.clients = [httpx.Client(base_url=url, timeout=5.0, headers=bearer()) for url in urls]
        self._turn = itertools.count()
        self.resent = 0

    def send(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = uuid.uuid4().hex
        first = next(self._turn)
        deadline = time.monotonic() + COMMAND_DEADLINE_S
        for attempt in itertools.count():
            client = self.clients[(first + attempt) % len(self.clients)]
            try:
                response = client.post(f"/commands/{name}", json=body,
                                       headers={"Idempotency-Key": key})
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                answer: dict[str, Any] = response.json()
                return answer
            if response is not None and response.status_code not in (502, 503, 504):
                raise AssertionError(f"{name} {body} failed: {response.status_code}"
                                     f" {response.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} {body} found no command host in"
                                     f" {COMMAND_DEADLINE_S:g} s")
            self.resent += 1
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        raise AssertionError("unreachable")

    def close(self) -> None:
        for client in self.clients:
            client.close()


class Load:
    """Orders placed, then paid, shipped or cancelled, by worker threads until stopped."""

    def __init__(self, command_urls: Sequence[str], *, workers: int = 4) -> None:
        self.command_urls = list(command_urls)
        self.workers = workers
        self.prefix = uuid.uuid4().hex[:6]
        self.numbers = itertools.count()
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.answered = 0
        self.resent = 0
        self._lock = threading.Lock()

    def prepare(self) -> None:
        sender = CommandSender(self.command_urls)
        try:
            for sku, price in PRICES.items():
                sender.send("RegisterProduct", {"sku": sku, "name": sku.title(),
                                                "price_cents": price})
                sender.send("RestockProduct", {"sku": sku, "quantity": 1_000_000})
        finally:
            sender.close()

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._work, name=f"load-{n}", daemon=True)
                        for n in range(self.workers)]
        for thread in self.threads:
            thread.start()

    def stop_soon(self) -> None:
        """No order starts after this; the ones under way finish."""
        self.stopping.set()

    @property
    def finished(self) -> bool:
        return all(not thread.is_alive() for thread in self.threads)

    def join(self, timeout_s: float = 120.0) -> None:
        self.stop_soon()
        for thread in self.threads:
            thread.join(timeout_s)
        if self.errors:
            raise self.errors[0]
        assert self.finished, "the load's threads did not finish"

    def _work(self) -> None:
        sender = CommandSender(self.command_urls)
        try:
            while not self.stopping.is_set():
                self._order(sender, next(self.numbers))
        except BaseException as error:  # handed to the test by join()
            self.errors.append(error)
        finally:
            with self._lock:
                self.resent += sender.resent
            sender.close()

    def _order(self, sender: CommandSender, number: int) -> None:
        order_id = f"{self.prefix}-{number}"
        skus = list(PRICES)
        lines = [{"sku": skus[(number + k) % len(skus)], "quantity": 1 + (number + k) % 3}
                 for k in range(1 + number % 2)]
        total = sum(PRICES[line["sku"]] * int(line["quantity"]) for line in lines)
        sender.send("PlaceOrder", {"order_id": order_id,
                                   "customer_id": f"c{number % CUSTOMERS}", "lines": lines})
        steps: list[tuple[str, dict[str, Any]]] = []
        if number % 7 != 0:
            steps.append(("PayOrder", {"order_id": order_id, "amount_cents": total}))
            if number % 3 == 0:
                steps.append(("ShipOrder", {"order_id": order_id}))
        if number % 5 == 0 and number % 3 != 0:
            steps.append(("CancelOrder", {"order_id": order_id, "reason": "changed my mind"}))
        self._count()
        for name, body in steps:
            if self.stopping.is_set():
                return  # an order may stay where it is: every state is a valid one
            sender.send(name, body)
            self._count()

    def _count(self) -> None:
        with self._lock:
            self.answered += 1


@dataclass
class Shop:
    """What the read side should show (or shows): orders, dashboards, sales, catalog."""

    orders: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """order id -> (customer, status, total)"""
    customers: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """customer -> (orders, open orders, spent)"""
    sales: tuple[int, int, int] = (0, 0, 0)
    """(orders, revenue, cancellations) over every day"""
    catalog: dict[str, tuple[int, int]] = field(default_factory=dict)
    """sku -> (available, sold)"""


class Stores:
    """SQL over the write store and the read store, from the root namespace (outside faults)."""

    def __init__(self, write_url: str, read_url: str) -> None:
        self.write = sa.create_engine(write_url, pool_size=2)
        self.read = sa.create_engine(read_url, pool_size=2)

    def head(self) -> int:
        with self.write.connect() as connection:
            return int(connection.exec_driver_sql(
                "SELECT coalesce(max(position), 0) FROM projectionist_events").scalar_one())

    def positions(self) -> dict[str, int]:
        """The checkpoint of each projection's serving build."""
        with self.read.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT name, position FROM projectionist_projections WHERE active").all()
        return {name: int(position) for name, position in rows}

    def lag(self) -> int:
        """Events of the log the slowest projection has not applied."""
        head = self.head()
        positions = self.positions()
        return head - min(positions.values()) if positions else head

    def lease_owners(self) -> dict[str, int]:
        """Each live lease: its name -> the pid of the process holding it."""
        with self.read.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT name, owner FROM projectionist_leases WHERE expires_at > :now"),
                {"now": time.time()}).all()
        return {name: int(owner.split(":")[1]) for name, owner in rows}

    def events(self) -> Counter[str]:
        """How many events of each type the log holds."""
        with self.write.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT type, count(*) FROM projectionist_events GROUP BY type").all()
        return Counter({type_: int(count) for type_, count in rows})

    def expected(self) -> Shop:
        """The read side's due, from the write model's tables."""
        shop = Shop()
        with self.write.connect() as connection:
            for order_id, customer, status, total in connection.exec_driver_sql(
                    "SELECT order_id, customer_id, status, total_cents FROM orders"):
                shop.orders[order_id] = (customer, status, int(total))
            stock = {sku: int(on_hand) - int(reserved) for sku, on_hand, reserved in
                     connection.exec_driver_sql("SELECT sku, on_hand, reserved FROM stock")}
            sold: Counter[str] = Counter()
            for sku, quantity in connection.exec_driver_sql(
                    "SELECT l.sku, l.quantity FROM order_lines l JOIN orders o"
                    " ON o.order_id = l.order_id WHERE o.status IN ('paid', 'shipped')"):
                sold[sku] += int(quantity)
        per_customer: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        revenue = cancellations = 0
        for customer, status, total in shop.orders.values():
            counters = per_customer[customer]
            counters[0] += 1
            counters[1] += status in ("placed", "paid")
            if status in ("paid", "shipped"):
                counters[2] += total
                revenue += total
            cancellations += status == "cancelled"
        shop.customers = {c: (n, o, s) for c, (n, o, s) in per_customer.items()}
        shop.sales = (len(shop.orders), revenue, cancellations)
        shop.catalog = {sku: (available, sold[sku]) for sku, available in stock.items()}
        return shop

    def dispose(self) -> None:
        self.write.dispose()
        self.read.dispose()


def observed(query_url: str, position: int) -> Shop:
    """What a query process answers, once it has applied `position`."""
    shop = Shop()
    fresh = {"min_position": position, "wait_ms": 20000}
    with httpx.Client(base_url=query_url, timeout=30.0, headers=bearer()) as client:

        def ask(query: str, **params: Any) -> dict[str, Any]:
            response = client.get(f"/queries/{query}", params={**fresh, **params})
            assert response.status_code == 200, f"{query_url} {query}: {response.text}"
            data: dict[str, Any] = response.json()["data"]
            return data

        after = None
        while True:
            page = ask("ListOrders", limit=100, **({"after": after} if after else {}))
            for order in page["items"]:
                shop.orders[order["order_id"]] = (order["customer_id"], order["status"],
                                                  order["total_cents"])
            after = page["next"]
            if after is None:
                break
        for customer in sorted({customer for customer, _, _ in shop.orders.values()}):
            board = ask("CustomerDashboard", customer_id=customer)
            shop.customers[customer] = (board["orders"], board["open_orders"],
                                        board["spent_cents"])
        days = ask("SalesReport")["days"]
        shop.sales = (sum(d["orders"] for d in days), sum(d["revenue_cents"] for d in days),
                      sum(d["cancellations"] for d in days))
        shop.catalog = {item["sku"]: (item["available"], item["sold"])
                        for item in ask("ProductCatalog")["items"]}
    return shop


def lost_and_doubled(expected: Shop, seen: Shop, events: Counter[str]) -> tuple[int, int]:
    """(orders the read side misses, order events it applied more than once), counted from
    the dashboards' order counts against the log's OrderPlaced events."""
    lost = len(set(expected.orders) - set(seen.orders))
    doubled = max(0, sum(n for n, _, _ in seen.customers.values()) - events["OrderPlaced"])
    return lost, doubled
