"""An in-memory storage driver for runtara-core (``--driver memory``).

Everything lives in the server process and is gone when it exits: use it for
tests and demos, never for instances whose work matters.
"""

from __future__ import annotations

from runtara_memory.driver import MemoryDriver

__all__ = ["MemoryDriver"]
