"""Read-your-writes for plain-SQL writers: queries wait for `min_lsn` over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.capture.postgres.conftest import Database
from tests.helpers import ServeSubprocess


def test_min_lsn_waits_for_the_writers_commit_and_refuses_what_it_cannot_read(
    database: Database, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTIONIST_")}
    env["PROJECTIONIST_AUTH"] = "off"
    server = ServeSubprocess(tmp_path, ["billing", "--quiet", "--store", database.url], env)
    try:
        server.wait_until_healthy()
        url = f"{server.url}/queries/CustomerBalance"
        for n in range(5):
            lsn = database.transaction(
                f"INSERT INTO customers (id, name, country, notes) VALUES ('c{n}', 'A', 'DE',"
                " 'hello')",
                f"INSERT INTO invoices (id, customer_id, amount_cents, status)"
                f" VALUES ('i{n}', 'c{n}', 100, 'open')",
            )
            answer = httpx.get(url, params={"customer_id": f"c{n}", "min_lsn": lsn,
                                            "wait_ms": 10000}, timeout=15)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["open_cents"] == 100

        bad = httpx.get(url, params={"customer_id": "c0", "min_lsn": "12-34"}, timeout=15)
        assert bad.status_code == 422, bad.text
        assert "min_lsn" in bad.json()["detail"] and "'12-34' is not an LSN" in bad.json()["detail"]

        late = httpx.get(url, params={"customer_id": "c0", "min_lsn": "FFFFFFFF/0",
                                      "wait_ms": 100}, timeout=15)
        assert late.status_code == 503, late.text
        assert late.json()["error"] == "not_fresh" and "FFFFFFFF/0" in late.json()["detail"]
        assert 1 <= int(late.headers["retry-after"]) <= 30

        capture = httpx.get(f"{server.url}/projections/capture", timeout=15).json()
        assert capture["state"] == "live" and capture["slot"].startswith("projectionist_billing_")
    finally:
        server.stop()
