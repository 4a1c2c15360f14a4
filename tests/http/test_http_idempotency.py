"""Idempotency-Key over HTTP: the same request again gets the first answer and writes nothing."""

from __future__ import annotations

from shop_server import Api, uid


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
