"""The write database goes away: reads keep answering, commands fail fast with 503, and
everything resumes when it returns, without a restart."""

from __future__ import annotations

import time

import pytest

from tests.postgres.conftest import Admin, Server, Servers, database_name

WAIT_MS = 20_000
PROMPT_S = 5.0  # the connect timeout is 3 s: an answer after that is a hang


def place(server: Server, order_id: str) -> int:
    response = server.command("PlaceOrder", {"order_id": order_id, "customer_id": "c",
                                             "lines": [{"sku": "s", "quantity": 1}]})
    assert response.status_code == 200, response.text
    return int(response.json()["position"])


@pytest.mark.parametrize("layout", ["separate", "embedded"])
def test_reads_stay_up_and_commands_answer_503_while_the_write_database_is_down(
    layout: str, pg_stores: tuple[str, str], servers: Servers, admin: Admin
) -> None:
    write, read = pg_stores
    if layout == "separate":
        command, _, query = (
            servers.start(f"pjtest-outage-{role}", roles=role, store=write, read_store=read)
            for role in ("command", "projector", "query")
        )
    else:
        command = query = servers.start("pjtest-outage-all", roles="command,projector,query",
                                        store=write, read_store=read)
    assert command.command("RegisterProduct",
                           {"sku": "s", "name": "S", "price_cents": 300}).status_code == 200
    assert command.command("RestockProduct", {"sku": "s", "quantity": 50}).status_code == 200
    before = place(command, "before")
    queries = (("GetOrder", {"order_id": "before"}), ("ProductCatalog", {}),
               ("CustomerDashboard", {"customer_id": "c"}))
    for name, params in queries:
        answer = query.query(name, **params, min_position=before, wait_ms=WAIT_MS)
        assert answer.status_code == 200, answer.text

    admin.refuse_connections(database_name(write))
    try:
        for _ in range(3):
            for name, params in queries:
                answer = query.query(name, **params)
                assert answer.status_code == 200, answer.text
                assert answer.json()["freshness"]["position"] >= before
            # A client that already holds a token it reached keeps getting answers, too.
            answer = query.query("GetOrder", order_id="before", min_position=before)
            assert answer.status_code == 200, answer.text

        for name, body in (
            ("PlaceOrder", {"order_id": "during", "customer_id": "c",
                            "lines": [{"sku": "s", "quantity": 1}]}),
            ("RestockProduct", {"sku": "s", "quantity": 1}),
            ("PayOrder", {"order_id": "before", "amount_cents": 300}),
        ):
            started = time.monotonic()
            response = command.command(name, body)
            took_s = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert took_s < PROMPT_S, f"{name} took {took_s:.1f} s"
            error = response.json()
            assert error["error"] == "store_unavailable"
            assert database_name(write) in error["detail"]
            assert "Retry-After" in response.headers
        assert command.http.get("/healthz").status_code == 200
    finally:
        admin.allow_connections(database_name(write))

    # Back: commands work at once, and the projector catches up without a restart.
    after = place(command, "after")
    assert after > before
    answer = query.query("GetOrder", order_id="after", min_position=after, wait_ms=WAIT_MS)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["status"] == "placed"
    assert query.query("GetOrder", order_id="during").status_code == 404
    dashboard = query.query("CustomerDashboard", customer_id="c", min_position=after).json()
    assert dashboard["data"]["orders"] == 2
    for server in servers.started:
        assert server.running, server.output()
