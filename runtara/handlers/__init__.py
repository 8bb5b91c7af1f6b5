"""The instance protocol's operations as plain blocking functions.

Each handler takes the decoded request and the :class:`Services` it may use,
runs one storage transaction and returns an outcome; none knows about sockets,
threads or the event loop. :mod:`runtara.handlers.operations` maps the
``RpcRequest`` oneof to them.
"""

from __future__ import annotations
