"""Version-4 UUIDs for event and command ids, drawn without a system call.

`uuid.uuid4()` reads `os.urandom`, which releases the GIL around its system call: in a loop
that makes one id per event (the capture appends thousands a second) the thread then waits for
the GIL behind the process's other threads at every id. These ids need to be unique, not
unpredictable, so they come from a Mersenne Twister seeded from `os.urandom` at import and
again in every forked child (two processes never share a sequence). Never use them as secrets:
tokens take theirs from `secrets`.
"""

from __future__ import annotations

import os
import random

_generator = random.Random()
_pid = os.getpid()

_VERSION_4 = 0x4 << 76
_VARIANT_RFC = 0x2 << 62
_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)


def uuid4_hex() -> str:
    """A random version-4 UUID as 32 lowercase hex digits, like `uuid.uuid4().hex`."""
    global _pid
    if os.getpid() != _pid:  # a forked child, whether or not the fork ran Python's hooks
        _generator.seed()
        _pid = os.getpid()
    return f"{_generator.getrandbits(128) & _KEEP | _VERSION_4 | _VARIANT_RFC:032x}"


def uuid4_text() -> str:
    """A random version-4 UUID in its usual text form, like `str(uuid.uuid4())`."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
