"""The DeadLetters port: events a projection could not apply, parked, listed and resolved."""

from __future__ import annotations

import time

import pytest

from projectionist import StoredEvent
from projectionist.readstore.dead_letters import DeadLetter, DeadLetters
from projectionist.stores import Store


@pytest.fixture
def letters(store: Store) -> DeadLetters:
    letters = DeadLetters(store)
    letters.install()
    return letters


def event(position: int, stream: str = "s", type: str = "NoteAdded") -> StoredEvent:
    return StoredEvent(position, stream, 1, type, 1, "{}", "{}", time.time())


def park(letters: DeadLetters, projection: str, generation: int, position: int,
         stream: str = "s", *, reason: str = "failed", error: str | None = "boom",
         attempts: int = 1) -> None:
    with letters.store.write() as connection:
        letters.park(connection, projection, generation, event(position, stream),
                     reason=reason, error=error, traceback="Traceback...", attempts=attempts)


def open_letters(letters: DeadLetters, projection: str | None = None,
                 generation: int | None = None) -> list[DeadLetter]:
    with letters.store.read() as connection:
        return letters.open(connection, projection, generation)


def test_park_stores_the_event_and_why(letters: DeadLetters) -> None:
    before = time.time()
    with letters.store.write() as connection:
        letters.park(connection, "catalogue", 2, event(7, "cart-1", "ItemAdded"),
                     reason="failed", error="KeyError: 'x'", traceback="Traceback...",
                     attempts=3)
    [letter] = open_letters(letters)
    assert letter == DeadLetter(
        letter.id, "catalogue", 2, 7, "cart-1", "ItemAdded", "failed", "KeyError: 'x'",
        "Traceback...", 3, letter.parked_at, None,
    )
    assert before <= letter.parked_at <= time.time()


def test_park_joins_the_caller_transaction(letters: DeadLetters) -> None:
    with pytest.raises(RuntimeError), letters.store.write() as connection:
        letters.park(connection, "catalogue", 1, event(1), reason="failed")
        raise RuntimeError("the batch failed")
    assert open_letters(letters) == []


def test_park_defaults_to_no_error_and_no_attempts(letters: DeadLetters) -> None:
    with letters.store.write() as connection:
        letters.park(connection, "catalogue", 1, event(4), reason="waiting")
    [letter] = open_letters(letters)
    assert (letter.reason, letter.error, letter.traceback, letter.attempts) == (
        "waiting", None, None, 0)


def test_open_lists_by_position(letters: DeadLetters) -> None:
    for position in (7, 3, 5):
        park(letters, "catalogue", 1, position)
    assert [letter.position for letter in open_letters(letters)] == [3, 5, 7]


def test_open_filters_by_projection_and_generation(letters: DeadLetters) -> None:
    park(letters, "catalogue", 1, 1)
    park(letters, "catalogue", 2, 2)
    park(letters, "orders", 1, 3)
    assert [(x.projection, x.generation) for x in open_letters(letters, "catalogue")] == [
        ("catalogue", 1), ("catalogue", 2)]
    assert [x.position for x in open_letters(letters, "catalogue", 2)] == [2]
    assert [x.position for x in open_letters(letters, generation=1)] == [1, 3]
    assert open_letters(letters, "orders", 2) == []


def test_counts_are_per_projection_and_generation(letters: DeadLetters) -> None:
    park(letters, "catalogue", 1, 1)
    park(letters, "catalogue", 1, 2)
    park(letters, "catalogue", 2, 2)
    park(letters, "orders", 1, 3)
    with letters.store.read() as connection:
        assert letters.counts(connection) == {
            ("catalogue", 1): 2, ("catalogue", 2): 1, ("orders", 1): 1}


def test_blocked_streams_are_those_with_an_open_letter_of_the_build(
    letters: DeadLetters,
) -> None:
    park(letters, "catalogue", 1, 1, "cart-1")
    park(letters, "catalogue", 1, 2, "cart-1", reason="waiting")
    park(letters, "catalogue", 1, 3, "cart-2")
    park(letters, "catalogue", 2, 4, "cart-3")
    park(letters, "orders", 1, 5, "cart-4")
    with letters.store.read() as connection:
        assert letters.blocked_streams(connection, "catalogue", 1) == {"cart-1", "cart-2"}
        assert letters.blocked_streams(connection, "orders", 2) == set()


def test_resolve_removes_the_letter_from_open_counts_and_blocked_streams(
    letters: DeadLetters,
) -> None:
    park(letters, "catalogue", 1, 1, "cart-1")
    park(letters, "catalogue", 1, 2, "cart-2")
    first, second = open_letters(letters)
    with letters.store.write() as connection:
        letters.resolve(connection, first.id)
    assert open_letters(letters) == [second]
    with letters.store.read() as connection:
        assert letters.counts(connection) == {("catalogue", 1): 1}
        assert letters.blocked_streams(connection, "catalogue", 1) == {"cart-2"}


def test_resolve_of_a_rolled_back_transaction_keeps_the_letter_open(
    letters: DeadLetters,
) -> None:
    park(letters, "catalogue", 1, 1)
    [letter] = open_letters(letters)
    with pytest.raises(RuntimeError), letters.store.write() as connection:
        letters.resolve(connection, letter.id)
        raise RuntimeError("the retry failed")
    assert open_letters(letters) == [letter]


def test_failed_again_counts_the_attempt_and_keeps_the_new_error(
    letters: DeadLetters,
) -> None:
    park(letters, "catalogue", 1, 1, attempts=1)
    park(letters, "catalogue", 1, 2, attempts=1)
    first, second = open_letters(letters)
    letters.failed_again(first.id, "ValueError: again", "Traceback (again)")
    letters.failed_again(first.id, "ValueError: thrice", "Traceback (thrice)")
    again, untouched = open_letters(letters)
    assert (again.id, again.attempts, again.error, again.traceback) == (
        first.id, 3, "ValueError: thrice", "Traceback (thrice)")
    assert again.resolved_at is None
    assert untouched == second
