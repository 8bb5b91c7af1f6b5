"""The ``memory`` driver: runtara-core's reference implementation of the
storage contract (:mod:`runtara.testing.memory`), published as a plugin.

A driver of your own implements the same two classes:
``runtara.storage.base.StorageDriver`` (here ``MemoryDriver``) and the
``runtara.storage.base.Transaction`` its ``run`` hands to the work (here
``MemoryTransaction``). Read ``runtara/testing/memory.py`` as the starting
point: it is short, passes the conformance kit, and every method says what it
must do.
"""

from __future__ import annotations

from runtara.testing import memory


class MemoryDriver(memory.MemoryDriver):
    """Everything in this process's memory: each process has its own store."""
