"""Audit: every event names who caused it; every refused command is logged without the token."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from projectionist import EventMetadata, Forbidden, Refused, Runtime, TokenAuthority
from projectionist.edge import Kind, check_scope
from projectionist.messages import Command
from projectionist_examples.shop import (
    CancelOrder,
    CustomerDashboard,
    GetOrder,
    PayOrder,
    PlaceOrder,
    RegisterProduct,
    RestockProduct,
    ShipOrder,
)
from tests.security.servers import SECRET, Api, bearer, uid

AUDIT = "projectionist.audit"

LOGGED_AT_WARNING = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING \[")
"""A line of `serve`'s log: its time, then its level."""


def token_and_jti(authority: TokenAuthority, *scopes: str, sub: str) -> tuple[str, str]:
    token = authority.issue(scopes, subject=sub)
    principal = authority.verify(token)
    assert principal.token_id is not None
    return token, principal.token_id


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == AUDIT]


# The library


def test_every_event_records_the_subject_and_the_token_id(shop_runtime: Runtime) -> None:
    authority = TokenAuthority([SECRET])
    token, jti = token_and_jti(authority, "commands:*", sub="clerk-7")
    clerk = authority.verify(token)
    sku, order_id, cancelled = uid("sku"), uid("order"), uid("order")
    commands: list[Command] = [
        RegisterProduct(sku=sku, name="Tea", price_cents=300),
        RestockProduct(sku=sku, quantity=5),
        PlaceOrder(order_id=order_id, customer_id="c1",
                   lines=[{"sku": sku, "quantity": 2}]),  # type: ignore[list-item]
        PayOrder(order_id=order_id, amount_cents=600),
        ShipOrder(order_id=order_id),
        PlaceOrder(order_id=cancelled, customer_id="c1",
                   lines=[{"sku": sku, "quantity": 1}]),  # type: ignore[list-item]
        CancelOrder(order_id=cancelled, reason="changed my mind"),
    ]
    results = [shop_runtime.execute(command, principal=clerk) for command in commands]
    assert shop_runtime.log is not None
    stored = shop_runtime.log.read(0, 1000)
    assert len(stored) == sum(len(result.events) for result in results) >= len(commands)
    for event in stored:
        metadata = EventMetadata.from_json(event.metadata)
        assert (metadata.subject, metadata.token_id) == ("clerk-7", jti), event.type
        assert token not in event.metadata and token not in event.data


def test_refused_commands_are_logged_with_subject_type_and_reason(
        shop_runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    authority = TokenAuthority([SECRET])
    caplog.set_level(logging.INFO, logger=AUDIT)
    reader_token, _ = token_and_jti(authority, "queries:*", sub="reader-1")
    customer_token, _ = token_and_jti(authority, "customer", "commands:*", sub="cust-1")
    clerk_token, _ = token_and_jti(authority, "commands:*", sub="clerk-1")
    sku = uid("sku")
    attempts: list[tuple[str, Command, type[Exception], str]] = [
        (reader_token, RegisterProduct(sku=sku, name="n", price_cents=1), Forbidden,
         "the token lacks the scope commands:RegisterProduct (or commands:*)"),
        (customer_token, PlaceOrder(order_id=uid("order"), customer_id="cust-2",
                                    lines=[{"sku": sku, "quantity": 1}]),  # type: ignore[list-item]
         Forbidden, "a customer may place orders only for themselves"),
        (clerk_token, RestockProduct(sku=sku, quantity=1), Refused,
         f"product {sku!r} is not registered"),
    ]
    for token, command, error, reason in attempts:
        caplog.clear()
        with pytest.raises(error):
            shop_runtime.execute(command, principal=authority.verify(token))
        [record] = audit_lines(caplog)
        subject = authority.verify(token).subject
        assert record.getMessage() == (
            f"command refused: subject={subject} command={command.type_name} reason={reason}")
        assert record.levelno == (logging.WARNING if error is Forbidden else logging.INFO)
        assert token not in caplog.text
        assert all(token not in str(arg) for arg in record.args or ())
    assert shop_runtime.log is not None
    assert shop_runtime.log.read(0, 10) == []


def test_a_refused_command_in_a_group_commit_is_logged(
        shop_runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    caplog.set_level(logging.INFO, logger=AUDIT)
    authority = TokenAuthority([SECRET])
    token, _ = token_and_jti(authority, "commands:*", sub="clerk-2")
    clerk = authority.verify(token)
    skus = [uid("missing") for _ in range(8)]
    errors: list[BaseException] = []

    def restock(sku: str) -> None:
        try:
            shop_runtime.execute(RestockProduct(sku=sku, quantity=1), principal=clerk)
        except Refused as error:
            errors.append(error)

    threads = [threading.Thread(target=restock, args=(sku,)) for sku in skus]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == len(skus)
    messages = {record.getMessage() for record in audit_lines(caplog)}
    assert messages == {f"command refused: subject=clerk-2 command=RestockProduct"
                        f" reason=product {sku!r} is not registered" for sku in skus}
    assert token not in caplog.text


# Over HTTP


def metadata_of(api: Api, positions: list[int]) -> list[dict[str, Any]]:
    rows = api.server.rows("SELECT position, metadata FROM projectionist_events"
                           " WHERE position >= :low ORDER BY position", low=min(positions))
    return [json.loads(row["metadata"]) for row in rows if row["position"] in positions]


def test_events_sent_over_http_record_the_subject_and_the_token_id(api: Api) -> None:
    token, jti = token_and_jti(api.authority, "commands:*", sub="http-clerk")
    headers = bearer(token)
    sku, order_id = uid("sku"), uid("order")
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("RegisterProduct", {"sku": sku, "name": "n", "price_cents": 10}),
        ("RestockProduct", {"sku": sku, "quantity": 3}),
        ("PlaceOrder", {"order_id": order_id, "customer_id": "c-http",
                        "lines": [{"sku": sku, "quantity": 1}]}),
        ("PayOrder", {"order_id": order_id, "amount_cents": 10}),
        ("CancelOrder", {"order_id": order_id, "reason": "r"}),
    ]
    positions = []
    for name, body in bodies:
        response = api.command(name, body, headers=headers)
        assert response.status_code == 200, response.text
        positions += [event["position"] for event in response.json()["events"]]
    metadata = metadata_of(api, positions)
    assert len(metadata) == len(positions)
    assert {(m["subject"], m["token_id"]) for m in metadata} == {("http-clerk", jti)}


def test_refused_commands_over_http_are_logged_without_the_token(api: Api) -> None:
    sku = uid("sku")
    subject = uid("auditee")
    cases: list[tuple[tuple[str, ...], str, dict[str, Any], int, str]] = [
        (("queries:*",), "RegisterProduct", {"sku": sku, "name": "n", "price_cents": 1}, 403,
         "the token lacks the scope commands:RegisterProduct (or commands:*)"),
        (("customer", "commands:*"), "PlaceOrder",
         {"order_id": uid("order"), "customer_id": "someone-else",
          "lines": [{"sku": sku, "quantity": 1}]}, 403,
         "a customer may place orders only for themselves"),
        (("commands:*",), "RestockProduct", {"sku": sku, "quantity": 2}, 409,
         f"product {sku!r} is not registered"),
        (("commands:*",), "ShipOrder", {"order_id": sku}, 409,
         f"order {sku!r} does not exist"),
    ]
    tokens = []
    for scopes, name, body, status, reason in cases:
        token = api.token(*scopes, sub=subject)
        tokens.append(token)
        response = api.command(name, body, headers=bearer(token))
        assert response.status_code == status, response.text
        expected = f"projectionist.audit: command refused: subject={subject} command={name}"
        lines = [line for line in api.server.stderr.splitlines() if expected in line]
        assert lines, f"no audit line for {name}:\n{api.server.stderr[-2000:]}"
        assert lines[-1].endswith(f"reason={response.json()['detail']}")
        assert response.json()["detail"] == reason
    logged = api.server.stderr
    for token in tokens:
        assert token not in logged
        assert token.split(".")[2] not in logged



# Refused queries and operations are audited like refused commands


def test_refused_queries_are_logged_with_subject_type_and_reason(
        shop_runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    authority = TokenAuthority([SECRET])
    caplog.set_level(logging.INFO, logger=AUDIT)
    clerk_token, _ = token_and_jti(authority, "commands:*", sub="clerk-q")
    customer_token, _ = token_and_jti(authority, "customer", "queries:*", sub="cust-q")
    attempts: list[tuple[str, Any, str]] = [
        (clerk_token, GetOrder(order_id=uid("order")),
         "the token lacks the scope queries:GetOrder (or queries:*)"),
        (customer_token, CustomerDashboard(customer_id="someone-else"),
         "a customer may see only their own dashboard"),
    ]
    for token, query, reason in attempts:
        caplog.clear()
        principal = authority.verify(token)
        with pytest.raises(Forbidden):
            shop_runtime.ask(query, principal=principal)
        [record] = audit_lines(caplog)
        assert record.getMessage() == (
            f"query refused: subject={principal.subject} query={query.type_name}"
            f" reason={reason}")
        assert record.levelno == logging.WARNING
        assert token not in caplog.text

    # The edge's scope check, as the HTTP routes call it before reading the parameters.
    caplog.clear()
    with pytest.raises(Forbidden):
        check_scope(authority.verify(clerk_token), Kind.QUERY, "SalesReport")
    [record] = audit_lines(caplog)
    assert record.getMessage() == (
        "query refused: subject=clerk-q query=SalesReport"
        " reason=the token lacks the scope queries:SalesReport (or queries:*)")


def audited(api: Api, expected: str) -> str:
    """The last audit line of the server that contains `expected`."""
    lines = [line for line in api.server.stderr.splitlines()
             if f"projectionist.audit: {expected}" in line]
    assert lines, f"no audit line {expected!r}:\n{api.server.stderr[-2000:]}"
    return lines[-1]


def test_refused_queries_over_http_are_logged_without_the_token(api: Api) -> None:
    subject = uid("auditee")
    cases: list[tuple[tuple[str, ...], str, dict[str, Any], str]] = [
        (("commands:*",), "ProductCatalog", {},
         "the token lacks the scope queries:ProductCatalog (or queries:*)"),
        (("queries:GetOrder",), "SalesReport", {},
         "the token lacks the scope queries:SalesReport (or queries:*)"),
        (("customer", "queries:*"), "CustomerDashboard", {"customer_id": "someone-else"},
         "a customer may see only their own dashboard"),
    ]
    tokens = []
    for scopes, name, params, reason in cases:
        token = api.token(*scopes, sub=subject)
        tokens.append(token)
        response = api.query(name, params, headers=bearer(token))
        assert response.status_code == 403, response.text
        assert response.json()["detail"] == reason
        line = audited(api, f"query refused: subject={subject} query={name}")
        assert LOGGED_AT_WARNING.match(line), line
        assert line.endswith(f"reason={reason}")
    logged = api.server.stderr
    for token in tokens:
        assert token not in logged
        assert token.split(".")[2] not in logged


def test_refused_operations_over_http_are_logged_without_the_token(api: Api) -> None:
    subject = uid("auditee")
    cases: list[tuple[tuple[str, ...], str, str, str, str]] = [
        (("commands:*",), "GET", "/projections", "/projections",
         "this needs the scope admin or queries:*"),
        (("queries:ProductCatalog",), "GET", "/projections/history", "/projections/history",
         "this needs the scope admin or queries:*"),
        (("queries:*",), "POST", "/projections/order_summary/rebuild",
         "/projections/{name}/rebuild", "this needs the scope admin"),
        (("queries:*", "commands:*"), "GET", "/projections/order_summary/dead-letters",
         "/projections/{name}/dead-letters", "this needs the scope admin"),
    ]
    tokens = []
    for scopes, method, path, route, reason in cases:
        token = api.token(*scopes, sub=subject)
        tokens.append(token)
        response = api.client.request(method, path, headers=bearer(token))
        assert response.status_code == 403, response.text
        assert response.json()["detail"] == reason
        line = audited(api, f"operation refused: subject={subject} operation={route} ")
        assert LOGGED_AT_WARNING.match(line), line
        assert line.endswith(f"reason={reason}")
    # A refused rebuild started nothing.
    rows = api.client.get("/projections", headers=api.admin).json()
    assert all(row["active"] for row in rows if row["name"] == "order_summary")
    logged = api.server.stderr
    for token in tokens:
        assert token not in logged
        assert token.split(".")[2] not in logged
