"""QUIC client side of the runtara protocols: one stream per request.

Used by the SDK, the command-line tools, the benchmark and the tests.
"""

from __future__ import annotations
