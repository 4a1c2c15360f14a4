"""Idempotency-Key over HTTP: the same request again gets the first answer and writes nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from shop_server import Api, uid

from projectionist import Runtime
from projectionist.http import create_http_app
from projectionist_examples.shop import create_app


def test_the_same_key_and_body_answer_the_first_response_again(api: Api) -> None:
    key = uid("key")
    body = {"sku": uid("sku"), "name": "Idempotent", "price_cents": 10}
    first = api.command("RegisterProduct", body, key=key)
    assert first.status_code == 200, first.text
    head = api.head()
    before = api.server.snapshot()
    for _ in range(3):
        again = api.command("RegisterProduct", body, key=key)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
    assert api.server.snapshot() == before
    assert api.head() == head


def test_the_same_key_with_another_body_is_422_and_writes_nothing(api: Api) -> None:
    key = uid("key")
    sku = uid("sku")
    first = api.command("RegisterProduct", {"sku": sku, "name": "One", "price_cents": 10},
                        key=key)
    assert first.status_code == 200, first.text
    before = api.server.snapshot()
    for body in ({"sku": sku, "name": "Two", "price_cents": 10},
                 {"sku": uid("sku"), "name": "One", "price_cents": 10}):
        response = api.command("RegisterProduct", body, key=key)
        assert response.status_code == 422
        answer = response.json()
        assert answer["error"] == "idempotency_key_reused"
        assert "Idempotency-Key" in answer["detail"]
    assert api.server.snapshot() == before


def test_the_same_key_for_another_command_type_is_422(api: Api) -> None:
    key = uid("key")
    sku = api.product(stock=0)
    assert api.command("RestockProduct", {"sku": sku, "quantity": 1}, key=key).status_code == 200
    before = api.server.snapshot()
    response = api.command("ShipOrder", {"order_id": uid("order")}, key=key)
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert api.server.snapshot() == before


def test_without_a_key_the_same_body_runs_again(api: Api) -> None:
    sku = api.product(stock=0)
    body = {"sku": sku, "quantity": 2}
    first, second = api.accepted("RestockProduct", body), api.accepted("RestockProduct", body)
    assert second["position"] > first["position"]
    assert second["command_id"] != first["command_id"]


def test_keys_belong_to_their_caller(api: Api) -> None:
    key = uid("key")
    body = {"sku": uid("sku"), "name": "Mine", "price_cents": 10}
    assert api.command("RegisterProduct", body, key=key).status_code == 200
    other = api.headers("commands:*", sub="someone-else")
    response = api.command("RegisterProduct", body, key=key, headers=other)
    assert response.status_code == 409  # run afresh, not a replay of another caller's answer
    assert "already registered" in response.json()["detail"]


def test_malformed_idempotency_keys_are_422(api: Api) -> None:
    before = api.server.snapshot()
    for key in ("k" * 201, "", "tab\there"):
        response = api.command("RegisterProduct",
                               {"sku": uid("sku"), "name": "n", "price_cents": 1}, key=key)
        assert response.status_code == 422, key
        assert "Idempotency-Key" in response.json()["detail"]
    assert api.server.snapshot() == before


# The documented Idempotency-Key agrees with what the server accepts


def idempotency_parameter(document: dict[str, Any]) -> dict[str, Any]:
    """The Idempotency-Key parameter of the command routes (the same on every one)."""
    found = [
        parameter
        for path, operations in document["paths"].items() if path.startswith("/commands/")
        for parameter in operations["post"].get("parameters", [])
        if parameter["name"] == "Idempotency-Key"
    ]
    commands = [path for path in document["paths"] if path.startswith("/commands/")]
    assert commands and len(found) == len(commands), "a command route lacks Idempotency-Key"
    assert all(parameter == found[0] for parameter in found)
    assert found[0]["in"] == "header"
    return found[0]


def schema_accepts(parameter: dict[str, Any], key: str) -> bool:
    schema = parameter["schema"]
    return (schema.get("minLength", 0) <= len(key) <= schema.get("maxLength", len(key))
            and re.fullmatch(schema["pattern"], key) is not None)


def wire(key: str) -> bytes:
    """The header value's bytes: latin-1 where it can, else UTF-8 (HTTP headers are bytes)."""
    try:
        return key.encode("latin-1")
    except UnicodeEncodeError:
        return key.encode("utf-8")


def keys(*, with_unsendable: bool) -> dict[str, str]:
    """Keys by description, fresh for each call; `with_unsendable` adds the ones an HTTP client
    refuses to send (and a server would trim): whitespace at the ends, control characters."""
    base = uid("key")
    cases = {
        "an ASCII word": base,
        "ASCII punctuation": f"{base}!\"#$%&'()*+,-./:;<=>?@[\\]^_`{{|}}~",
        "inner spaces": f"{base} with inner spaces",
        "an inner tab": f"{base}\tx",
        "non-ASCII, latin-1": f"{base}-clé",
        "non-ASCII, UTF-8 only": f"{base}-鍵",
        "200 characters": base + "x" * (200 - len(base)),
        "201 characters": base + "x" * (201 - len(base)),
        "empty": "",
    }
    if with_unsendable:
        cases.update({
            "a leading space": f" {base}-lead",
            "a trailing space": f"{base}-trail ",
            "a leading tab": f"\t{base}-tab",
            "an inner DEL": f"{base}\x7fx",
        })
    return cases


def check_agreement(parameter: dict[str, Any], cases: dict[str, str],
                    post: Callable[[bytes, dict[str, Any]], httpx.Response]) -> None:
    """Sends each key with a fresh command; the server accepts exactly what the schema does."""
    disagreements = []
    verdicts = set()
    for what, key in cases.items():
        expected = schema_accepts(parameter, key)
        verdicts.add(expected)
        response = post(wire(key), {"sku": uid("sku"), "name": "n", "price_cents": 1})
        if expected:
            if response.status_code != 200:
                disagreements.append(f"{what} ({key!r}): the schema accepts it, the server"
                                     f" answered {response.status_code} {response.text}")
        elif response.status_code != 422 or response.json()["error"] != "invalid_message" \
                or "Idempotency-Key" not in response.json()["detail"]:
            disagreements.append(f"{what} ({key!r}): the schema refuses it, the server"
                                 f" answered {response.status_code} {response.text}")
    assert verdicts == {True, False}  # the cases exercise both sides of the pattern
    assert not disagreements, "\n".join(disagreements)


def test_the_documented_idempotency_key_is_what_the_server_accepts(api: Api) -> None:
    parameter = idempotency_parameter(api.client.get("/openapi.json").json())
    assert parameter["schema"]["maxLength"] == 200
    authorization = api.staff["Authorization"].encode()

    def post(key: bytes, body: dict[str, Any]) -> httpx.Response:
        return api.client.post("/commands/RegisterProduct", json=body, headers=[
            (b"Authorization", authorization), (b"Idempotency-Key", key)])

    check_agreement(parameter, keys(with_unsendable=False), post)


def test_the_documented_idempotency_key_is_what_the_app_accepts_byte_for_byte(
    tmp_path: Path,
) -> None:
    """In process (ASGI), the app sees the header exactly as sent: spaces and tabs at the ends
    and control characters too, which no HTTP client sends."""
    runtime = Runtime(create_app(), store=f"sqlite:///{tmp_path / 'write.db'}",
                      read_store=f"sqlite:///{tmp_path / 'read.db'}")
    try:
        runtime.install()
        app = create_http_app(runtime, authority=None)

        async def send(method: str, path: str, **options: Any) -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.request(method, path, **options)

        parameter = idempotency_parameter(asyncio.run(send("GET", "/openapi.json")).json())

        def post(key: bytes, body: dict[str, Any]) -> httpx.Response:
            return asyncio.run(send("POST", "/commands/RegisterProduct", json=body,
                                    headers=[(b"Idempotency-Key", key)]))

        check_agreement(parameter, keys(with_unsendable=True), post)
    finally:
        runtime.stop()
