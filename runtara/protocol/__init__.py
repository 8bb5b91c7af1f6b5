"""The runtara wire protocol without any I/O: frames, messages and stream reassembly.

Nothing here imports asyncio, sockets, threads or clocks; the QUIC layer feeds
bytes in and writes the bytes that come out.
"""

from __future__ import annotations
