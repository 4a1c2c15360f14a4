"""Checkpoints: where each build of each projection stands, kept in the read store itself.

A projection has one serving (active) build at a time and at most one build in progress. A
build is a generation: its own tables (`<table>_g<generation>`) and its own checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..driver import Sql, markers
from ..errors import RebuildInProgress
from ..stores import Store
from ..wakeups import ProgressBoard, WakeupSource
from ..wakeups.postgres import Listener
from .audience import LISTENING_LOCK_KEY, Audience
from .schema import (
    ADVANCES,
    CHANNEL,
    NOT_MOVED_SQLSTATE,
    generations_table,
    install_checkpoints,
    partitions_table,
    projections_table,
)

log = logging.getLogger("projectionist.projections")

_DROP_ATTEMPTS = 5
_CHECKPOINT_COLUMNS = (
    "name, generation, version, position, head, next_at, updated_at, created_at, active,"
    " state, error, tables, epoch, dead_letters"
)
_ACTIVE: dict[int, Sql] = {}


def _active_of(count: int) -> Sql:
    """The read of `count` projections' serving builds, made once per count."""
    statement = _ACTIVE.get(count)
    if statement is None:
        statement = _ACTIVE[count] = Sql(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM projectionist_projections"
            f" WHERE name IN ({markers(count)}) AND active"
        )
    return statement


class State(StrEnum):
    """The state of a projection build.

    A checkpoint stores `LIVE`, `CATCHING_UP`, `REBUILDING` or `FAILED`. `projections.status`
    derives the others: `STALLED`, a serving build whose checkpoint stopped moving, and
    `BLOCKED`, a build in progress with dead letters, which is never swapped in by itself.
    """

    LIVE = "live"
    CATCHING_UP = "catching_up"
    REBUILDING = "rebuilding"
    BLOCKED = "blocked"
    STALLED = "stalled"
    FAILED = "failed"


class BuildBlocked(Exception):
    """A build with dead letters is not swapped in unless the caller accepts them."""


class BuildGone(LookupError):
    """The build asked for is no longer in the checkpoint table (swapped out or dropped)."""


TablesOf = Callable[[int], list[str]]
"""The physical table names of a projection's generation."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where one build of a projection stands."""

    name: str
    generation: int
    version: int
    position: int
    head: int
    next_at: float | None
    updated_at: float
    created_at: float
    active: bool
    state: State
    error: str | None
    tables: str
    epoch: int = 0
    dead_letters: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", State(self.state))
        object.__setattr__(self, "active", bool(self.active))  # SQLite's driver gives 0 or 1

    @property
    def table_names(self) -> list[str]:
        names: list[str] = json.loads(self.tables)
        return names


class Checkpoints:
    """Reads and moves checkpoints; a move commits with the read-model changes it covers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.audience = Audience()  # whether a move is announced (PostgreSQL)

    def install(self) -> None:
        with self.store.schema() as connection:
            install_checkpoints(connection)

    def serving(self, name: str, version: int, tables_of: TablesOf) -> Checkpoint:
        """The active build of a projection, created for a new projection (generation 1)."""
        t = projections_table
        with self.store.schema() as connection:
            row = connection.execute(sa.select(t).where(t.c.name == name, t.c.active)).first()
            if row is not None:
                return Checkpoint(*row)
            generation = _next_generation(connection, name, [])
            return self._create(
                connection,
                name,
                generation,
                version,
                tables_of(generation),
                active=True,
                state=State.CATCHING_UP,
            )

    def install_serving(
        self, name: str, version: int, tables_of: Callable[[int], list[sa.Table]]
    ) -> Checkpoint:
        """The serving build of a projection, its tables created if missing (a query process
        may start before any projector did)."""
        build = self.serving(name, version, lambda g: [t.name for t in tables_of(g)])
        with self.store.schema() as connection:
            for table in tables_of(build.generation):
                table.create(connection, checkfirst=True)
        return build

    def start_build(self, name: str, version: int, tables_of: TablesOf) -> Checkpoint:
        """A new build of a projection, next to the one serving; refused if one is running."""
        t = projections_table
        with self.store.schema() as connection:
            rows = [
                Checkpoint(*r)
                for r in connection.execute(sa.select(t).where(t.c.name == name)).fetchall()
            ]
            if any(not row.active for row in rows):
                raise RebuildInProgress(f"a rebuild of {name} is already running")
            generation = _next_generation(connection, name, rows)
            return self._create(
                connection,
                name,
                generation,
                version,
                tables_of(generation),
                active=not rows,
                state=State.REBUILDING if rows else State.CATCHING_UP,
            )

    def _create(
        self,
        connection: Connection,
        name: str,
        generation: int,
        version: int,
        tables: list[str],
        *,
        active: bool,
        state: State,
    ) -> Checkpoint:
        now = time.time()
        connection.execute(
            sa.insert(projections_table).values(
                name=name,
                generation=generation,
                version=version,
                position=0,
                head=0,
                next_at=None,
                updated_at=now,
                created_at=now,
                active=active,
                state=state,
                error=None,
                tables=json.dumps(tables),
                epoch=0,
            )
        )
        return Checkpoint(
            name, generation, version, 0, 0, None, now, now, active, state, None, json.dumps(tables)
        )

    def load(self, connection: Connection, name: str, generation: int) -> Checkpoint | None:
        t = projections_table
        row = connection.execute(
            sa.select(t).where(t.c.name == name, t.c.generation == generation)
        ).first()
        return Checkpoint(*row) if row is not None else None

    def all(self, connection: Connection) -> list[Checkpoint]:
        t = projections_table
        rows = connection.execute(sa.select(t).order_by(t.c.name, t.c.generation)).fetchall()
        return [Checkpoint(*row) for row in rows]

    def active(self, connection: Connection, names: list[str]) -> dict[str, Checkpoint]:
        """The active (serving) build of each named projection."""
        # Every answer reads it: on the driver's cursor.
        rows = _active_of(len(names)).rows(connection, names)
        return {row[0]: Checkpoint(*row) for row in rows}

    def advance(
        self,
        connection: Connection,
        name: str,
        generation: int,
        *,
        expected: int,
        position: int,
        head: int,
        next_at: float | None,
        state: State,
        epoch: int | None = None,
        parked: int = 0,
        last: bool = False,
    ) -> bool:
        """Moves the checkpoint from `expected` to `position`; False if another runner moved it
        (or, given `epoch`, if someone wrote the read model outside), the transaction then to
        be rolled back. `parked` counts the dead letters the same transaction parked. `last`:
        nothing follows in the transaction (on PostgreSQL, its COMMIT goes with the move).

        On PostgreSQL the move is announced on CHANNEL at commit while queries of other
        processes wait on moves (`audience`).
        """
        params: tuple[object, ...] = (
            position,
            head,
            next_at,
            time.time(),
            state.value,
            parked,
            name,
            generation,
            expected,
        )
        at_epoch = epoch is not None
        params += (epoch,) if at_epoch else ()
        if connection.dialect.name == "postgresql":
            announce = self.audience.listening(connection)
            try:
                ADVANCES[True, at_epoch, announce].rows(connection, params, last=last)
            except sa.exc.DBAPIError as error:
                if getattr(error.orig, "sqlstate", None) == NOT_MOVED_SQLSTATE:
                    return False
                raise
            return True
        return ADVANCES[False, at_epoch, False].run(connection, params) == 1

    def wakeups(self, board: ProgressBoard) -> WakeupSource | None:
        """What tells this process of checkpoint moves made elsewhere; None: poll only."""
        if self.store.is_sqlite:
            return None
        return Listener(
            self.store.url, CHANNEL, lambda _payload: board.moved(), presence=LISTENING_LOCK_KEY
        )

    def bump_epoch(
        self, connection: Connection, name: str, generation: int, *, resolved: int = 0
    ) -> None:
        """Records a write to the read model made outside the runner's batches (and how many
        dead letters it resolved)."""
        t = projections_table
        connection.execute(
            sa.update(t)
            .where(t.c.name == name, t.c.generation == generation)
            .values(epoch=t.c.epoch + 1, dead_letters=t.c.dead_letters - resolved)
        )

    def mark(self, name: str, generation: int, *, state: State, error: str | None = None) -> None:
        """Records a state change (for example `failed`) outside any batch."""
        t = projections_table
        with self.store.write() as connection:
            connection.execute(
                sa.update(t)
                .where(t.c.name == name, t.c.generation == generation)
                .values(state=state, error=error, updated_at=time.time())
            )

    def swap(
        self,
        name: str,
        generation: int,
        *,
        behind_ok: bool = False,
        with_dead_letters: bool = False,
    ) -> list[Checkpoint] | None:
        """Makes `generation` the serving build in one transaction; drops the others.

        Queries read the active build and its tables in one snapshot, so none sees a half-built
        view: before this commits they read the old build, after it the new one. Refused (None)
        while the serving build is ahead of the new one, so that no reader sees the read model
        step back, unless `behind_ok`. BuildBlocked while the new build has dead letters, unless
        `with_dead_letters`: a build that could not apply every event never replaces a good one
        by itself. BuildGone when the build is no longer there (another process swapped it out
        or dropped it).
        """
        t = projections_table
        with self.store.schema() as connection:
            rows = [
                Checkpoint(*r)
                for r in connection.execute(
                    sa.select(t).where(t.c.name == name).with_for_update()
                ).fetchall()
            ]
            new = next((row for row in rows if row.generation == generation), None)
            if new is None:
                raise BuildGone(f"build {generation} of {name} is gone")
            if new.dead_letters and not with_dead_letters:
                raise BuildBlocked(
                    f"build {generation} of {name} has {new.dead_letters} dead letter(s)"
                )
            serving = next((row for row in rows if row.active), None)
            if not behind_ok and serving is not None and serving.position > new.position:
                return None
            connection.execute(
                sa.update(t)
                .where(t.c.name == name)
                .values(active=sa.case((t.c.generation == generation, True), else_=False))
            )
            connection.execute(
                sa.update(t)
                .where(t.c.name == name, t.c.generation == generation)
                .values(state=State.LIVE)
            )
            # Retired builds leave with the swap: none is ever mistaken for a build in progress.
            connection.execute(sa.delete(t).where(t.c.name == name, t.c.generation != generation))
        old = [row for row in rows if row.generation != generation]
        self.drop(old)
        return old

    def drop(self, builds: list[Checkpoint]) -> None:
        """Drops builds and their tables, one table per transaction.

        A runner of a retired build in another process may still hold locks on its tables
        until it notices the swap; dropping them one at a time never deadlocks with it. A table
        that cannot be dropped now is retried, then left with a warning that names it.
        """
        if not builds:
            return
        t = projections_table
        for build in builds:
            for table in build.table_names:
                self._drop_table(table)
            with self.store.schema() as connection:
                connection.execute(
                    sa.delete(t).where(t.c.name == build.name, t.c.generation == build.generation)
                )
                p = partitions_table
                connection.execute(
                    sa.delete(p).where(p.c.name == build.name, p.c.generation == build.generation)
                )

    def _drop_table(self, table: str) -> None:
        for attempt in range(_DROP_ATTEMPTS):
            try:
                with self.store.schema() as connection:
                    connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
                return
            except Exception as error:
                if attempt + 1 == _DROP_ATTEMPTS:
                    log.warning(
                        "could not drop the retired table %s (drop it by hand): %s", table, error
                    )
                    return
                time.sleep(0.2 * (attempt + 1))


def _next_generation(connection: Connection, name: str, rows: list[Checkpoint]) -> int:
    """A generation number never given to a build of `name` before; records it as given."""
    g = generations_table
    last = connection.execute(sa.select(g.c.last).where(g.c.name == name)).scalar()
    generation = max([last or 0, *(row.generation for row in rows)]) + 1
    if last is None:
        connection.execute(sa.insert(g).values(name=name, last=generation))
    else:
        connection.execute(sa.update(g).where(g.c.name == name).values(last=generation))
    return generation
