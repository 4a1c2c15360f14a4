"""The dashboard, rendered by a real headless Chromium against a real `projectionist serve`."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_for
from tests.lifecycle.support import ADMIN_TOKEN, AUTHORITY, REPO, Processes, ServeProcess

CHROMIUM = "/usr/bin/chromium"
OUTPUT = REPO / "test-output"
PROJECTIONS = ["order_summary", "customer_dashboard", "daily_sales", "product_catalog"]


@dataclass
class Row:
    """One rendered `<tr data-projection=...>`: its cells' text and their classes."""

    name: str
    cells: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


class DashboardRows(HTMLParser):
    """The projection rows of the rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self._row: Row | None = None
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-projection"):
            self._row = Row(str(found["data-projection"]))
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._row.cells.append("")
            self._row.classes.append(found.get("class") or "")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._row is not None:
            self._row.cells[-1] += data


def chromium(url: str, workdir: Path, *args: str) -> str:
    """Runs headless Chromium on `url` and returns its stdout; the whole browser is killed
    if it outlives its time. Without Chromium the test fails: `scripts/test.sh` installs it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/test.sh"
                    " installs it)")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={workdir / 'chromium-profile'}",
        "--virtual-time-budget=5000", *args, url,
    ]
    browser = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = browser.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.communicate()
        raise AssertionError("chromium did not finish within 60 s") from None
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
    assert browser.returncode == 0, err[-2000:]
    return out


def rendered_rows(server: ServeProcess, workdir: Path) -> list[Row]:
    dom = chromium(f"{server.url}/dashboard?token={ADMIN_TOKEN}", workdir, "--dump-dom")
    assert '<span id="error"></span>' in dom, dom  # the page loaded its data
    parser = DashboardRows()
    parser.feed(dom)
    return parser.rows


def test_the_dashboard_renders_every_projection_with_its_state_in_chromium(
    backend: str, store_urls: tuple[str, str], processes: Processes
) -> None:
    write, read = store_urls
    stores = ("shop", "--store", write, "--read-store", read)
    # Commands and queries only: with no projector running, lag builds up on purpose.
    server = processes.serve("front", *stores, "--roles", "command,query")
    for i in range(3):
        response = server.http.post("/commands/RegisterProduct", json={
            "sku": f"sku-{i}", "name": f"Product {i}", "price_cents": 100})
        assert response.status_code == 200, response.text
    started = server.http.post("/projections/product_catalog/rebuild")
    assert started.status_code == 202, started.text
    listed = server.http.get("/projections").json()

    rows = rendered_rows(server, processes.workdir)
    assert [row.name for row in rows] == [r["name"] for r in listed]
    assert sorted({row.name for row in rows}) == sorted(PROJECTIONS)
    for row, expected in zip(rows, listed, strict=True):
        # projection, version, state, position, head, lag (events), lag (ms), dead letters
        assert row.cells[0] == expected["name"]
        assert row.cells[2] == expected["state"]
        assert f"state {expected['state']}" in row.classes
        assert row.cells[4] == "3" and row.cells[7] == "0"
        assert row.cells[5] == str(expected["lag_events"])
    states = {(row.name, row.cells[2]) for row in rows}
    assert ("product_catalog", "rebuilding") in states
    assert {state for name, state in states if name != "product_catalog"} <= {
        "catching_up", "stalled"}
    rebuilding = next(row for row in rows if row.cells[2] == "rebuilding")
    assert rebuilding.cells[8].strip() == "0%"  # the progress bar's label

    # The screenshot, kept for people to look at.
    OUTPUT.mkdir(exist_ok=True)
    screenshot = OUTPUT / ("dashboard.png" if backend == "sqlite" else f"dashboard-{backend}.png")
    screenshot.unlink(missing_ok=True)
    chromium(f"{server.url}/dashboard?token={ADMIN_TOKEN}", processes.workdir,
             f"--screenshot={screenshot}", "--window-size=1280,800")
    assert screenshot.is_file()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000

    # A projector starts: the page shows every build caught up and the rebuild swapped in.
    processes.serve("projector", *stores, "--roles", "projector")

    def caught_up() -> bool:
        current = server.http.get("/projections").json()
        return len(current) == 4 and all(r["state"] == "live" for r in current)

    wait_for(caught_up, timeout_s=30, what="every projection live")
    rows = rendered_rows(server, processes.workdir)
    assert sorted((row.name, row.cells[2]) for row in rows) == [
        (name, "live") for name in sorted(PROJECTIONS)]


def test_the_dashboard_needs_a_token_with_admin_or_queries_scope(
    store_urls: tuple[str, str], processes: Processes
) -> None:
    write, read = store_urls
    server = processes.serve("front", "shop", "--store", write, "--read-store", read,
                             "--roles", "query")
    anonymous = httpx.get(f"{server.url}/dashboard")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthenticated"
    forged = httpx.get(f"{server.url}/dashboard", params={"token": "not-a-token"})
    assert forged.status_code == 401
    writer = AUTHORITY.issue(["commands:*"], subject="writer")
    assert httpx.get(f"{server.url}/dashboard", params={"token": writer}).status_code == 403
    assert httpx.get(f"{server.url}/projections",
                     headers={"Authorization": f"Bearer {writer}"}).status_code == 403
    reader = AUTHORITY.issue(["queries:*"], subject="reader")
    page = httpx.get(f"{server.url}/dashboard", params={"token": reader})
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    # The page itself needs the token for its data: without one it shows an error, not data.
    dom = chromium(f"{server.url}/dashboard", processes.workdir, "--dump-dom")
    assert "data-projection" not in dom
