"""Fuzzing the live API: schemathesis from `/openapi.json`, and random bodies to every command.

Rerun with `pytest tests/security/test_fuzz.py -q -rA` (the summary prints the request counts).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks

from tests.conftest import BACKENDS, PostgresDatabases
from tests.security.servers import ADMIN_SCOPES, FUZZED, Api, Server, client_for

EXAMPLES_WITH_TOKENS = 120
EXAMPLES_WITHOUT_TOKENS = 30
RANDOM_BODIES = 300
OPEN_ROUTES = {"GET /healthz", "GET /metrics"}
SEEDED_SKUS = ("fuzz-sku-0", "fuzz-sku-1", "fuzz-sku-2")
COMMANDS = ("RegisterProduct", "RestockProduct", "PlaceOrder", "PayOrder", "ShipOrder",
            "CancelOrder")

CHECKS: list[CheckFunction] = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
]

# Refusals of schema-valid requests that depend on state the schema cannot describe, each one
# documented in docs/http.md: a cursor the server never issued, an Idempotency-Key sent again
# with another body.
STATEFUL_REFUSALS = ("is not one this query returned", "idempotency_key_reused")


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shop of its own per backend, so that the state checks see only what the fuzzers did."""
    cwd = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        server = Server(cwd)
    else:
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        server = Server(cwd, store=databases.create("pjfuzzw"),
                        read_store=databases.create("pjfuzzr"))
    try:
        yield server.wait_until_healthy()
    finally:
        server.stop()
    server.assert_no_server_errors()


@pytest.fixture(scope="module")
def fuzz_api(fuzz_server: Server) -> Iterator[Api]:
    with client_for(fuzz_server) as http:
        api = Api(http, fuzz_server)
        seed(api)
        yield api


def seed(api: Api) -> None:
    """Products and orders in every status, for the fuzzers to meet and the checks to count."""
    skus = [api.product(price_cents=price, stock=50, sku=sku)
            for price, sku in zip((0, 199, 2500), SEEDED_SKUS, strict=True)]
    for number, status in enumerate(["placed", "paid", "shipped", "cancelled", "paid"]):
        order_id, _ = api.order(f"customer-{number % 2}", skus[number % 3], quantity=2)
        total = 2 * (0, 199, 2500)[number % 3]
        if status in ("paid", "shipped", "cancelled"):
            api.accepted("PayOrder", {"order_id": order_id, "amount_cents": total})
        if status == "shipped":
            api.accepted("ShipOrder", {"order_id": order_id})
        if status == "cancelled":
            api.accepted("CancelOrder", {"order_id": order_id, "reason": "seed"})


@dataclass
class Findings:
    """What a fuzzing run sent and every distinct failure it met, with an example of each."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def report(self) -> str:
        return "\n\n".join(f"{key}:\n{example}" for key, example in self.failures.items())


def integral(value: Any) -> Any:
    """`5.0` as `5`: a JSON integer written with a fraction is refused here by design (strict
    JSON types), while JSON Schema counts it as an integer, so the fuzzer sends integers."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [integral(item) for item in value]
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    return value


def shaped(case: schemathesis.Case) -> schemathesis.Case:
    """Keeps the documented rules the schema cannot state, and waits short."""
    if isinstance(case.body, dict | list):
        case.body = integral(case.body)
    query = case.query
    if isinstance(query, dict):
        for key, value in list(query.items()):
            query[key] = integral(value)
        days = query.get("day_from"), query.get("day_to")
        if all(isinstance(day, str) for day in days) and days[0] > days[1]:
            query["day_from"], query["day_to"] = days[1], days[0]  # day_from <= day_to
        # Only a valid wait_ms is changed, so that negative cases stay negative.
        waiting = "min_position" in query
        wait = query.get("wait_ms", 2000 if waiting else None)
        if type(wait) is int and 0 <= wait <= 30000:
            if waiting:
                query["wait_ms"] = wait % 50  # an unreached position answers 503 sooner
            else:
                del query["wait_ms"]  # wait_ms is only allowed with min_position
    return case


def fuzz(server: Server, headers: dict[str, str], examples: int) -> Findings:
    """Runs schemathesis over every operation of the live OpenAPI document."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    findings = Findings()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = (operation.as_strategy(GenerationMode.POSITIVE)
                    | operation.as_strategy(GenerationMode.NEGATIVE)).map(shaped)
        sender = _sender(operation.label, headers, findings)
        given(case=strategy)(settings(
            max_examples=examples, deadline=None, database=None,
            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
        )(sender))()
    return findings


def _sender(label: str, headers: dict[str, str], findings: Findings) -> Any:
    """Sends one generated case, checks its answer, and notes each distinct failure."""

    def send(case: schemathesis.Case) -> None:
        try:
            response = case.call(headers=headers, timeout=60)
        except requests.exceptions.InvalidHeader:
            return  # the client will not send it; nothing reached the server
        findings.sent += 1
        findings.statuses[response.status_code] += 1
        problems: list[str] = []
        if response.status_code >= 500 and not (
                response.status_code == 503 and response.json()["error"] == "not_fresh"):
            problems.append("server error")
        if not headers and label not in OPEN_ROUTES and response.status_code != 401:
            problems.append(f"answered {response.status_code} without a token")
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                if (type(failure).__name__ == "RejectedPositiveData"
                        and any(text in response.text for text in STATEFUL_REFUSALS)):
                    continue
                problems.append(f"{type(failure).__name__}: {failure.title}")
        for problem in problems:
            key = (label, problem, response.status_code)
            findings.failures.setdefault(
                key, f"{case.as_curl_command(headers=headers)}\n-> {response.text[:500]}")

    return send


def assert_write_model_and_projections_agree(api: Api) -> None:
    """Catches up, then compares every read model with the write model it derives from."""
    server = api.server
    head = api.head()
    stock = {row["sku"]: row for row in server.rows(
        "SELECT p.sku, p.name, p.price_cents, s.on_hand, s.reserved"
        " FROM products p JOIN stock s ON s.sku = p.sku")}
    sold = {row["sku"]: int(row["sold"]) for row in server.rows(
        "SELECT l.sku, sum(l.quantity) AS sold FROM order_lines l JOIN orders o"
        " ON o.order_id = l.order_id WHERE o.status IN ('paid', 'shipped') GROUP BY l.sku")}
    catalog = {item["sku"]: item for item in api.fresh("ProductCatalog", {}, head)["items"]}
    assert set(catalog) == set(stock)
    for sku, row in stock.items():
        assert catalog[sku] == {"sku": sku, "name": row["name"],
                                "price_cents": row["price_cents"],
                                "available": row["on_hand"] - row["reserved"],
                                "sold": sold.get(sku, 0)}, sku

    orders = {row["order_id"]: row for row in server.rows(
        "SELECT order_id, customer_id, status, total_cents FROM orders")}
    listed: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        page = api.fresh("ListOrders", {"limit": 100, **({"after": after} if after else {})},
                         head)
        listed.update({item["order_id"]: item for item in page["items"]})
        after = page["next"]
        if after is None:
            break
    assert set(listed) == set(orders)
    for order_id, row in orders.items():
        item = listed[order_id]
        assert (item["customer_id"], item["status"], item["total_cents"]) == (
            row["customer_id"], row["status"], row["total_cents"]), order_id

    for customer in {row["customer_id"] for row in orders.values()}:
        mine = [row for row in orders.values() if row["customer_id"] == customer]
        dashboard = api.fresh("CustomerDashboard", {"customer_id": customer}, head)
        assert dashboard["orders"] == len(mine)
        assert dashboard["open_orders"] == sum(r["status"] in ("placed", "paid") for r in mine)
        assert dashboard["spent_cents"] == sum(
            r["total_cents"] for r in mine if r["status"] in ("paid", "shipped"))

    days = api.fresh("SalesReport", {}, head)["days"]
    assert sum(day["orders"] for day in days) == len(orders)
    assert sum(day["cancellations"] for day in days) == sum(
        row["status"] == "cancelled" for row in orders.values())
    assert sum(day["revenue_cents"] for day in days) == sum(
        row["total_cents"] for row in orders.values() if row["status"] in ("paid", "shipped"))


def test_fuzzing_with_admin_tokens_finds_no_failure(fuzz_api: Api) -> None:
    headers = fuzz_api.headers(*ADMIN_SCOPES, sub="fuzzer")
    findings = fuzz(fuzz_api.server, headers, EXAMPLES_WITH_TOKENS)
    FUZZED["schemathesis with admin tokens"] = (
        FUZZED.get("schemathesis with admin tokens", 0) + findings.sent)
    print(f"schemathesis with admin tokens: {findings.sent} requests,"
          f" statuses {dict(sorted(findings.statuses.items()))}")
    assert not findings.failures, findings.report()
    assert findings.statuses[200] > 0 and findings.statuses[422] > 0
    assert_write_model_and_projections_agree(fuzz_api)


def test_fuzzing_without_tokens_finds_no_failure(fuzz_api: Api) -> None:
    before = fuzz_api.server.event_count()
    findings = fuzz(fuzz_api.server, {}, EXAMPLES_WITHOUT_TOKENS)
    FUZZED["schemathesis without tokens"] = (
        FUZZED.get("schemathesis without tokens", 0) + findings.sent)
    print(f"schemathesis without tokens: {findings.sent} requests,"
          f" statuses {dict(sorted(findings.statuses.items()))}")
    assert not findings.failures, findings.report()
    assert fuzz_api.server.event_count() == before
    assert_write_model_and_projections_agree(fuzz_api)


# Random bodies: the log changes only when a command was valid

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=12)
ID = st.sampled_from(SEEDED_SKUS) | TEXT
COUNT = st.integers(min_value=1, max_value=30)
LINES = st.lists(st.fixed_dictionaries({"sku": ID, "quantity": COUNT}), min_size=1, max_size=3)
FIELDS = {
    "RegisterProduct": {"sku": ID, "name": TEXT, "price_cents": COUNT},
    "RestockProduct": {"sku": ID, "quantity": COUNT},
    "PlaceOrder": {"order_id": TEXT, "customer_id": TEXT, "lines": LINES},
    "PayOrder": {"order_id": TEXT, "amount_cents": COUNT},
    "ShipOrder": {"order_id": TEXT},
    "CancelOrder": {"order_id": TEXT, "reason": TEXT},
}
OUTCOMES: defaultdict[str, Counter[int]] = defaultdict(Counter)
"""The statuses the random bodies met, by server."""


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A command name and a body: random bytes, random JSON, the command's fields holding
    random JSON, or valid values (so that some are accepted)."""
    name = draw(st.sampled_from(COMMANDS))
    valid = st.fixed_dictionaries(FIELDS[name])
    near = st.fixed_dictionaries({key: value | JSON for key, value in FIELDS[name].items()})
    body = draw(st.binary(max_size=400) | (JSON | near | valid).map(
        lambda value: json.dumps(value).encode()))
    return name, body


@settings(max_examples=RANDOM_BODIES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(sent=bodies())
def test_random_bodies_leave_the_log_untouched_unless_the_command_was_valid(
        fuzz_api: Api, sent: tuple[str, bytes]) -> None:
    name, body = sent
    before = fuzz_api.server.event_count()
    response = fuzz_api.command(name, None, content=body)
    FUZZED["random bodies"] = FUZZED.get("random bodies", 0) + 1
    after = fuzz_api.server.event_count()
    OUTCOMES[fuzz_api.server.url][response.status_code] += 1
    assert response.status_code in (200, 409, 422), response.text
    if response.status_code == 200:
        assert after - before == len(response.json()["events"]) > 0
    else:
        assert after == before, response.text
        assert set(response.json()) >= {"error", "detail"}


def test_after_random_bodies_the_write_model_and_projections_agree(fuzz_api: Api) -> None:
    assert_write_model_and_projections_agree(fuzz_api)
    outcomes = OUTCOMES[fuzz_api.server.url]
    print(f"random bodies: {outcomes.total()} requests, statuses {dict(outcomes)}")
    if outcomes:  # the property ran first: it met valid and invalid commands
        assert outcomes[200] > 0 and outcomes[422] > 0, outcomes
