"""Capture on PostgreSQL by logical decoding with the built-in pgoutput plugin.

`slot.py` checks the server and makes the publication and the slot, `capturer.py` reads the
slot and appends each committed transaction's changes with the capture's checkpoint,
`snapshot.py` reads the rows already there consistently with the stream, `changes.py` turns
decoded changes into RowChanged events, `pgoutput.py` decodes the protocol, and `progress.py`
reads where a capture stands (for status, metrics and `min_lsn`).
"""

from __future__ import annotations

from .capturer import Capturer
from .progress import CaptureState, CaptureStatus, Progress
from .slot import SlotLost

__all__ = ["CaptureState", "CaptureStatus", "Capturer", "Progress", "SlotLost"]
