"""``runtara-core bench``: throughput and latency of a server, with baselines.

Scenarios run K concurrent instances on their own QUIC connections; the same
load against baselines measured in the same run (``echo``, ``naive``,
``storage``) turns noisy absolute numbers into ratios that hold.
"""

from __future__ import annotations
