"""The Leases port: one owner of a projection at a time, for a limited time."""

from __future__ import annotations

import time

import pytest

from projectionist.readstore.leases import Leases
from projectionist.stores import Store

SHORT_TTL_S = 0.05


@pytest.fixture
def installed(store: Store) -> Store:
    """The read store with the leases table."""
    Leases(store).install()
    return store


@pytest.fixture
def leases(installed: Store) -> Leases:
    return Leases(installed, owner="a")


@pytest.fixture
def other(installed: Store) -> Leases:
    return Leases(installed, owner="b")


def test_take_grants_a_free_lease(leases: Leases) -> None:
    before = time.time()
    assert leases.take("catalogue") is True
    assert leases.holds("catalogue")
    owner, expires_at = leases.owners()["catalogue"]
    assert owner == "a"
    assert before + leases.ttl_s <= expires_at <= time.time() + leases.ttl_s


def test_take_extends_the_owner_own_lease(leases: Leases) -> None:
    assert leases.take("catalogue")
    _, first = leases.owners()["catalogue"]
    time.sleep(0.01)
    assert leases.take("catalogue") is True
    owner, second = leases.owners()["catalogue"]
    assert owner == "a" and second > first


def test_take_refuses_a_live_lease_of_another_owner(leases: Leases, other: Leases) -> None:
    assert leases.take("catalogue")
    _, expires_at = leases.owners()["catalogue"]
    assert other.take("catalogue") is False
    assert not other.holds("catalogue")
    assert leases.owners()["catalogue"] == ("a", expires_at)


def test_take_grants_an_expired_lease_to_another_owner(installed: Store, other: Leases) -> None:
    brief = Leases(installed, owner="a", ttl_s=SHORT_TTL_S)
    assert brief.take("catalogue")
    time.sleep(SHORT_TTL_S * 3)
    assert other.take("catalogue") is True
    assert other.owners()["catalogue"][0] == "b"
    assert brief.take("catalogue") is False
    assert not brief.holds("catalogue")


def test_holds_ends_when_the_lease_runs_out_by_the_owner_clock(installed: Store) -> None:
    brief = Leases(installed, owner="a", ttl_s=SHORT_TTL_S)
    assert brief.take("catalogue")
    assert brief.holds("catalogue")
    time.sleep(SHORT_TTL_S * 3)
    assert not brief.holds("catalogue")


def test_holds_is_false_for_a_lease_never_taken(leases: Leases) -> None:
    assert not leases.holds("catalogue")


def test_release_frees_the_lease_for_another_owner_at_once(
    leases: Leases, other: Leases,
) -> None:
    assert leases.take("catalogue")
    leases.release("catalogue")
    assert not leases.holds("catalogue")
    assert other.take("catalogue") is True
    assert leases.take("catalogue") is False


def test_release_by_another_owner_leaves_the_lease(leases: Leases, other: Leases) -> None:
    assert leases.take("catalogue")
    other.release("catalogue")
    assert leases.owners()["catalogue"][0] == "a"
    assert other.take("catalogue") is False


def test_leases_of_different_names_are_independent(leases: Leases, other: Leases) -> None:
    assert leases.take("catalogue")
    assert other.take("orders")
    assert not leases.holds("orders") and not other.holds("catalogue")
    assert {name: owner for name, (owner, _) in leases.owners().items()} == {
        "catalogue": "a", "orders": "b"}


def test_owners_is_empty_before_any_lease(leases: Leases) -> None:
    assert leases.owners() == {}


def test_due_once_a_third_of_the_lease_has_passed(installed: Store) -> None:
    leases = Leases(installed, owner="a", ttl_s=0.6)
    assert leases.due("catalogue")
    assert leases.take("catalogue")
    assert not leases.due("catalogue")
    time.sleep(0.3)
    assert leases.due("catalogue")


def test_owners_default_to_distinct_ids(installed: Store) -> None:
    first, second = Leases(installed), Leases(installed)
    assert first.owner != second.owner
    assert first.take("catalogue")
    assert second.take("catalogue") is False
