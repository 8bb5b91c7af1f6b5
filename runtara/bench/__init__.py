"""``runtara-core bench``: throughput and latency of a server, with baselines.

Scenarios run K concurrent instances on their own QUIC connections, spread
over client processes; the same scenario on baselines measured in the same
run (``echo``, ``naive``, ``storage``) turns noisy absolute numbers into
ratios that hold, and the CPU of the server, the client and the machine says
what each figure measured.
"""

from __future__ import annotations
