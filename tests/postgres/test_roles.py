"""Roles as separate processes: two command, two projector and two query processes on the same
PostgreSQL stores, driven through HTTP."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from projectionist import Runtime
from projectionist_examples.shop import RegisterProduct, create_app
from tests.conftest import PostgresDatabases
from tests.postgres.conftest import Admin, Server, Servers, database_name
from tests.postgres.shopcheck import Ask, assert_read_models_match

WAIT_MS = 15_000


@dataclass
class Cluster:
    """Two processes of each role on one pair of stores; commands and queries go round-robin."""

    write: str
    read: str
    commands: list[Server]
    projectors: list[Server]
    queries: list[Server]
    watch: ConnectionWatch

    def __post_init__(self) -> None:
        self._next_command = itertools.cycle(self.commands)
        self._next_query = itertools.cycle(self.queries)

    def command(self, name: str, body: dict[str, Any], status: int = 200) -> int:
        """Sends a command to the next command process; returns its position."""
        server = next(self._next_command)
        response = server.command(name, body)
        assert response.status_code == status, (server.name, response.text)
        return int(response.json().get("position", 0))

    def query(self, name: str, min_position: int, **params: Any) -> Any:
        """Asks the next query process, once the read models applied `min_position`."""
        server = next(self._next_query)
        response = server.query(name, min_position=min_position, wait_ms=WAIT_MS, **params)
        assert response.status_code == 200, (server.name, response.text)
        return response.json()["data"]

    def ask(self, min_position: int) -> Ask:
        return lambda name, params: self.query(name, min_position, **params)


class ConnectionWatch:
    """Samples pg_stat_activity: which database each named process connected to."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.seen: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(0.05):
                return

    def sample(self) -> None:
        rows = self.admin.rows("SELECT application_name, datname FROM pg_stat_activity"
                               " WHERE application_name LIKE 'pjtest-%'")
        self.seen.update((str(app), str(db)) for app, db in rows)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sample()

    def databases(self, prefix: str) -> set[str]:
        return {db for app, db in self.seen if app.startswith(prefix)}


WRITE_AUDIT = (
    "CREATE TABLE pjtest_writes (app text NOT NULL, operation text NOT NULL, tbl text)",
    """CREATE FUNCTION pjtest_note_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO pjtest_writes VALUES (current_setting('application_name'), TG_OP,
                                          TG_TABLE_NAME);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION pjtest_note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO pjtest_writes VALUES (current_setting('application_name'), tg_tag, NULL);
    END $$""",
    "CREATE EVENT TRIGGER pjtest_ddl ON ddl_command_end EXECUTE FUNCTION pjtest_note_ddl()",
)


def audit_writes(url: str, *, tables: bool) -> None:
    """Records who changes the database: its DDL (from now on), and with `tables`, every
    insert, update, delete or truncate statement on the tables that exist now."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if not tables:
                for statement in WRITE_AUDIT:
                    connection.exec_driver_sql(statement)
                return
            names = connection.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'pjtest_writes'")).scalars().all()
            for name in names:
                connection.exec_driver_sql(
                    f'CREATE TRIGGER pjtest_note AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE'
                    f' ON "{name}" FOR EACH STATEMENT EXECUTE FUNCTION pjtest_note_write()')
    finally:
        engine.dispose()


def writers(url: str) -> set[str]:
    """The application names that changed the database since audit_writes()."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(connection.execute(
                sa.text("SELECT DISTINCT app FROM pjtest_writes")).scalars())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cluster(pg_databases: PostgresDatabases,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two processes of each role on two fresh databases, started at once."""
    write, read = pg_databases.create("pjw"), pg_databases.create("pjr")
    audit_writes(read, tables=False)
    admin = Admin()
    servers = Servers(tmp_path_factory.mktemp("cluster"))
    try:
        with ConnectionWatch(admin) as watch:
            started = {
                role: [servers.start(f"pjtest-{role}-{n}", roles=role, store=write,
                                     read_store=read, wait=False) for n in (1, 2)]
                for role in ("command", "projector", "query")
            }
            for group in started.values():
                for server in group:
                    server.wait_ready()
            audit_writes(read, tables=True)
            yield Cluster(write, read, started["command"], started["projector"],
                          started["query"], watch)
    finally:
        servers.stop_all()
        admin.close()


def test_the_shop_runs_through_separate_command_projector_and_query_processes(
    cluster: Cluster,
) -> None:
    c = cluster
    for sku, price in (("sku-a", 250), ("sku-b", 1000)):
        c.command("RegisterProduct", {"sku": sku, "name": f"Product {sku}", "price_cents": price})
    c.command("RestockProduct", {"sku": "sku-a", "quantity": 10})
    c.command("RestockProduct", {"sku": "sku-b", "quantity": 5})
    orders = {
        "o1": ("alice", {"sku-a": 2}), "o2": ("alice", {"sku-b": 1}),
        "o3": ("bob", {"sku-a": 1, "sku-b": 1}), "o4": ("bob", {"sku-a": 3}),
    }
    prices = {"sku-a": 250, "sku-b": 1000}
    totals = {}
    for order_id, (customer, lines) in orders.items():
        position = c.command("PlaceOrder", {
            "order_id": order_id, "customer_id": customer,
            "lines": [{"sku": sku, "quantity": n} for sku, n in lines.items()],
        })
        order = c.query("GetOrder", position, order_id=order_id)
        totals[order_id] = sum(prices[sku] * n for sku, n in lines.items())
        assert (order["status"], order["total_cents"]) == ("placed", totals[order_id])

    for order_id in ("o1", "o2", "o3"):
        position = c.command("PayOrder", {"order_id": order_id,
                                          "amount_cents": totals[order_id]})
        assert c.query("GetOrder", position, order_id=order_id)["status"] == "paid"
    c.command("ShipOrder", {"order_id": "o1"})
    c.command("CancelOrder", {"order_id": "o2", "reason": "changed my mind"})
    last = c.command("CancelOrder", {"order_id": "o4", "reason": "too slow"})
    c.command("PayOrder", {"order_id": "o4", "amount_cents": totals["o4"]}, status=409)
    c.command("PlaceOrder", {"order_id": "o5", "customer_id": "bob",
                             "lines": [{"sku": "sku-b", "quantity": 99}]}, status=409)

    statuses = {o: c.query("GetOrder", last, order_id=o)["status"] for o in orders}
    assert statuses == {"o1": "shipped", "o2": "cancelled", "o3": "paid", "o4": "cancelled"}
    alice = c.query("CustomerDashboard", last, customer_id="alice")
    bob = c.query("CustomerDashboard", last, customer_id="bob")
    assert (alice["orders"], alice["open_orders"], alice["spent_cents"]) == (2, 0, 500)
    assert (bob["orders"], bob["open_orders"], bob["spent_cents"]) == (2, 1, 1250)
    catalog = {i["sku"]: (i["available"], i["sold"])
               for i in c.query("ProductCatalog", last)["items"] if i["sku"] in prices}
    assert catalog == {"sku-a": (7, 3), "sku-b": (4, 1)}
    [day] = c.query("SalesReport", last)["days"]
    assert (day["orders"], day["revenue_cents"], day["cancellations"]) == (4, 1750, 2)
    # Both query processes give the same answers, and they agree with the write model.
    assert_read_models_match(c.ask(last), c.write)

    for server in c.queries:
        rows = server.http.get("/projections").json()
        assert {row["name"] for row in rows} == set(create_app().projections)
        assert all(row["position"] >= last for row in rows), rows
    for server in (*c.commands, *c.projectors, *c.queries):
        assert server.running, server.output()


def test_query_processes_never_touch_the_write_store_nor_command_processes_the_read_store(
    cluster: Cluster,
) -> None:
    c = cluster
    position = c.command("RegisterProduct", {"sku": "x", "name": "X", "price_cents": 1})
    for _ in range(4):
        position = c.command("RestockProduct", {"sku": "x", "quantity": 1})
    for _ in range(4):
        items = {i["sku"]: i for i in c.query("ProductCatalog", position)["items"]}
        assert items["x"]["available"] == 4

    c.watch.sample()
    write, read = database_name(c.write), database_name(c.read)
    assert c.watch.databases("pjtest-query-") == {read}
    assert write in c.watch.databases("pjtest-command-")
    assert c.watch.databases("pjtest-projector-") == {write, read}
    # Command processes may read the read store (for /projections); they never change it.
    changed_by = writers(c.read)
    assert not {app for app in changed_by if app.startswith("pjtest-command-")}, changed_by
    assert any(app.startswith("pjtest-projector-") for app in changed_by), changed_by


def test_a_query_process_serves_without_any_write_database(
    pg_stores: tuple[str, str], servers: Servers
) -> None:
    write, read = pg_stores
    with Runtime(create_app(), store=write, read_store=read) as runtime:
        runtime.execute(RegisterProduct(sku="s", name="S", price_cents=5))
        runtime.catch_up()
        position = runtime.head()
    missing = write.rsplit("/", 1)[0] + "/pj_no_such_database"
    query = servers.start("pjtest-lonely-query", roles="query", store=missing, read_store=read)
    response = query.query("ProductCatalog", min_position=position)
    assert response.status_code == 200, response.text
    assert [item["sku"] for item in response.json()["data"]["items"]] == ["s"]
