"""Versions of the framework's own tables, and the upgrade of a store an older release made.

Each store records the version of its framework tables in `projectionist_schema`. At start-up
a store at an older version is upgraded (or refused, with `UpgradeMode.REFUSE`); a store at a
newer version than this release knows is always refused.
"""

from .steps import CURRENT, EARLIEST, MIGRATIONS, Migration, StoreKind
from .upgrade import Plan, UpgradeMode, plan, schema_table, upgrade, upgrade_stores

__all__ = [
    "CURRENT",
    "EARLIEST",
    "MIGRATIONS",
    "Migration",
    "Plan",
    "StoreKind",
    "UpgradeMode",
    "plan",
    "schema_table",
    "upgrade",
    "upgrade_stores",
]
