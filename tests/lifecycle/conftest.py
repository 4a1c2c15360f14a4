"""Fixtures of the lifecycle tests: subprocesses that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lifecycle.support import Processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Starts `projectionist` processes for one test and stops (or kills) each at its end."""
    pool = Processes(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
