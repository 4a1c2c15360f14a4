"""Idempotency answers expire after the TTL: a retry then counts as a new command, and a
command process prunes expired answers by itself."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from projectionist import Principal, Runtime
from projectionist.commands.idempotency import idempotency_table
from projectionist_examples.shop import RegisterProduct, RestockProduct, create_app

CLERK = Principal(subject="clerk", scopes=frozenset({"commands:*"}))


def stored_keys(runtime: Runtime) -> set[str]:
    assert runtime.store is not None
    with runtime.store.read() as connection:
        keys = connection.execute(sa.select(idempotency_table.c.key)).scalars()
        return {key.split("\x1f")[1] for key in keys}


def age(runtime: Runtime, key: str, seconds: float) -> None:
    """Makes the stored answer of `key` look `seconds` older."""
    assert runtime.store is not None
    t = idempotency_table
    with runtime.store.write() as connection:
        connection.execute(sa.update(t).where(t.c.key.endswith(f"\x1f{key}"))
                           .values(created_at=t.c.created_at - seconds))


def test_an_expired_key_is_a_new_request(store_urls: tuple[str, str]) -> None:
    write, read = store_urls
    with Runtime(create_app(), store=write, read_store=read,
                 idempotency_ttl_s=3600) as runtime:
        runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1))
        first = runtime.execute(RestockProduct(sku="a", quantity=1), principal=CLERK,
                                idempotency_key="k")
        again = runtime.execute(RestockProduct(sku="a", quantity=1), principal=CLERK,
                                idempotency_key="k")
        assert again.command_id == first.command_id
        age(runtime, "k", 3601)
        # Past the TTL, even another body under the same key is simply a new command.
        later = runtime.execute(RestockProduct(sku="a", quantity=5), principal=CLERK,
                                idempotency_key="k")
        assert later.command_id != first.command_id
        assert later.position > first.position
        replayed = runtime.execute(RestockProduct(sku="a", quantity=5), principal=CLERK,
                                   idempotency_key="k")
        assert replayed.command_id == later.command_id


def test_expired_answers_are_pruned_and_fresh_ones_kept(store_urls: tuple[str, str]) -> None:
    write, read = store_urls
    with Runtime(create_app(), store=write, read_store=read,
                 idempotency_ttl_s=3600) as runtime:
        runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1))
        for key in ("old-1", "old-2", "fresh"):
            runtime.execute(RestockProduct(sku="a", quantity=1), principal=CLERK,
                            idempotency_key=key)
        age(runtime, "old-1", 7200)
        age(runtime, "old-2", 3601)
        assert runtime.commands is not None
        assert runtime.commands.prune_idempotency_keys() == 2
        assert stored_keys(runtime) == {"fresh"}


def test_a_command_process_prunes_without_being_asked(store_urls: tuple[str, str]) -> None:
    write, read = store_urls
    with Runtime(create_app(), store=write, read_store=read,
                 idempotency_ttl_s=3600) as runtime:
        runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1), principal=CLERK,
                        idempotency_key="old")
        age(runtime, "old", 7200)
        assert runtime.commands is not None
        runtime.commands.pruner.interval_s = 0.0  # as when the prune interval has passed
        runtime.execute(RestockProduct(sku="a", quantity=1))
        deadline = time.monotonic() + 10
        while "old" in stored_keys(runtime) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stored_keys(runtime) == set()


def test_without_a_ttl_answers_are_kept(tmp_path: Path) -> None:
    with Runtime(create_app(), store=f"sqlite:///{tmp_path / 'w.db'}",
                 idempotency_ttl_s=None) as runtime:
        runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1), principal=CLERK,
                        idempotency_key="k")
        age(runtime, "k", 10 * 365 * 86400)
        assert runtime.commands is not None
        assert runtime.commands.prune_idempotency_keys() == 0
        again = runtime.execute(RegisterProduct(sku="a", name="A", price_cents=1),
                                principal=CLERK, idempotency_key="k")
        assert again.position == 1
        assert stored_keys(runtime) == {"k"}
