"""Event and command ids: version-4 UUIDs, unique, and a forked child draws its own."""

from __future__ import annotations

import os
import random
import uuid

import pytest

from projectionist import ids
from projectionist.ids import uuid4_hex, uuid4_text


def test_ids_are_version_4_uuids_in_the_usual_forms() -> None:
    for _ in range(2_000):
        text = uuid4_text()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
        raw = uuid4_hex()
        assert uuid.UUID(raw).hex == raw and uuid.UUID(raw).version == 4


def test_ids_do_not_repeat() -> None:
    drawn = {uuid4_hex() for _ in range(100_000)}
    assert len(drawn) == 100_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running the parent's cleanup
        os.close(read)
        os.write(write, " ".join(uuid4_hex() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    mine = {uuid4_hex() for _ in range(100)}
    with os.fdopen(read) as pipe:
        childs = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(childs) == 100 and not mine & childs


def test_a_child_forked_without_pythons_hooks_draws_its_own_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fork made in C (uWSGI's, a restored VM snapshot) runs no at-fork hook: a new process
    id is enough to draw a new seed."""
    uuid4_hex()
    continued = random.Random()
    continued.setstate(ids._generator.getstate())
    would_be = f"{continued.getrandbits(128) & ids._KEEP | ids._VERSION_4 | ids._VARIANT_RFC:032x}"
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert uuid4_hex() != would_be
    assert ids._pid == -1
