"""The recorded version of a store's framework tables, and its upgrade to this release's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..engines import redact
from ..errors import ConfigurationError
from ..stores import Store
from .steps import CURRENT, EARLIEST, FRAMEWORK_TABLES, MIGRATIONS, Migration, StoreKind

metadata = sa.MetaData()

schema_table = sa.Table(
    "projectionist_schema",
    metadata,
    # One row per kind of store the database serves: a database may be both.
    sa.Column("store", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("upgraded_at", sa.Float(precision=53), nullable=False),
)


class UpgradeMode(StrEnum):
    """What a process does at start-up with a store at an older version."""

    AUTO = "auto"
    """Upgrade it."""
    REFUSE = "refuse"
    """Refuse to start; `projectionist migrate` upgrades it."""

    @classmethod
    def parse(cls, value: str) -> UpgradeMode:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(mode.value) for mode in cls)
            raise ConfigurationError(f"upgrade must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a store's framework tables stand, and the versions that bring them to this
    release's."""

    kind: StoreKind
    store: str
    found: int | None
    """The version found: None for a store without framework tables."""
    migrations: tuple[Migration, ...]
    to: int = CURRENT

    @property
    def newer(self) -> bool:
        """The store is at a version this release does not know."""
        return self.found is not None and self.found > self.to

    @property
    def behind(self) -> bool:
        """The store has framework tables of an older version."""
        return self.found is not None and self.found < self.to

    def describe(self) -> str:
        """One line: the store, and its version before and after."""
        where = f"{self.kind} store {self.store}"
        if self.found is None:
            return f"{where}: new, starts at version {self.to}"
        if self.newer:
            return f"{where}: at version {self.found}, newer than this release ({self.to})"
        if not self.behind:
            return f"{where}: at version {self.found}, up to date"
        return f"{where}: version {self.found} -> {self.to}"


def plan(store: Store, kind: StoreKind) -> Plan:
    """What an upgrade of `store` would do, read without changing anything."""
    with store.read() as connection:
        return _plan(connection, store, kind)


def upgrade(store: Store, kind: StoreKind, *, mode: UpgradeMode = UpgradeMode.AUTO) -> Plan:
    """Brings the store's framework tables to this release's version; what was done.

    One transaction under the schema lock: processes starting together upgrade a store once,
    and a failed step leaves it as it was. A store newer than this release is refused, and
    with `UpgradeMode.REFUSE` an older one too.
    """
    with store.schema() as connection:
        found = _plan(connection, store, kind)
        if found.newer:
            raise ConfigurationError(
                f"the {kind} store {found.store} is at schema version {found.found}, newer than"
                f" this release of projectionist knows ({found.to}); run the newer release"
            )
        if found.behind and mode is UpgradeMode.REFUSE:
            raise ConfigurationError(
                f"the {kind} store {found.store} is at schema version {found.found} and this"
                f" release needs {found.to}; run `projectionist migrate` to upgrade it"
            )
        if found.found == found.to:
            return found
        for migration in found.migrations:
            step = migration.step(kind)
            if step is not None:
                step(connection)
        _record(connection, kind, found.to)
    return found


def upgrade_stores(write: Store | None, read: Store | None, mode: UpgradeMode) -> None:
    """Upgrades the write store and the read store a process opens (None: not opened)."""
    if write is not None:
        upgrade(write, StoreKind.WRITE, mode=mode)
    if read is not None:
        upgrade(read, StoreKind.READ, mode=mode)


def _plan(connection: Connection, store: Store, kind: StoreKind) -> Plan:
    found = _found(connection, kind)
    migrations = tuple(m for m in MIGRATIONS if found is not None and m.version > found)
    return Plan(kind, redact(store.url), found, migrations)


def _found(connection: Connection, kind: StoreKind) -> int | None:
    inspector = sa.inspect(connection)
    if inspector.has_table(schema_table.name):
        t = schema_table
        version = connection.execute(sa.select(t.c.version).where(t.c.store == kind.value)).scalar()
        if version is not None:
            return int(version)
    if any(inspector.has_table(name) for name in FRAMEWORK_TABLES[kind]):
        return EARLIEST
    return None


def _record(connection: Connection, kind: StoreKind, version: int) -> None:
    t = schema_table
    metadata.create_all(connection)
    values = {"version": version, "upgraded_at": time.time()}
    if not connection.execute(
        sa.update(t).where(t.c.store == kind.value).values(**values)
    ).rowcount:
        connection.execute(sa.insert(t).values(store=kind.value, **values))
