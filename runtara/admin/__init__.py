"""What operators do with instances: signals, inspection, launches, retention.

:class:`runtara.admin.local.LocalAdmin` works directly on a storage driver;
:class:`runtara.admin.remote.RemoteAdmin` asks a running server's management
service and returns the same records.
"""

from __future__ import annotations
