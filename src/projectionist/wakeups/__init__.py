"""Wake-ups: the high-water mark, local progress, and the port of the backends' listeners."""

from .base import WakeupSource
from .high_water import HighWater
from .progress import ProgressBoard
from .worker import Worker

__all__ = ["HighWater", "ProgressBoard", "WakeupSource", "Worker"]
