"""Command scopes and query scopes are separate; command policies refine them."""

from __future__ import annotations

import pytest

from projectionist import Forbidden, Principal, Runtime
from projectionist_examples.shop import ProductCatalog, RegisterProduct, RestockProduct, SalesReport
from tests.notes import CountNotes, GuardedNote


def principal(*scopes: str, subject: str = "someone") -> Principal:
    return Principal(subject=subject, scopes=frozenset(scopes))


def test_a_query_scope_never_allows_a_command(shop_runtime: Runtime) -> None:
    with pytest.raises(Forbidden, match="commands:RegisterProduct"):
        shop_runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1),
                             principal=principal("queries:*"))
    assert shop_runtime.head() == 0


def test_a_command_scope_never_allows_a_query(shop_runtime: Runtime) -> None:
    with pytest.raises(Forbidden, match="queries:ProductCatalog"):
        shop_runtime.ask(ProductCatalog(), principal=principal("commands:*"))


def test_admin_allows_neither_commands_nor_queries(shop_runtime: Runtime) -> None:
    admin = principal("admin")
    with pytest.raises(Forbidden):
        shop_runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1), principal=admin)
    with pytest.raises(Forbidden):
        shop_runtime.ask(ProductCatalog(), principal=admin)


def test_a_named_command_scope_allows_that_command_only(shop_runtime: Runtime) -> None:
    registrar = principal("commands:RegisterProduct")
    shop_runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1), principal=registrar)
    with pytest.raises(Forbidden, match="commands:RestockProduct"):
        shop_runtime.execute(RestockProduct(sku="a", quantity=1), principal=registrar)
    assert shop_runtime.head() == 1


def test_a_named_query_scope_allows_that_query_only(shop_runtime: Runtime) -> None:
    reader = principal("queries:ProductCatalog")
    assert shop_runtime.ask(ProductCatalog(), principal=reader).data == {"items": []}
    with pytest.raises(Forbidden, match="queries:SalesReport"):
        shop_runtime.ask(SalesReport(), principal=reader)


def test_both_scopes_allow_both_sides(shop_runtime: Runtime) -> None:
    staff = principal("commands:*", "queries:*")
    shop_runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1), principal=staff)
    shop_runtime.catch_up()
    assert [i["sku"] for i in shop_runtime.ask(ProductCatalog(), principal=staff)
            .data["items"]] == ["a"]


def test_a_command_policy_refuses_a_subject_that_has_the_scope(notes_runtime: Runtime) -> None:
    bob = principal("commands:*", subject="bob")
    with pytest.raises(Forbidden, match="policy of GuardedNote"):
        notes_runtime.execute(GuardedNote(stream="s", text="x", allowed=["alice"]), principal=bob)
    assert notes_runtime.head() == 0
    notes_runtime.execute(GuardedNote(stream="s", text="x", allowed=["bob"]), principal=bob)
    notes_runtime.catch_up()
    assert notes_runtime.ask(CountNotes(stream="s")).data["count"] == 1
