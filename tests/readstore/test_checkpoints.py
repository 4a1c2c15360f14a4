"""The Checkpoints port: builds (generations) of a projection, compare-and-set moves, swaps."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from projectionist.errors import RebuildInProgress
from projectionist.readstore.audience import LISTENING_LOCK_KEY
from projectionist.readstore.checkpoints import BuildGone, Checkpoint, Checkpoints, State
from projectionist.readstore.schema import CHANNEL
from projectionist.readstore.tables import ViewTable
from projectionist.stores import Store
from projectionist.wakeups.postgres import Listener

ITEMS = ViewTable("catalogue", "items", (sa.Column("id", sa.Integer, primary_key=True),), ())


def tables_of(generation: int) -> list[sa.Table]:
    return [ITEMS.physical(generation)]


def names_of(generation: int) -> list[str]:
    return [table.name for table in tables_of(generation)]


@pytest.fixture
def checkpoints(store: Store) -> Checkpoints:
    checkpoints = Checkpoints(store)
    checkpoints.install()
    return checkpoints


def load(checkpoints: Checkpoints, generation: int, name: str = "catalogue") -> Checkpoint | None:
    with checkpoints.store.read() as connection:
        return checkpoints.load(connection, name, generation)


def advance(checkpoints: Checkpoints, generation: int, *, expected: int, position: int,
            epoch: int | None = None, state: State = State.LIVE) -> bool:
    with checkpoints.store.write() as connection:
        return checkpoints.advance(connection, "catalogue", generation, expected=expected,
                                   position=position, head=position, next_at=None, state=state,
                                   epoch=epoch)


def table_names(store: Store) -> set[str]:
    with store.read() as connection:
        return set(sa.inspect(connection).get_table_names())


def test_serving_creates_generation_one_active_for_a_new_projection(
    checkpoints: Checkpoints,
) -> None:
    build = checkpoints.serving("catalogue", 3, names_of)
    assert (build.generation, build.version, build.active) == (1, 3, True)
    assert (build.position, build.head, build.state) == (0, 0, State.CATCHING_UP)
    assert build.table_names == ["items_g1"]
    assert load(checkpoints, 1) == build


def test_serving_returns_the_same_build_on_the_second_call(checkpoints: Checkpoints) -> None:
    first = checkpoints.serving("catalogue", 1, names_of)
    second = checkpoints.serving("catalogue", 2, lambda g: [f"other_g{g}"])
    assert second == first
    with checkpoints.store.read() as connection:
        assert len(checkpoints.all(connection)) == 1


def test_start_build_creates_the_next_generation_not_active_and_rebuilding(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    build = checkpoints.start_build("catalogue", 2, names_of)
    assert (build.generation, build.version, build.active) == (2, 2, False)
    assert build.state is State.REBUILDING
    assert build.table_names == ["items_g2"]
    with checkpoints.store.read() as connection:
        assert checkpoints.active(connection, ["catalogue"])["catalogue"].generation == 1
        assert [c.generation for c in checkpoints.all(connection)] == [1, 2]


def test_start_build_of_a_new_projection_is_its_serving_build(checkpoints: Checkpoints) -> None:
    build = checkpoints.start_build("catalogue", 1, names_of)
    assert (build.generation, build.active, build.state) == (1, True, State.CATCHING_UP)


def test_start_build_refuses_a_second_concurrent_build(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    checkpoints.start_build("catalogue", 2, names_of)
    with pytest.raises(RebuildInProgress):
        checkpoints.start_build("catalogue", 3, names_of)
    with checkpoints.store.read() as connection:
        assert [c.generation for c in checkpoints.all(connection)] == [1, 2]


def test_advance_moves_the_checkpoint_from_the_expected_position(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    with checkpoints.store.write() as connection:
        moved = checkpoints.advance(connection, "catalogue", 1, expected=0, position=5, head=9,
                                    next_at=12.5, state=State.CATCHING_UP)
    assert moved is True
    stored = load(checkpoints, 1)
    assert stored is not None
    assert (stored.position, stored.head, stored.next_at) == (5, 9, 12.5)
    assert stored.state is State.CATCHING_UP


def test_advance_refuses_when_expected_is_not_the_stored_position(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    assert advance(checkpoints, 1, expected=0, position=5)
    assert advance(checkpoints, 1, expected=0, position=8) is False
    stored = load(checkpoints, 1)
    assert stored is not None and stored.position == 5


def test_advance_of_a_rolled_back_transaction_leaves_the_checkpoint(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    with pytest.raises(RuntimeError), checkpoints.store.write() as connection:
        checkpoints.advance(connection, "catalogue", 1, expected=0, position=5, head=5,
                            next_at=None, state=State.LIVE)
        raise RuntimeError("the batch failed")
    stored = load(checkpoints, 1)
    assert stored is not None and stored.position == 0
    assert advance(checkpoints, 1, expected=0, position=3)


def test_advance_refuses_a_stale_epoch(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    assert advance(checkpoints, 1, expected=0, position=2, epoch=0)
    with checkpoints.store.write() as connection:
        checkpoints.bump_epoch(connection, "catalogue", 1)
    assert advance(checkpoints, 1, expected=2, position=4, epoch=0) is False
    stored = load(checkpoints, 1)
    assert stored is not None and (stored.position, stored.epoch) == (2, 1)
    assert advance(checkpoints, 1, expected=2, position=4, epoch=1)


def test_advance_without_an_epoch_ignores_it(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    with checkpoints.store.write() as connection:
        checkpoints.bump_epoch(connection, "catalogue", 1)
    assert advance(checkpoints, 1, expected=0, position=4)


def test_mark_records_failed_with_the_error(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    checkpoints.mark("catalogue", 1, state=State.FAILED, error="ValueError: boom")
    stored = load(checkpoints, 1)
    assert stored is not None
    assert (stored.state, stored.error) == (State.FAILED, "ValueError: boom")


def test_advance_clears_the_error_of_a_failed_build(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    checkpoints.mark("catalogue", 1, state=State.FAILED, error="boom")
    assert advance(checkpoints, 1, expected=0, position=1, state=State.LIVE)
    stored = load(checkpoints, 1)
    assert stored is not None and (stored.state, stored.error) == (State.LIVE, None)


def test_swap_makes_the_new_build_active_and_drops_the_retired_ones(
    checkpoints: Checkpoints, store: Store,
) -> None:
    checkpoints.install_serving("catalogue", 1, tables_of)
    new = checkpoints.start_build("catalogue", 2, names_of)
    with store.schema() as connection:
        ITEMS.physical(2).create(connection)
    assert advance(checkpoints, 2, expected=0, position=4, state=State.REBUILDING)
    retired = checkpoints.swap("catalogue", new.generation)
    assert retired is not None
    assert [(build.generation, build.active) for build in retired] == [(1, True)]
    with store.read() as connection:
        serving = checkpoints.active(connection, ["catalogue"])["catalogue"]
        assert [c.generation for c in checkpoints.all(connection)] == [2]
    assert (serving.generation, serving.state, serving.position) == (2, State.LIVE, 4)
    assert load(checkpoints, 1) is None
    names = table_names(store)
    assert "items_g2" in names and "items_g1" not in names


def test_swap_refuses_while_the_serving_build_is_ahead(
    checkpoints: Checkpoints, store: Store,
) -> None:
    checkpoints.install_serving("catalogue", 1, tables_of)
    assert advance(checkpoints, 1, expected=0, position=10)
    checkpoints.start_build("catalogue", 2, names_of)
    assert advance(checkpoints, 2, expected=0, position=3, state=State.REBUILDING)
    assert checkpoints.swap("catalogue", 2) is None
    with store.read() as connection:
        assert checkpoints.active(connection, ["catalogue"])["catalogue"].generation == 1
        assert [c.generation for c in checkpoints.all(connection)] == [1, 2]
    assert "items_g1" in table_names(store)


def test_swap_with_behind_ok_swaps_while_the_serving_build_is_ahead(
    checkpoints: Checkpoints, store: Store,
) -> None:
    checkpoints.install_serving("catalogue", 1, tables_of)
    assert advance(checkpoints, 1, expected=0, position=10)
    checkpoints.start_build("catalogue", 2, names_of)
    retired = checkpoints.swap("catalogue", 2, behind_ok=True)
    assert retired is not None and [build.generation for build in retired] == [1]
    with store.read() as connection:
        serving = checkpoints.active(connection, ["catalogue"])["catalogue"]
    assert (serving.generation, serving.position) == (2, 0)
    assert "items_g1" not in table_names(store)


def test_swap_raises_build_gone_when_the_generation_does_not_exist(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    with pytest.raises(BuildGone):
        checkpoints.swap("catalogue", 7)
    with pytest.raises(BuildGone):
        checkpoints.swap("unknown", 1)


def test_swap_raises_build_gone_for_a_build_already_swapped_out(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    checkpoints.start_build("catalogue", 2, names_of)
    assert checkpoints.swap("catalogue", 2) is not None
    with pytest.raises(BuildGone):
        checkpoints.swap("catalogue", 1)


def test_install_serving_creates_the_serving_build_tables(
    checkpoints: Checkpoints, store: Store,
) -> None:
    assert "items_g1" not in table_names(store)
    build = checkpoints.install_serving("catalogue", 1, tables_of)
    assert (build.generation, build.active) == (1, True)
    assert "items_g1" in table_names(store)
    assert checkpoints.install_serving("catalogue", 1, tables_of) == build


def test_install_serving_creates_the_tables_of_a_later_serving_generation(
    checkpoints: Checkpoints, store: Store,
) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    checkpoints.start_build("catalogue", 2, names_of)
    assert checkpoints.swap("catalogue", 2) is not None
    build = checkpoints.install_serving("catalogue", 2, tables_of)
    assert build.generation == 2
    names = table_names(store)
    assert "items_g2" in names and "items_g1" not in names


def test_a_loaded_checkpoint_state_is_a_state_member(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    checkpoints.start_build("catalogue", 2, names_of)
    with checkpoints.store.read() as connection:
        loaded = [checkpoints.load(connection, "catalogue", 2),
                  *checkpoints.all(connection),
                  *checkpoints.active(connection, ["catalogue"]).values()]
    assert all(c is not None and type(c.state) is State for c in loaded)
    assert [c.state for c in loaded if c is not None] == [
        State.REBUILDING, State.CATCHING_UP, State.REBUILDING, State.CATCHING_UP]


def test_a_generation_number_is_never_given_twice(checkpoints: Checkpoints) -> None:
    checkpoints.serving("catalogue", 1, names_of)
    dropped = checkpoints.start_build("catalogue", 1, names_of)
    checkpoints.drop([dropped])
    again = checkpoints.start_build("catalogue", 1, names_of)
    assert again.generation == dropped.generation + 1
    assert again.table_names == names_of(again.generation)


def test_a_move_sent_with_the_commit_keeps_its_transaction_whole(
    checkpoints: Checkpoints,
) -> None:
    """`last`: on PostgreSQL the COMMIT goes with the move. A move that succeeds commits the
    transaction's other writes with it; one refused (the checkpoint moved elsewhere) commits
    none of them."""
    checkpoints.serving("catalogue", 1, names_of)

    def bump_and_advance(expected: int, position: int) -> bool:
        with checkpoints.store.write() as connection:
            checkpoints.bump_epoch(connection, "catalogue", 1)
            moved = checkpoints.advance(connection, "catalogue", 1, expected=expected,
                                        position=position, head=position, next_at=None,
                                        state=State.LIVE, last=True)
            if not moved:
                connection.rollback()
            return moved

    assert bump_and_advance(0, 5) is True
    assert bump_and_advance(0, 8) is False
    stored = load(checkpoints, 1)
    assert stored is not None and (stored.position, stored.epoch) == (5, 1)
    assert bump_and_advance(5, 8) is True
    stored = load(checkpoints, 1)
    assert stored is not None and (stored.position, stored.epoch) == (8, 2)


def heard_moves(store: Store, *, presence: bool) -> tuple[Listener, list[str]]:
    """A listener on the checkpoint channel, announcing itself or not; what it hears."""
    heard: list[str] = []
    listener = Listener(store.url, CHANNEL, heard.append,
                        presence=LISTENING_LOCK_KEY if presence else None)
    listener.start()
    return listener, heard


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_moves_are_announced_only_while_a_process_listens_for_them(
    checkpoints: Checkpoints,
) -> None:
    checkpoints.audience.recheck_s = 0.0  # look at every move
    checkpoints.serving("catalogue", 1, names_of)
    # A connection that listens without saying so, to hear what is sent.
    quiet, heard = heard_moves(checkpoints.store, presence=False)
    try:
        assert wait_for(lambda: not listening(checkpoints))  # no other listener is left
        assert advance(checkpoints, 1, expected=0, position=1)
        time.sleep(0.3)
        assert heard == []  # no one waits on moves: no NOTIFY
        waiting, _ = heard_moves(checkpoints.store, presence=True)
        try:
            assert wait_for(lambda: listening(checkpoints))
            assert advance(checkpoints, 1, expected=1, position=2)
            assert wait_for(lambda: heard == ["catalogue:2"])
        finally:
            waiting.stop()
        assert wait_for(lambda: not listening(checkpoints))  # its lock went with it
        assert advance(checkpoints, 1, expected=2, position=3)
        time.sleep(0.3)
        assert heard == ["catalogue:2"]
    finally:
        quiet.stop()
    # Announced or not, a move that finds another position fails alike.
    assert advance(checkpoints, 1, expected=0, position=9) is False
    assert load(checkpoints, 1).position == 3  # type: ignore[union-attr]


def listening(checkpoints: Checkpoints) -> bool:
    with checkpoints.store.read() as connection:
        return checkpoints.audience.listening(connection)
